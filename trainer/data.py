"""Training batches from the final WebDataset shards (``<key>.jpg|png`` + ``<key>.json``).

The run's data is ``streams`` seeded, endless streams (``trainer.streams``): each walks its share
of the shards epoch after epoch (shard order reshuffled every epoch), in shuffled windows, and
turns them into micro-batches, packed (the default, ``trainer.packing``) or padded. A step takes
rounds of one micro-batch from every stream, so what a step trains on depends on the seed and the
number of streams, not on the number of ranks: rank ``r`` of ``w`` runs streams ``r, r+w, ...``
and its DataLoader workers share those out.

Every micro-batch carries its stream's position after it; the newest position of each stream is
the data state a checkpoint keeps (:class:`DataState`). A stream restored from it re-reads one
window, so resuming is immediate however long the run was, and works at any world size that
divides the number of streams.
"""

import glob
import io
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from PIL import Image
from pydantic import Field

from pipelines._model import ConfigModel

from .packing import Batch, collate_packed, collate_padded, group_padded, pack
from .streams import Position, shuffled, windows
from .tiling import cut_tiles, tile_count
from .tokenization import ChatTokenizer, SampleDropped

__all__ = ["Batch", "DataConfig", "DataState", "ShardStream", "list_shards", "make_loader"]

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
#: A sample's image members: ``jpg`` for the first, ``1.png``, ``2.jpg``... for further ones.
_IMAGE_MEMBER = re.compile(r"^(?:([1-9][0-9]*)\.)?(?:jpg|jpeg|png|webp)$")


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
    packing: bool = Field(
        True,
        description="pack whole samples into one sequence per micro-batch (attention kept within each "
        "sample); False: one padded row per sample",
    )
    tokens_per_batch: int = Field(
        8192,
        ge=16,
        description="token budget of a micro-batch: the packed sequence's length, or longest row times rows",
    )
    max_tiles_per_batch: int = Field(64, ge=1, description="most image tiles in a micro-batch (InternViT's memory)")
    max_samples_per_batch: int = Field(64, ge=1, description="cap on samples in a micro-batch")
    pad_to_multiple: int = Field(64, ge=1, description="packed sequences are padded to a multiple of this")
    shuffle_buffer: int = Field(
        1000, ge=1, description="samples per window: each stream shuffles and packs this many at a time"
    )
    streams: int | None = Field(
        None,
        ge=1,
        description="data streams of the run, kept by its checkpoints; None: ranks x max(1, workers) at the "
        "start. A run resumes at any world size that divides it",
    )
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
class DataState:
    """The data position of a run: the number of streams and where each stands."""

    streams: int
    positions: dict[int, Position] = field(default_factory=dict)

    def advance(self, batch: Batch) -> None:
        self.positions[batch.stream] = Position(*batch.position)

    def merge(self, others: list["DataState"]) -> "DataState":
        merged = dict(self.positions)
        for other in others:
            merged.update(other.positions)
        return DataState(self.streams, merged)

    def to_json(self) -> dict:
        return {"streams": self.streams, "positions": {str(s): p.as_list() for s, p in self.positions.items()}}

    @classmethod
    def from_json(cls, data: dict) -> "DataState":
        return cls(data["streams"], {int(s): Position(*p) for s, p in data["positions"].items()})


def stream_count(config: DataConfig, world_size: int) -> int:
    return config.streams or world_size * max(1, config.num_workers)


