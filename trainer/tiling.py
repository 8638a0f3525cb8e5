"""Dynamic high resolution (SPEC §3): choose a tile grid, cut 448x448 tiles, add a thumbnail, normalise.

An image becomes ``cols * rows`` tiles of ``tile_size`` pixels plus, when there is more than one
tile, a thumbnail of the whole image. The grid is the candidate whose aspect ratio is closest to
the image's; see :func:`plan_grid`.

The cutting is done the cheap way: the image is resized once to the grid's size, and the tiles
are cut by one strided copy of that array rather than separate crops and per-tile transposes.
Normalisation runs once over the whole batch of tiles (in the training step, on the
accelerator), with the same float32 operations as a per-tile transform.

Two resize backends (``resize=``), both bicubic with antialiasing (a = -0.5, Pillow's kernel):

- ``"pil"`` (default): Pillow's ``Image.resize``, what the public InternVL code calls. Tiles are
  bit-identical to cutting and normalising each tile by itself. The two resizes (grid and
  thumbnail) are about two thirds of the work and no cheaper exact implementation exists, so
  this path is about 1.2-1.3x the straightforward way.
- ``"torch"``: PyTorch's uint8 antialiased bicubic kernel (``F.interpolate(..., antialias=True)``,
  vectorised), about 4x faster than Pillow's. Its weights are 16-bit rather than Pillow's
  22-bit fixed point, so about 1% of the bytes differ from Pillow's, mostly by 1 or 2 levels out
  of 255 (at most 10 seen, on the thumbnail of a text page; ``tests/trainer/test_tiling.py``
  bounds this). Pick it where the data loader is the bottleneck (few CPU cores per accelerator).

``bench/tiling`` measures both against the straightforward way.
"""

import warnings
from typing import Literal

import numpy as np
import torch
from PIL import Image

from pipelines.tiles import candidate_grids, plan_grid, tile_count  # noqa: F401 (re-exported)

#: ImageNet statistics, the normalisation InternViT was trained with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: The resize implementations :func:`cut_tiles` can use; see the module docstring.
ResizeBackend = Literal["pil", "torch"]
RESIZE_BACKENDS: tuple[str, ...] = ("pil", "torch")


def cut_tiles(
    image: Image.Image,
    min_tiles: int = 1,
    max_tiles: int = 12,
    tile_size: int = 448,
    use_thumbnail: bool = True,
    resize: ResizeBackend = "pil",
) -> torch.Tensor:
    """Tiles of ``image`` (row by row, left to right, then the thumbnail) as bytes ``(n, 3, T, T)``.

    The data loader ships these uint8 tiles (a quarter of the float32 size through the worker
    pipes) and the training step normalises the whole batch at once with :func:`normalise_tiles`.
    ``resize`` picks the resize implementation (see the module docstring).

    >>> cut_tiles(Image.new("RGB", (800, 1300))).shape
    torch.Size([7, 3, 448, 448])
    """
    if resize not in RESIZE_BACKENDS:
        raise ValueError(f"resize must be one of {RESIZE_BACKENDS}, got {resize!r}")
    image = image.convert("RGB")
    cols, rows = plan_grid(image.width, image.height, min_tiles, max_tiles, tile_size)
    n_tiles = cols * rows
    with_thumbnail = use_thumbnail and n_tiles > 1
    out = torch.empty((n_tiles + with_thumbnail, 3, tile_size, tile_size), dtype=torch.uint8)
    resize_to = _pil_resizer(image) if resize == "pil" else _torch_resizer(image)
    # The grid-sized image viewed as (3, rows, T, cols, T) is already all the tiles: one strided
    # copy into channel-first tiles replaces cols*rows crops and per-tile transposes.
    pixels = resize_to(rows * tile_size, cols * tile_size).view(3, rows, tile_size, cols, tile_size)
    out[:n_tiles].view(rows, cols, 3, tile_size, tile_size).copy_(pixels.permute(1, 3, 0, 2, 4))
    if with_thumbnail:
        out[n_tiles].copy_(resize_to(tile_size, tile_size))
    return out


def _pil_resizer(image: Image.Image):
    """``(height, width) -> (3, H, W)`` uint8 view of Pillow's bicubic resize of ``image``."""

    def resize_to(height: int, width: int) -> torch.Tensor:
        resized = image.resize((width, height), Image.Resampling.BICUBIC)
        return torch.from_numpy(np.array(resized)).permute(2, 0, 1)

    return resize_to


def _torch_resizer(image: Image.Image):
    """``(height, width) -> (3, H, W)`` uint8 from PyTorch's antialiased bicubic, sharing one source view."""
    with warnings.catch_warnings():  # a read-only view of Pillow's bytes: interpolate only reads it
        warnings.simplefilter("ignore", UserWarning)
        source = torch.from_numpy(np.asarray(image)).permute(2, 0, 1).unsqueeze(0)

    def resize_to(height: int, width: int) -> torch.Tensor:
        return torch.nn.functional.interpolate(
            source, size=(height, width), mode="bicubic", antialias=True, align_corners=False
        )[0]

    return resize_to


def normalise_tiles(
    tiles: torch.Tensor,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """uint8 tiles ``(n, 3, H, W)`` to normalised floats, in place on one new tensor.

    The operations are those of a per-tile ``ToTensor`` + ``Normalize`` (divide by 255, subtract
    the mean, divide by the std, in float32), so the values are bit-identical to them; run it on
    the accelerator to make it free.
    """
    out = tiles.to(torch.float32).div_(255)
    out.sub_(torch.tensor(mean, device=out.device).view(3, 1, 1))
    out.div_(torch.tensor(std, device=out.device).view(3, 1, 1))
    return out.to(dtype)


def tile_image(
    image: Image.Image,
    min_tiles: int = 1,
    max_tiles: int = 12,
    tile_size: int = 448,
    use_thumbnail: bool = True,
    resize: ResizeBackend = "pil",
) -> torch.Tensor:
    """Normalised float32 tiles of ``image``, ``(n, 3, T, T)``: :func:`cut_tiles` then :func:`normalise_tiles`."""
    return normalise_tiles(cut_tiles(image, min_tiles, max_tiles, tile_size, use_thumbnail, resize))
