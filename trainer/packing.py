"""Micro-batches from tokenised samples: packed into one sequence, or padded rows (the old way).

Packing follows InternVL's own trainer (``internvl_chat``'s ``PackedDataset``): whole samples are
laid end to end in one sequence of at most ``tokens_per_batch`` tokens, so an image span is never
split, and the number of tiles of a pack is bounded too (InternViT's memory). The samples of a
window are placed best-fit-decreasing (each, longest first, into the fullest pack it fits), which
leaves only the last few packs of a window part-empty.

Attention stays within each sample through the position ids, which restart at 0 for every sample:
``transformers`` turns restarting position ids (with no 2D attention mask) into a block-causal
mask for ``sdpa``, ``eager`` and ``flex_attention``, and into varlen kernels for
``flash_attention_2`` (fed the cumulative lengths directly, :func:`flash_kwargs`); ``sdpa_packed``
(``trainer.attention``) runs one causal sdpa per sample, with no mask at all. The first label
of every sample is ignored, so the last token of one sample never learns to predict the next
sample: a pack gives the same loss and gradients as its samples in padded rows.
"""

import random
from dataclasses import dataclass, field

import torch

from .tokenization import IGNORE_INDEX, TokenizedSample


@dataclass
class Batch:
    """A micro-batch. ``pixel_values`` are uint8 tiles: normalise them on the device.

    Packed: one row, ``position_ids`` restart at every sample, ``attention_mask`` only marks the
    real tokens (for counting; it is not given to the model). Padded: ``position_ids`` is None.
    """

    input_ids: torch.Tensor  # (rows, length) int64
    labels: torch.Tensor  # (rows, length) int64, IGNORE_INDEX where no loss falls
    attention_mask: torch.Tensor  # (rows, length) int64, 1 on real tokens
    pixel_values: torch.Tensor | None  # (tiles, 3, 448, 448) uint8, or None for a text-only batch
    n_samples: int
    n_tiles: int
    keys: list[str]  # the samples' WebDataset keys, in batch order
    dropped: dict[str, int] = field(default_factory=dict)  # samples dropped since the last batch, by reason
    position_ids: torch.Tensor | None = None  # packed only: (1, length)
    seq_lengths: list[int] = field(default_factory=list)  # packed only: the segments, padding last
    stream: int = 0  # the data stream it came from (trainer.data)
    position: tuple = ()  # that stream's position after this batch

    @property
    def packed(self) -> bool:
        return self.position_ids is not None

    @property
    def n_target_tokens(self) -> int:
        """Tokens that carry loss (the shift by one for next-token prediction taken into account)."""
        return int((self.labels[:, 1:] != IGNORE_INDEX).sum())

    @property
    def n_tokens(self) -> int:
        """Real tokens, padding left out."""
        return int(self.attention_mask.sum())

    @property
    def n_slots(self) -> int:
        """Token slots the step computes on: rows times length, padding included."""
        return self.input_ids.numel()


