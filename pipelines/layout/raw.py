"""Reading the download stage's raw shards: img2dataset's ``NNNNN.tar`` beside ``NNNNN_stats.json``.

A shard is complete only when its ``_stats.json`` exists (img2dataset writes it last); a retry pass
may add shards with higher ids to the same folder. Samples are read member by member with
``tarfile``; images are not loaded, only located (byte offset and size inside the tar), so the
shard writer can later copy the original bytes without a re-encode.
"""

from __future__ import annotations

import json
import posixpath
import tarfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from pipelines.layout.task_table import IMAGE_FORMATS, ImageRef, Picture
from pipelines.storage import Storage

RAW_DIR = "raw"
# Image members img2dataset may write besides jpg/png/webp; the task builder converts them (images.py).
OTHER_IMAGE_EXTENSIONS = ("gif", "bmp", "tif", "tiff", "ico", "avif", "heic", "jp2")


@dataclass(slots=True)
class RawSample:
    """One downloaded image with its caption and img2dataset's metadata (the ``.json`` member)."""

    key: str
    image: ImageRef
    image_format: str  # the member's extension, normalised: jpg, png, webp...
    caption: str
    meta: dict = field(default_factory=dict)


def finished_shard_ids(storage: Storage, folder: str) -> list[str]:
    """Ids (``00000``...) of the shards in ``folder`` whose ``_stats.json`` (written last) exists, sorted.

    The download stage resumes from these and the task builder reads them: one definition of
    "finished" for both.
    """
    stats = storage.glob(posixpath.join(folder, "[0-9]*_stats.json"))
    return sorted(posixpath.basename(path)[: -len("_stats.json")] for path in stats)


def complete_shards(storage: Storage, source: str) -> list[str]:
    """Ids (``00000``...) of the complete raw shards of ``source`` (stats and tar both there), sorted."""
    folder = storage.path(RAW_DIR, source)
    return [i for i in finished_shard_ids(storage, folder) if storage.exists(posixpath.join(folder, f"{i}.tar"))]


def relative_uri(storage: Storage, path: str) -> str:
    """``path`` relative to the storage root, so task tables survive moving the root."""
    prefix = storage.root + "/"
    return path[len(prefix) :] if path.startswith(prefix) else path


def resolve_uri(storage: Storage, uri: str) -> str:
    """The reverse of :func:`relative_uri`."""
    return uri if uri.startswith("/") or "://" in uri else storage.path(uri)


def iter_raw_shard(storage: Storage, source: str, shard: str) -> Iterator[RawSample]:
    """Yield the samples of one raw shard in tar order; members without an image are skipped."""
    path = storage.path(RAW_DIR, source, f"{shard}.tar")
    uri = relative_uri(storage, path)
    with storage.fs.open(path, "rb") as f, tarfile.open(fileobj=f, mode="r|") as tar:
        current: dict = {}
        for member in tar:
            if not member.isfile():
                continue
            key, _, extension = posixpath.basename(member.name).partition(".")
            if current and current["key"] != key:
                yield from _finish(current)
                current = {}
            current["key"] = key
            extension = extension.lower()
            if extension in ("txt", "json"):
                current[extension] = tar.extractfile(member).read()
            elif extension in IMAGE_FORMATS or extension in OTHER_IMAGE_EXTENSIONS:
                current["image"] = ImageRef(uri, member.offset_data, member.size)
                current["format"] = IMAGE_FORMATS.get(extension, extension)
        if current:
            yield from _finish(current)


def _finish(parts: dict) -> Iterator[RawSample]:
    if "image" not in parts:
        return
    meta = json.loads(parts["json"]) if "json" in parts else {}
    caption = parts["txt"].decode("utf-8", errors="replace") if "txt" in parts else meta.get("caption") or ""
    yield RawSample(parts["key"], parts["image"], parts["format"], caption, meta)


def read_image(storage: Storage, image: ImageRef) -> bytes:
    """The original bytes of a referenced image."""
    with storage.fs.open(resolve_uri(storage, image.uri), "rb") as f:
        f.seek(image.offset)
        data = f.read(image.size)
    if len(data) != image.size:
        raise OSError(f"{image.uri}: expected {image.size} bytes at offset {image.offset}, read {len(data)}")
    return data




def raw_picture(storage: Storage, sample: RawSample, images, drops: Counter,
                known: tuple[int, int] | None = None) -> Picture | None:
    """The sample's image as a :class:`Picture`, from the bytes the shard holds (img2dataset's recorded
    sha256 is of the bytes as served, which differ when its resizer re-encoded them): read, hashed,
    sized, and for GIF, BMP, ... converted by ``images`` (a :class:`pipelines.layout.images.UnitImages`);
    None, counted, if it does not decode. ``known``: its perceptual hashes, when a stage that decoded it
    computed them (the OCR actor), so it is not decoded again to hash it."""
    if not images.reads_images:  # a texts-only pass: the size img2dataset recorded stands in
        meta = sample.meta
        return Picture(sample.image, sample.image_format, "", int(meta.get("width") or 1), int(meta.get("height") or 1))
    return images.picture(sample.image, read_image(storage, sample.image), drops, known)
