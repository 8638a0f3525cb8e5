"""Training batches from the final WebDataset shards (``<key>.jpg|png`` + ``<key>.json``).

Each reader (one per rank and DataLoader worker) walks an endless, seeded stream:

1. every epoch, the shard list is shuffled with ``seed + epoch`` and dealt out to readers
   (shard by shard when there are enough shards, sample by sample when there are fewer shards
   than readers), so each epoch revisits all the data in a new order;
2. ``webdataset`` expands the tar files into samples, and a seeded shuffle buffer mixes them;
3. the conversation is tokenised with the tile count read from the image header (no pixel
   decoding yet), and samples are grouped into micro-batches under a token budget;
4. only then are the images of a batch decoded and cut into tiles.

Because everything before step 4 is cheap and deterministic, a resumed run skips the batches
it has already trained on without decoding them: the data position in a checkpoint is just
the number of batches each reader has produced.
"""

import glob
import io
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from PIL import Image
from pydantic import Field

from pipelines._imports import require
from pipelines._model import ConfigModel

from .tiling import cut_tiles, tile_count
from .tokenize import IGNORE_INDEX, ChatTokenizer, SampleDropped

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")


class DataConfig(ConfigModel):
    """Where the shards are and how they become batches."""

    shards: str = Field(description="a directory of .tar shards, or a glob of them")
    min_tiles: int = Field(1, ge=1, description="fewest 448px tiles per image")
    max_tiles: int = Field(12, ge=1, le=40, description="most tiles per image (SPEC §3: 12 to train)")
    use_thumbnail: bool = Field(True, description="add the whole image as one more tile when it has several")
    resize: Literal["pil", "torch"] = Field(
        "pil",
        description="tile resize: 'pil' (Pillow, as the public InternVL code) or 'torch' (about 4x faster, "
        "differs from Pillow by a few levels on ~1% of bytes); see trainer.tiling",
    )
    tokens_per_batch: int = Field(
        8192, ge=16, description="token budget of a micro-batch: longest sequence times number of samples"
    )
    max_samples_per_batch: int = Field(64, ge=1, description="cap on samples in a micro-batch")
    shuffle_buffer: int = Field(1000, ge=1, description="samples held in the shuffle buffer of each reader")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes per rank")
    seed: int = Field(0, description="seeds shard order and shuffling")


def list_shards(spec: str) -> list[str]:
    """The sorted shard paths of a directory or glob; an error if there are none.

    A URI (``s3://bucket/mix/shards``) names a shard directory on object storage: its manifest's
    shards, as URLs that stream each object (``shards.reader.shard_urls``).
    """
    if "://" in spec:
        from shards.reader import shard_urls

        return shard_urls(spec)
    path = Path(spec)
    shards = sorted(str(p) for p in path.glob("*.tar")) if path.is_dir() else sorted(glob.glob(spec))
    if not shards:
        raise FileNotFoundError(f"no .tar shards found at {spec!r}")
    return shards


@dataclass
class Batch:
    """A padded micro-batch. ``pixel_values`` are uint8 tiles: normalise them on the device."""

    input_ids: torch.Tensor  # (batch, length) int64
    labels: torch.Tensor  # (batch, length) int64, IGNORE_INDEX where no loss falls
    attention_mask: torch.Tensor  # (batch, length) int64
    pixel_values: torch.Tensor | None  # (tiles, 3, 448, 448) uint8, or None for a text-only batch
    n_samples: int
    n_tiles: int
    keys: list[str]  # the samples' WebDataset keys, in batch order
    dropped: dict[str, int] = field(default_factory=dict)  # samples dropped since the last batch, by reason

    @property
    def n_target_tokens(self) -> int:
        """Tokens that carry loss (the shift by one for next-token prediction taken into account)."""
        return int((self.labels[:, 1:] != IGNORE_INDEX).sum())