def pack(lengths: list[int], tiles: list[int], budget: int, max_tiles: int, max_samples: int, seed: str):
    """Indices of samples per pack: best-fit decreasing under the token, tile and sample caps.

    A sample longer than the budget gets a pack of its own. The packs come back in a seeded
    random order, so the long samples are not all at the start of a window.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    packs: list[list[int]] = []
    room: list[tuple[int, int]] = []  # tokens and tiles left in each pack
    for i in order:
        best = None
        for p, (tokens_left, tiles_left) in enumerate(room):
            fits = lengths[i] <= tokens_left and tiles[i] <= tiles_left and len(packs[p]) < max_samples
            if fits and (best is None or tokens_left < room[best][0]):
                best = p
        if best is None:
            packs.append([i])
            room.append((budget - lengths[i], max_tiles - tiles[i]))
        else:
            packs[best].append(i)
            room[best] = (room[best][0] - lengths[i], room[best][1] - tiles[i])
    for members in packs:
        members.sort()  # the window's (shuffled) order inside a pack
    random.Random(seed).shuffle(packs)
    return packs


def group_padded(lengths: list[int], tiles: list[int], budget: int, max_tiles: int, max_samples: int):
    """Indices per padded micro-batch, in order: rows until longest times rows passes the budget."""
    groups, group, longest, group_tiles = [], [], 0, 0
    for i, length in enumerate(lengths):
        fits = max(longest, length) * (len(group) + 1) <= budget and group_tiles + tiles[i] <= max_tiles
        if group and (not fits or len(group) >= max_samples):
            groups.append(group)
            group, longest, group_tiles = [], 0, 0
        group.append(i)
        longest, group_tiles = max(longest, length), group_tiles + tiles[i]
    if group:
        groups.append(group)
    return groups


def collate_packed(samples: list[TokenizedSample], pad_id: int, pad_to_multiple: int = 1) -> dict:
    """One row: the samples end to end, position ids restarting, padding (its own segment) last."""
    total = sum(len(s.input_ids) for s in samples)
    length = -(-total // pad_to_multiple) * pad_to_multiple
    ids, labels, positions, lengths = [], [], [], []
    for sample in samples:
        n = len(sample.input_ids)
        ids += sample.input_ids
        labels += [IGNORE_INDEX] + sample.labels[1:]  # never predicted from the previous sample
        positions += range(n)
        lengths.append(n)
    if length > total:
        ids += [pad_id] * (length - total)
        labels += [IGNORE_INDEX] * (length - total)
        positions += range(length - total)
        lengths.append(length - total)
    mask = torch.zeros((1, length), dtype=torch.long)
    mask[0, :total] = 1
    return {
        "input_ids": torch.tensor([ids]),
        "labels": torch.tensor([labels]),
        "attention_mask": mask,
        "position_ids": torch.tensor([positions]),
        "seq_lengths": lengths,
    }


def collate_padded(samples: list[TokenizedSample], pad_id: int) -> dict:
    """Rows padded on the right to the longest sample."""
    length = max(len(s.input_ids) for s in samples)
    input_ids = torch.full((len(samples), length), pad_id, dtype=torch.long)
    labels = torch.full((len(samples), length), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(samples), length), dtype=torch.long)
    for i, sample in enumerate(samples):
        n = len(sample.input_ids)
        input_ids[i, :n] = torch.tensor(sample.input_ids)
        labels[i, :n] = torch.tensor(sample.labels)
        attention_mask[i, :n] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}


def model_inputs(batch: Batch, device: torch.device, attn_implementation: str) -> dict:
    """The keyword arguments of the model's forward for a batch (pixels left to the caller)."""
    inputs = {"input_ids": batch.input_ids.to(device, non_blocking=True)}
    inputs["labels"] = batch.labels.to(device, non_blocking=True)
    if not batch.packed:
        inputs["attention_mask"] = batch.attention_mask.to(device, non_blocking=True)
        return inputs
    # No 2D mask and no cache: transformers then reads the packing from the position ids.
    inputs["position_ids"] = batch.position_ids.to(device, non_blocking=True)
    inputs["use_cache"] = False
    if attn_implementation.startswith("flash"):
        inputs.update(flash_kwargs(batch.seq_lengths, device))
    elif attn_implementation == "sdpa_packed":
        inputs["segment_lengths"] = tuple(batch.seq_lengths)  # trainer.attention
    return inputs


def flash_kwargs(seq_lengths: list[int], device: torch.device) -> dict:
    """Varlen flash attention's cumulative lengths, so no layer has to find them in the position ids."""
    cumulative = torch.tensor([0, *seq_lengths], dtype=torch.int32).cumsum(0, dtype=torch.int32).to(device)
    longest = max(seq_lengths)
    return {
        "cu_seq_lens_q": cumulative,
        "cu_seq_lens_k": cumulative,
        "max_length_q": longest,
        "max_length_k": longest,
    }
