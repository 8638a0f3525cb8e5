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


def shard(model: nn.Module, runtime: Runtime, param_dtype: torch.dtype | None) -> nn.Module:
    """FSDP2: each InternViT and LLM layer is its own unit, the rest is the root unit.

    With ``param_dtype`` (bf16 on GPUs) the gathered weights are in that type while the sharded
    master weights, the gradient reduction and the optimizer stay in float32.
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = init_device_mesh(runtime.device.type, (runtime.world_size,))
    policy = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32)
    for layer in [*vision_layers(model), *language_layers(model)]:
        fully_shard(layer, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    return model


def all_reduce_sum(value: float | int, runtime: Runtime) -> float:
    """The sum of ``value`` over all ranks (the value itself when alone)."""
    if not runtime.distributed:
        return value
    backend_device = runtime.device if dist.get_backend() == "nccl" else torch.device("cpu")
    tensor = torch.tensor(float(value), dtype=torch.float64, device=backend_device)
    dist.all_reduce(tensor)
    return tensor.item()
