"""Dynamic tiling against a straightforward reading of SPEC §3, on thousands of image sizes."""

import functools
import random

import numpy as np
import pytest
import torch
from PIL import Image

from trainer.tiling import IMAGENET_MEAN, IMAGENET_STD, candidate_grids, cut_tiles, plan_grid, tile_image


@functools.cache
def reference_candidates(min_tiles, max_tiles):
    grids = {
        (i, j) for n in range(min_tiles, max_tiles + 1) for i in range(1, n + 1) for j in range(1, n + 1)
    }
    return sorted(
        (g for g in grids if min_tiles <= g[0] * g[1] <= max_tiles), key=lambda g: (g[0] * g[1], g[0])
    )


def reference_grid(width, height, min_tiles=1, max_tiles=12, tile_size=448):
    """SPEC §3 read literally, with floats, the way the public InternVL code does it."""
    aspect, best_diff, best = width / height, float("inf"), None
    for cols, rows in reference_candidates(min_tiles, max_tiles):
        diff = abs(aspect - cols / rows)
        if diff < best_diff:
            best_diff, best = diff, (cols, rows)
        elif diff == best_diff and width * height > 0.5 * tile_size * tile_size * cols * rows:
            best = (cols, rows)
    return best


def test_candidate_counts():
    assert len(candidate_grids(1, 12)) == 35
    assert len(candidate_grids(1, 40)) == 158
    assert all(1 <= c * r <= 12 for c, r in candidate_grids(1, 12))


def test_report_example():
    assert plan_grid(800, 1300) == (2, 3)


@pytest.mark.parametrize("max_tiles", [6, 12, 40])
def test_plan_grid_matches_rule_on_thousands_of_sizes(max_tiles):
    rng = random.Random(max_tiles)
    sizes = [(rng.randint(1, 5000), rng.randint(1, 5000)) for _ in range(3000)]
    # Exact aspect ties between candidates, where the area rule decides.
    sizes += [
        (k * c, k * r) for c, r in candidate_grids(1, max_tiles) for k in (1, 100, 200, 224, 225, 300, 448)
    ]
    sizes += [(w, h) for w in range(1, 60) for h in range(1, 60)]
    for width, height in sizes:
        assert plan_grid(width, height, 1, max_tiles) == reference_grid(width, height, 1, max_tiles), (
            width,
            height,
        )


def test_tie_keeps_small_images_small():
    # 448x448 has the aspect of 1x1 and 2x2; its area (1 tile) is not more than half of 4 tiles.
    assert plan_grid(448, 448) == (1, 1)
    assert plan_grid(900, 900) == (2, 2)  # 810,000 px > half of 896x896


def test_bad_sizes_are_errors():
    with pytest.raises(ValueError):
        plan_grid(0, 10)
    with pytest.raises(ValueError):
        plan_grid(10, 10, min_tiles=5, max_tiles=4)


def _per_tile_reference(image: Image.Image, max_tiles: int) -> torch.Tensor:
    """Resize, crop every tile, normalise every tile alone."""
    cols, rows = plan_grid(image.width, image.height, 1, max_tiles)
    resized = image.resize((cols * 448, rows * 448), Image.Resampling.BICUBIC)
    crops = [
        resized.crop((c * 448, r * 448, c * 448 + 448, r * 448 + 448))
        for r in range(rows)
        for c in range(cols)
    ]
    if len(crops) > 1:
        crops.append(image.resize((448, 448), Image.Resampling.BICUBIC))
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return torch.stack(
        [(torch.from_numpy(np.array(c)).permute(2, 0, 1).float() / 255 - mean) / std for c in crops]
    )


@pytest.mark.parametrize("size", [(800, 1300), (1000, 300), (300, 300), (2000, 2000)])
def test_tiles_are_identical_to_per_tile_cutting(size):
    rng = np.random.default_rng(sum(size))
    image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    ours = tile_image(image, max_tiles=12)
    reference = _per_tile_reference(image, 12)
    assert ours.shape == reference.shape
    assert torch.equal(ours, reference)


def _painted_grid(cols: int = 3, rows: int = 2) -> Image.Image:
    """Each tile of a cols x rows grid painted with its own grey level, 40 * its row-major index."""
    pixels = np.zeros((rows * 448, cols * 448, 3), dtype=np.uint8)
    for i in range(cols * rows):
        r, c = divmod(i, cols)
        pixels[r * 448 : (r + 1) * 448, c * 448 : (c + 1) * 448] = 40 * i
    return Image.fromarray(pixels)


def test_cut_tiles_order_and_thumbnail():
    # Tiles must come row by row.
    tiles = cut_tiles(_painted_grid())
    assert tiles.dtype == torch.uint8 and tiles.shape == (7, 3, 448, 448)
    for i in range(6):
        assert int(tiles[i, :, 100:300, 100:300].float().mean()) == 40 * i
    assert cut_tiles(Image.new("RGB", (448, 448))).shape[0] == 1  # one tile: no thumbnail
    assert cut_tiles(Image.new("L", (3000, 3000)), max_tiles=40).shape[0] == 37  # 6x6 + thumbnail


def _test_images():
    """Noise, smooth gradients and black-on-white text, at sizes that scale down and up."""
    from PIL import ImageDraw

    rng = np.random.default_rng(7)
    for width, height in [(800, 1300), (2400, 600), (300, 200), (1920, 1080)]:
        yield Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        small = rng.integers(0, 256, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
        yield Image.fromarray(small).resize((width, height), Image.Resampling.BILINEAR)
        text = Image.new("RGB", (width, height), "white")
        draw = ImageDraw.Draw(text)
        for y in range(0, height, 30):
            draw.text((5, y), "The quick brown fox 0123456789 " * 10, fill="black")
        yield text


def test_torch_resize_stays_within_a_few_levels_of_pillow():
    """The fast backend is another implementation of the same kernel: same grid, same tile order,
    values within the bounds the module docstring states (a regression to another kernel or to
    misplaced tiles would break them by far)."""
    worst, differing, total, abs_sum = 0, 0, 0, 0
    for image in _test_images():
        exact = cut_tiles(image, resize="pil").int()
        fast = cut_tiles(image, resize="torch").int()
        assert fast.shape == exact.shape
        diff = (fast - exact).abs()
        worst = max(worst, int(diff.max()))
        differing += int((diff > 0).sum())
        abs_sum += int(diff.sum())
        total += diff.numel()
    assert worst <= 12  # measured 10, in the thumbnail of a text page
    assert differing / total < 0.02  # measured 0.9%
    assert abs_sum / total < 0.025  # mean absolute difference in levels of 255; measured 0.010


def test_torch_resize_keeps_tile_order_and_modes():
    tiles = cut_tiles(_painted_grid(), resize="torch")
    assert tiles.dtype == torch.uint8 and tiles.shape == (7, 3, 448, 448) and tiles.is_contiguous()
    for i in range(6):
        assert int(tiles[i, :, 100:300, 100:300].float().mean()) == 40 * i
    for mode in ("L", "RGBA", "P", "I;16"):
        assert cut_tiles(Image.new(mode, (900, 450)), resize="torch").shape == (3, 3, 448, 448)
    with pytest.raises(ValueError, match="resize must be one of"):
        cut_tiles(Image.new("RGB", (10, 10)), resize="cv2")