class ShardStream(torch.utils.data.IterableDataset):
    """The endless, seeded stream of micro-batches of one rank (split further by DataLoader worker).

    ``batches_consumed`` is the data position of a checkpoint: the batches this rank had trained
    on. A DataLoader takes batches from its workers in turn, so worker ``w`` had made every
    ``w``-th one; each skips its share without decoding images, and the workers' roles are
    rotated so that the one whose turn was next goes first.
    """

    def __init__(
        self,
        config: DataConfig,
        chat: ChatTokenizer,
        rank: int = 0,
        world_size: int = 1,
        batches_consumed: int = 0,
    ):
        self.config = config
        self.chat = chat
        self.rank, self.world_size = rank, world_size
        self.shards = list_shards(config.shards)
        self.batches_consumed = batches_consumed

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        n_workers = info.num_workers if info else 1
        worker = ((info.id if info else 0) + self.batches_consumed) % n_workers
        reader, n_readers = self.rank * n_workers + worker, self.world_size * n_workers
        dropped: Counter = Counter()
        groups = self._groups(reader, n_readers, dropped)
        for _ in range(_share(self.batches_consumed, worker, n_workers)):
            next(groups)
        for group in groups:
            batch = self._collate(group, dropped)
            if batch is not None:  # None: every image of the group failed to decode
                dropped.clear()
                yield batch

    def _samples(self, reader: int, n_readers: int):
        """Raw samples of this reader, epoch after epoch, shard order reshuffled each epoch."""
        wds = require("webdataset", "train")
        epoch = 0
        while True:
            shards = list(self.shards)
            random.Random(f"{self.config.seed}-shards-{epoch}").shuffle(shards)
            by_shard = len(shards) >= n_readers
            mine = shards[reader::n_readers] if by_shard else shards
            stream = wds.tarfile_samples([{"url": url} for url in mine])
            yielded = False
            for i, sample in enumerate(stream):
                if by_shard or i % n_readers == reader:
                    yielded = True
                    yield sample
            if not yielded:
                raise RuntimeError(f"reader {reader} of {n_readers} found no samples in {len(mine)} shards")
            epoch += 1

    def _tokenized(self, reader: int, n_readers: int, dropped: Counter):
        """(raw sample, tokenized) pairs after the shuffle buffer; bad samples counted and skipped."""
        wds = require("webdataset", "train")
        rng = random.Random(f"{self.config.seed}-buffer-{reader}-{n_readers}")
        initial = min(self.config.shuffle_buffer, 100)
        shuffle = wds.shuffle(self.config.shuffle_buffer, initial, rng=rng)
        shuffled = shuffle(self._samples(reader, n_readers))
        for sample in shuffled:
            try:
                yield sample, self._tokenize(sample)
            except SampleDropped as err:
                dropped[err.reason] += 1

    def _tokenize(self, sample: dict):
        if "json" not in sample:
            raise SampleDropped("missing_json")
        try:
            record = json.loads(sample["json"])
        except ValueError as err:
            raise SampleDropped("bad_json", str(err)) from err
        image_key = next((ext for ext in IMAGE_EXTENSIONS if ext in sample), None)
        if image_key is None:
            # Every rank must run InternViT in every micro-batch or FSDP's collectives stall,
            # so text-only samples are left out (the pre-training shards always have images).
            raise SampleDropped("no_image")
        try:
            width, height = Image.open(io.BytesIO(sample[image_key])).size  # header only
        except Exception as err:  # PIL raises many kinds for broken files
            raise SampleDropped("bad_image", str(err)) from err
        config = self.config
        n_tiles = tile_count(width, height, config.min_tiles, config.max_tiles, config.use_thumbnail)
        return self.chat(record.get("conversations"), n_tiles)

    def _groups(self, reader: int, n_readers: int, dropped: Counter):
        """Lists of (sample, tokenized) whose padded size fits the token budget."""
        group, longest = [], 0
        for item in self._tokenized(reader, n_readers, dropped):
            length = len(item[1].input_ids)
            fits = max(longest, length) * (len(group) + 1) <= self.config.tokens_per_batch
            if group and (not fits or len(group) >= self.config.max_samples_per_batch):
                yield group
                group, longest = [], 0
            group.append(item)
            longest = max(longest, length)

    def _collate(self, group, dropped: Counter) -> Batch | None:
        kept, keys, tiles = [], [], []
        for sample, tok in group:
            if tok.n_tiles:
                try:
                    tiles.append(self._tiles(sample))
                except Exception:  # a broken image body behind a readable header
                    dropped["bad_image"] += 1
                    continue
            kept.append(tok)
            keys.append(sample["__key__"])
        if not kept:
            return None
        length = max(len(tok.input_ids) for tok in kept)
        input_ids = torch.full((len(kept), length), self.chat.pad_id, dtype=torch.long)
        labels = torch.full((len(kept), length), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(kept), length), dtype=torch.long)
        for i, tok in enumerate(kept):
            n = len(tok.input_ids)
            input_ids[i, :n] = torch.tensor(tok.input_ids)
            labels[i, :n] = torch.tensor(tok.labels)
            attention_mask[i, :n] = 1
        pixel_values = torch.cat(tiles) if tiles else None
        n_tiles = 0 if pixel_values is None else pixel_values.shape[0]
        return Batch(input_ids, labels, attention_mask, pixel_values, len(kept), n_tiles, keys, dict(dropped))

    def _tiles(self, sample: dict) -> torch.Tensor:
        image_key = next(ext for ext in IMAGE_EXTENSIONS if ext in sample)
        image = Image.open(io.BytesIO(sample[image_key]))
        config = self.config
        return cut_tiles(
            image, config.min_tiles, config.max_tiles, use_thumbnail=config.use_thumbnail, resize=config.resize
        )


def make_loader(stream: ShardStream) -> torch.utils.data.DataLoader:
    """A DataLoader over the stream; workers take turns, so batch ``i`` came from worker ``i % workers``."""
    workers = stream.config.num_workers
    return torch.utils.data.DataLoader(
        stream,
        batch_size=None,
        num_workers=workers,
        in_order=True,
        collate_fn=_identity,
        prefetch_factor=2 if workers else None,
    )


def _identity(batch):
    return batch


def _share(batches_consumed: int, worker: int, n_workers: int) -> int:
    """Batches worker ``worker`` of ``n_workers`` had made when ``batches_consumed`` were taken in turn."""
    return (batches_consumed - worker + n_workers - 1) // n_workers
