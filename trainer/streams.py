"""One data stream: a seeded, endless walk over its share of the shards, in windows, with a position.

The data of a run is split into ``streams`` streams, a number fixed when the run starts; stream
``s`` of ``n`` reads, every epoch, the shards the epoch's seeded shard order deals it (shard by
shard, or sample by sample when there are fewer shards than streams). Ranks and DataLoader
workers only decide which streams a process runs (``trainer.data``), so the data of a step does
not depend on the world size.

A stream reads ``window`` raw samples at a time, shuffles them with a seed of the window, tokenises
them (the tile count comes from the image header; nothing is decoded), and groups them into
micro-batches (packed or padded, ``trainer.packing``). Only a micro-batch that is handed out has its
images decoded and cut into tiles.

Its position is ``(epoch, shard, sample, seen, taken)``: the window that starts at raw sample
``sample`` of the ``shard``-th shard of the epoch's list (``seen`` raw samples into the epoch), of
which ``taken`` micro-batches were handed out.
Restoring one opens that shard, steps over the raw samples before the window (tar members are
read, nothing is tokenised), and tokenises that one window again: resuming costs one window
whatever the length of the run.
"""

import random
from collections.abc import Iterator
from dataclasses import dataclass

from pipelines._imports import require


@dataclass(frozen=True)
class Position:
    """Where a stream stands: see the module docstring."""

    epoch: int = 0
    shard: int = 0
    sample: int = 0
    seen: int = 0  # raw samples of the epoch's shard list before this one (dealing by sample)
    taken: int = 0

    def as_list(self) -> list[int]:
        return [self.epoch, self.shard, self.sample, self.seen, self.taken]


@dataclass
class Window:
    """A window's raw samples, where it starts and where the next one starts."""

    start: Position
    end: Position
    samples: list[dict]


def epoch_shards(
    shards: list[str], seed: int, epoch: int, stream: int, n_streams: int
) -> tuple[list[str], bool]:
    """This stream's shards in the epoch's order, and whether it has them whole (else every n-th sample)."""
    order = list(shards)
    random.Random(f"{seed}-shards-{epoch}").shuffle(order)
    if len(order) >= n_streams:
        return order[stream::n_streams], True
    return order, False


def windows(
    shards: list[str], seed: int, stream: int, n_streams: int, size: int, start: Position = Position()
) -> Iterator[Window]:
    """The stream's windows of at most ``size`` raw samples from ``start`` on (a window ends with its epoch)."""
    wds = require("webdataset", "train")
    epoch, shard, sample, seen = start.epoch, start.shard, start.sample, start.seen
    while True:
        mine, whole = epoch_shards(shards, seed, epoch, stream, n_streams)
        fresh, found = shard == 0 and sample == 0, False
        while shard < len(mine):
            window_start, taken = Position(epoch, shard, sample, seen), []
            while shard < len(mine) and len(taken) < size:
                for index, item in enumerate(wds.tarfile_samples([{"url": mine[shard]}])):
                    if index < sample:
                        continue  # before the position: read past, not tokenised
                    if whole or seen % n_streams == stream:
                        taken.append(item)
                    seen, sample = seen + 1, index + 1
                    if len(taken) == size:
                        break
                else:
                    shard, sample = shard + 1, 0
            if taken:
                found = True
                end = Position(epoch, shard, sample, seen) if shard < len(mine) else Position(epoch + 1)
                yield Window(window_start, end, taken)
        if fresh and not found:
            raise RuntimeError(f"stream {stream} of {n_streams} found no samples in {len(mine)} shards")
        epoch, shard, sample, seen = epoch + 1, 0, 0, 0


def shuffled(window: Window, seed: int, stream: int) -> list[dict]:
    """The window's samples in the order its seed gives (the same however often it is read)."""
    w = window.start
    order = list(window.samples)
    random.Random(f"{seed}-window-{stream}-{w.epoch}-{w.shard}-{w.sample}").shuffle(order)
    return order
