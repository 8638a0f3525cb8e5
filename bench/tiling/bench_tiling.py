"""Benchmark: ``trainer.tiling.tile_image`` against the straightforward way, on the same images.

The straightforward way (what the public InternVL code does with torchvision transforms,
written here with Pillow and torch since torchvision is kept out of this environment): resize
the image to the grid with PIL, crop each tile with PIL, then convert and normalise each tile
by itself. Both of vlmix's resize backends are measured: ``pil`` must give bit-identical tiles
(checked), ``torch`` trades a few levels on ~1% of bytes for a faster resize (its difference is
printed). Tiles/s for each, and the ratio to the straightforward way.

    .venv/bin/python bench/tiling/bench_tiling.py [--images 60] [--max-tiles 12]
"""

import argparse
import functools
import time

import numpy as np
import torch
from PIL import Image

from trainer.tiling import IMAGENET_MEAN, IMAGENET_STD, cut_tiles, normalise_tiles, plan_grid, tile_image


def straightforward_tiles(image: Image.Image, max_tiles: int, tile_size: int = 448) -> torch.Tensor:
    """Resize, crop every tile, transform every tile alone (ToTensor + Normalize semantics)."""
    image = image.convert("RGB")
    cols, rows = plan_grid(image.width, image.height, 1, max_tiles, tile_size)
    resized = image.resize((cols * tile_size, rows * tile_size), Image.Resampling.BICUBIC)
    crops = []
    for i in range(cols * rows):
        left, top = (i % cols) * tile_size, (i // cols) * tile_size
        crops.append(resized.crop((left, top, left + tile_size, top + tile_size)))
    if len(crops) > 1:
        crops.append(image.resize((tile_size, tile_size), Image.Resampling.BICUBIC))
    return torch.stack([per_tile_transform(crop, tile_size) for crop in crops])


def per_tile_transform(tile: Image.Image, tile_size: int) -> torch.Tensor:
    """The public InternVL transform, op for op: RGB, Resize(448, bicubic), ToTensor, Normalize."""
    tile = tile.convert("RGB") if tile.mode != "RGB" else tile
    tile = tile.resize((tile_size, tile_size), Image.Resampling.BICUBIC)  # a copy at equal size
    x = torch.from_numpy(np.array(tile, np.uint8, copy=True)).view(tile.size[1], tile.size[0], 3)
    x = x.permute((2, 0, 1)).contiguous().to(dtype=torch.float32).div(255)
    x = x.clone()  # Normalize(inplace=False)
    return x.sub_(torch.tensor(IMAGENET_MEAN).view(-1, 1, 1)).div_(torch.tensor(IMAGENET_STD).view(-1, 1, 1))


def torchvision_tiles_fn():
    """Where torchvision is installed (not in vlmix's environment): the same way with its real
    transforms, ``T.Compose([RGB, T.Resize((448, 448), BICUBIC), T.ToTensor(), T.Normalize])``
    per tile, to check that ``straightforward_tiles`` above is a faithful stand-in."""
    try:
        import torchvision.transforms as T
        from torchvision.transforms import InterpolationMode
    except Exception:  # noqa: BLE001 - absent or broken: the row is left out
        return None

    def tiles(image: Image.Image, max_tiles: int, tile_size: int = 448) -> torch.Tensor:
        transform = T.Compose([
            T.Lambda(lambda im: im.convert("RGB") if im.mode != "RGB" else im),
            T.Resize((tile_size, tile_size), interpolation=InterpolationMode.BICUBIC),
            T.ToTensor(),
            T.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD),
        ])
        image = image.convert("RGB")
        cols, rows = plan_grid(image.width, image.height, 1, max_tiles, tile_size)
        resized = image.resize((cols * tile_size, rows * tile_size))
        crops = [
            resized.crop((c * tile_size, r * tile_size, (c + 1) * tile_size, (r + 1) * tile_size))
            for r in range(rows)
            for c in range(cols)
        ]
        if len(crops) > 1:
            crops.append(image.resize((tile_size, tile_size)))
        return torch.stack([transform(crop) for crop in crops])

    return tiles


def make_images(n: int, seed: int = 0) -> list[Image.Image]:
    """Smooth random images of varied sizes and aspect ratios (documents, photos, banners)."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n):
        w, h = int(rng.integers(200, 2400)), int(rng.integers(200, 2400))
        small = rng.integers(0, 256, size=(max(h // 16, 1), max(w // 16, 1), 3), dtype=np.uint8)
        images.append(Image.fromarray(small).resize((w, h), Image.Resampling.BILINEAR))
    return images


def timed(fn, images, max_tiles):
    start = time.perf_counter()
    outputs = [fn(im, max_tiles=max_tiles) for im in images]
    return time.perf_counter() - start, outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--max-tiles", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (data workers run with 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    images = make_images(args.images)
    methods = {
        "straightforward": straightforward_tiles,
        "vlmix, resize=pil": functools.partial(tile_image, resize="pil"),
        "vlmix, resize=torch": functools.partial(tile_image, resize="torch"),
        # What a loader worker pays: uint8 tiles; normalising runs in the training step on the device.
        "cut_tiles, resize=pil": functools.partial(cut_tiles, resize="pil"),
        "cut_tiles, resize=torch": functools.partial(cut_tiles, resize="torch"),
    }
    if (with_torchvision := torchvision_tiles_fn()) is not None:
        methods["torchvision transforms"] = with_torchvision
    for fn in methods.values():
        timed(fn, images[:3], args.max_tiles)  # warm-up: allocator, caches
    # Best of the rounds, the methods alternating, so a busy neighbour hurts all alike.
    best = dict.fromkeys(methods, float("inf"))
    outputs = {}
    for _ in range(args.rounds):
        for name, fn in methods.items():
            seconds, outputs[name] = timed(fn, images, args.max_tiles)
            best[name] = min(best[name], seconds)
    base = outputs["straightforward"]
    n_tiles = sum(len(t) for t in base)
    print(f"images={len(images)} tiles={n_tiles} max_tiles={args.max_tiles} threads={args.threads}")
    print(f"{'method':26s} {'tiles/s':>8s} {'ratio':>6s}  tiles against straightforward")
    for name, seconds in best.items():
        if name.startswith("cut_tiles"):
            ours = [normalise_tiles(t) for t in outputs[name]]
        else:
            ours = outputs[name]
        diffs = [(a - b).abs().max().item() for a, b in zip(ours, base, strict=True)]
        levels = max(diffs) * 255 * max(IMAGENET_STD)  # back to 0..255 levels, upper bound
        verdict = "identical" if max(diffs) == 0 else f"max difference {max(diffs):.4f} (~{levels:.0f}/255)"
        print(f"{name:26s} {n_tiles / seconds:8.1f} {best['straightforward'] / seconds:5.2f}x  {verdict}")
    if any(not torch.equal(a, b) for a, b in zip(outputs["vlmix, resize=pil"], base, strict=True)):
        raise SystemExit("resize=pil tiles differ from the straightforward way")


if __name__ == "__main__":
    main()
