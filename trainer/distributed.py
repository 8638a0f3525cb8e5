"""The process group and FSDP2 sharding; the same code under torchrun, Ray Train, or alone."""

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from .model import language_layers, vision_layers


@dataclass(frozen=True)
class Runtime:
    """Where this process runs: its rank among ``world_size`` and its device."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def distributed(self) -> bool:
        return dist.is_available() and dist.is_initialized()

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup() -> Runtime:
    """Join the process group torchrun describes (or Ray Train already made); alone otherwise."""
    cuda = torch.cuda.is_available()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if not dist.is_initialized() and "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    if dist.is_initialized():
        return Runtime(dist.get_rank(), dist.get_world_size(), device)
    return Runtime(0, 1, device)


def shard(
    model: nn.Module, runtime: Runtime, param_dtype: torch.dtype | None, shard_group: int | None = None
) -> nn.Module:
    """FSDP2: each InternViT and LLM layer is its own unit, the rest is the root unit.

    ``shard_group`` (HSDP): the weights are sharded over groups of that many consecutive ranks
    (one node's, typically) and replicated across the groups, so the all-gathers of the forward
    and backward stay within a node and only the gradients' reduction crosses nodes. None (or
    the world size): plain FSDP over all ranks.

    With ``param_dtype`` (bf16 on GPUs) the gathered weights are in that type while the sharded
    master weights, the gradient reduction and the optimizer stay in float32.
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    world = runtime.world_size
    group = shard_group or world
    if group < 1 or world % group:
        raise ValueError(f"shard_group={shard_group} must divide the world size {world}")
    if group == world:
        mesh = init_device_mesh(runtime.device.type, (world,))
    else:
        mesh = init_device_mesh(runtime.device.type, (world // group, group), mesh_dim_names=("replicate", "shard"))
    policy = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32)
    for layer in [*vision_layers(model), *language_layers(model)]:
        fully_shard(layer, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    return model


def local_world_size() -> int | None:
    """Processes on this node, as torchrun and Ray Train announce them."""
    value = os.environ.get("LOCAL_WORLD_SIZE")
    return int(value) if value else None


def all_reduce_sum(values, runtime: Runtime) -> list[float]:
    """The sums of ``values`` (numbers or 0-d tensors) over all ranks, in one collective and one copy."""
    parts = [v.detach().reshape(()).double() if torch.is_tensor(v) else torch.tensor(float(v), dtype=torch.float64)
             for v in values]
    device = runtime.device if runtime.distributed and dist.get_backend() == "nccl" else torch.device("cpu")
    tensor = torch.stack([p.to(device) for p in parts])
    if runtime.distributed:
        dist.all_reduce(tensor)
    return tensor.tolist()