class ShardStream(torch.utils.data.IterableDataset):
    """The micro-batches of one rank: a round of one from each of its streams, again and again.

    With DataLoader workers, worker ``w`` runs every ``w``-th of the rank's streams; the loader
    takes from the workers in turn, so the rank still sees its streams in order, round by round.
    """

    def __init__(
        self,
        config: DataConfig,
        chat: ChatTokenizer,
        rank: int = 0,
        world_size: int = 1,
        state: DataState | None = None,
    ):
        self.config, self.chat = config, chat
        self.rank, self.world_size = rank, world_size
        self.shards = list_shards(config.shards)
        self.state = state or DataState(stream_count(config, world_size))
        n, workers = self.state.streams, max(1, config.num_workers)
        if n % world_size or (n // world_size) % workers:
            raise ValueError(
                f"data.streams={n} must be a multiple of the world size ({world_size}) times the "
                f"DataLoader workers per rank ({workers})"
            )
        self.mine = list(range(rank, n, world_size))

    @property
    def per_round(self) -> int:
        """Micro-batches this rank takes per round (every rank the same)."""
        return len(self.mine)

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info else (0, 1)
        streams = [self._batches(s, self.state.positions.get(s, Position())) for s in self.mine[worker::n_workers]]
        while True:
            for stream in streams:
                yield next(stream)

    def _batches(self, stream: int, start: Position):
        config, dropped, skip = self.config, Counter(), start.taken
        for window in windows(self.shards, config.seed, stream, self.state.streams, config.shuffle_buffer, start):
            items = []
            for sample in shuffled(window, config.seed, stream):
                try:
                    items.append((sample, self._tokenize(sample)))
                except SampleDropped as err:
                    dropped[err.reason] += 1
            if skip:
                dropped.clear()  # counted before the checkpoint, with this window's first batch
            window_seed = "-".join(map(str, window.start.as_list()[:3]))
            groups = self._group([tok for _, tok in items], f"{config.seed}-packs-{stream}-{window_seed}")
            for k, group in enumerate(groups):
                if k < skip:  # handed out before the checkpoint: not decoded again
                    continue
                batch = self._collate([items[i] for i in group], dropped)
                if batch is None:  # every image of the group failed to decode
                    continue
                after = Position(*window.start.as_list()[:4], k + 1) if k + 1 < len(groups) else window.end
                batch.stream, batch.position = stream, tuple(after.as_list())
                dropped.clear()
                yield batch
            skip = 0

    def _group(self, tokenized, seed: str) -> list[list[int]]:
        config = self.config
        lengths = [len(t.input_ids) for t in tokenized]
        tiles = [t.n_tiles for t in tokenized]
        caps = (config.tokens_per_batch, config.max_tiles_per_batch, config.max_samples_per_batch)
        if config.packing:
            return pack(lengths, tiles, *caps, seed=seed)
        return group_padded(lengths, tiles, *caps)

    def _tokenize(self, sample: dict):
        if "json" not in sample:
            raise SampleDropped("missing_json")
        try:
            record = json.loads(sample["json"])
        except ValueError as err:
            raise SampleDropped("bad_json", str(err)) from err
        members = image_members(sample, record)
        tiles = []
        for member in members:
            try:
                width, height = Image.open(io.BytesIO(sample[member])).size  # header only
            except Exception as err:  # PIL raises many kinds for broken files
                raise SampleDropped("bad_image", f"{member}: {err}") from err
            tiles.append(tile_count(width, height, *self._budget(len(members)), self.config.use_thumbnail))
        return self.chat(record.get("conversations"), tiles)  # [] for a text-only sample

    def _budget(self, n_images: int) -> tuple[int, int]:
        """(min, max) tiles of each of a sample's ``n_images`` images: InternVL shares the budget,
        ``max(1, max_tiles // n_images)`` each."""
        most = max(1, self.config.max_tiles // max(1, n_images))
        return min(self.config.min_tiles, most), most

    def _collate(self, group, dropped: Counter) -> Batch | None:
        kept, keys, tiles = [], [], []
        for sample, tok in group:
            if tok.n_images:
                try:
                    tiles.append(self._tiles(sample, tok.n_images))
                except Exception:  # a broken image body behind a readable header
                    dropped["bad_image"] += 1
                    continue
            kept.append(tok)
            keys.append(sample["__key__"])
        if not kept:
            return None
        n_samples, n_tiles = len(kept), sum(t.shape[0] for t in tiles)
        if not tiles and self.world_size > 1:
            # Every rank must run InternViT in every micro-batch or FSDP's collectives stall: a
            # text-only micro-batch gets one blank tile in a segment of its own that no loss sees.
            kept.append(self.chat.blank_image_sample())
            tiles.append(torch.full((1, 3, 448, 448), 255, dtype=torch.uint8))
        if self.config.packing:
            tensors = collate_packed(kept, self.chat.pad_id, self.config.pad_to_multiple)
        else:
            tensors = collate_padded(kept, self.chat.pad_id)
        if len(kept) > n_samples and self.config.packing:  # the blank segment holds no real token
            tensors["attention_mask"][:, sum(len(t.input_ids) for t in kept[:n_samples]):] = 0
        pixel_values = torch.cat(tiles) if tiles else None
        return Batch(**tensors, pixel_values=pixel_values, n_samples=n_samples, n_tiles=n_tiles, keys=keys,
                     dropped=dict(dropped))

    def _tiles(self, sample: dict, n_images: int) -> torch.Tensor:
        """The uint8 tiles of the sample's first ``n_images`` images, each tiled in its share of the budget."""
        config = self.config
        members = image_members(sample, json.loads(sample["json"]))
        low, high = self._budget(len(members))
        return torch.cat([
            cut_tiles(Image.open(io.BytesIO(sample[member])), low, high, use_thumbnail=config.use_thumbnail,
                      resize=config.resize)
            for member in members[:n_images]
        ])


def image_members(sample: dict, record: dict) -> list[str]:
    """A sample's image members in ``<image>`` order: as its JSON's ``meta.images`` lists them, else
    ``jpg`` (or ``png``...) then ``1.<ext>``, ``2.<ext>``... A listed member that is missing drops it."""
    listed = ((record.get("meta") or {}).get("images")) if isinstance(record, dict) else None
    if listed:
        members = [entry.get("member") if isinstance(entry, dict) else None for entry in listed]
        missing = [m for m in members if m not in sample]
        if missing:
            raise SampleDropped("missing_image", f"meta.images lists {missing}, not in the sample")
        return members
    found = [(int(m.group(1) or 0), key) for key in sample if (m := _IMAGE_MEMBER.match(key))]
    return [key for _, key in sorted(found)]


def make_loader(stream: ShardStream) -> torch.utils.data.DataLoader:
    """A DataLoader over the stream; its workers take turns, so the rank's streams keep their order."""
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
