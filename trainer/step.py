"""One optimizer step: gather micro-batches for the world's batch, forward and backward each, step.

The loss is the sum of token losses over the world's step divided by the world's count of target
tokens, so one process with two micro-batches and two processes with one each take the same step.
The figures a step logs cost one collective and one copy to the host: the counts ride on the
reduction that decides when the step has enough samples (:func:`gather_step`), and the loss is
summed on the device and reduced once at the end.
"""

import torch

from .distributed import Runtime, all_reduce_sum
from .packing import Batch, model_inputs
from .tiling import normalise_tiles

COUNTS = ("samples", "target_tokens", "tokens", "slots", "tiles")


def step_totals(micro_batches: list[Batch], runtime: Runtime) -> dict[str, int]:
    """The world's counts of these micro-batches (one collective)."""
    local = [
        sum(b.n_samples for b in micro_batches),
        sum(b.n_target_tokens for b in micro_batches),
        sum(b.n_tokens for b in micro_batches),
        sum(b.n_slots for b in micro_batches),
        sum(b.n_tiles for b in micro_batches),
    ]
    return {name: int(v) for name, v in zip(COUNTS, all_reduce_sum(local, runtime), strict=True)}


def gather_step(batches, target_samples: int, runtime: Runtime, per_round: int = 1):
    """Rounds of ``per_round`` micro-batches (one from each of this rank's streams) until the world
    holds ``target_samples`` samples; every rank takes the same number, so collectives line up.

    Returns the micro-batches and the world's counts of them.
    """
    micro_batches: list[Batch] = []
    while True:
        micro_batches += [next(batches) for _ in range(per_round)]
        totals = step_totals(micro_batches, runtime)
        if totals["samples"] >= target_samples:
            return micro_batches, totals


def train_step(
    model,
    optimizer,
    micro_batches: list[Batch],
    runtime: Runtime,
    bf16: bool,
    grad_clip: float,
    totals: dict[str, int] | None = None,
) -> dict:
    """Forward and backward over the micro-batches, clip, and take one optimizer step."""
    device = runtime.device
    totals = totals or step_totals(micro_batches, runtime)
    target_tokens = totals["target_tokens"]
    attn = getattr(model.config, "_attn_implementation", "sdpa") or "sdpa"
    # FSDP averages gradients over ranks; scaling by world size turns that into a sum, so the
    # result is sum(token losses) / target_tokens over the whole world.
    scale = runtime.world_size if runtime.distributed else 1
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    for i, batch in enumerate(micro_batches):
        if runtime.distributed and hasattr(model, "set_requires_gradient_sync"):
            model.set_requires_gradient_sync(i == len(micro_batches) - 1)
        pixel_values = None
        if batch.pixel_values is not None:
            pixel_values = normalise_tiles(batch.pixel_values.to(device, non_blocking=True))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = model(
                **model_inputs(batch, device, attn),
                pixel_values=pixel_values,
                num_items_in_batch=target_tokens,  # the loss is a sum over tokens divided by this
            )
        (out.loss * scale).backward()
        loss_sum += out.loss.detach().double() * target_tokens
    grad_norm = torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], grad_clip)
    if hasattr(grad_norm, "full_tensor"):
        grad_norm = grad_norm.full_tensor()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    # The norm is the same on every rank: it rides on the loss's reduction, one copy for both.
    loss, norm = all_reduce_sum([loss_sum, grad_norm / scale], runtime)
    return {
        "loss": loss / max(target_tokens, 1),
        "grad_norm": norm,
        **totals,
        "padding_share": 1 - totals["tokens"] / max(totals["slots"], 1),
        "micro_batches": len(micro_batches),
        "dropped": _merge_dropped(micro_batches),
    }


def _merge_dropped(micro_batches: list[Batch]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for batch in micro_batches:
        for reason, count in batch.dropped.items():
            merged[reason] = merged.get(reason, 0) + count
    return merged
