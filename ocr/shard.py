"""One raw shard through an OCR engine, on the actor that holds it: read, decode, OCR, order, filter.

:func:`ocr_shard` streams the shard's samples, hands the engine ``batch_size`` images at a time
(only those bytes are in memory at once) and returns the shard's corpus table, one row per sample,
dropped ones included (see :mod:`ocr.corpus`). In a run that decontaminates it also hashes each picture
it decoded for the engine (``image_phash``, ``image_dhash``), so no later stage decodes it again.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from pipelines.languages import language_of, profile
from pipelines.phash import draft_scale, hashes_of, to_signed
from pipelines.storage import Storage

from . import corpus
from .filters import apply_filters
from .reading_order import reading_order
from .settings import OcrSettings


def raw_samples(storage: Storage, source: str, shard: str) -> Iterator[dict]:
    """The samples of one raw shard in tar order, each with its image bytes and where they lie."""
    from pipelines.layout.raw import RAW_DIR, iter_raw_shard, resolve_uri

    path = storage.path(RAW_DIR, source, f"{shard}.tar")
    with storage.fs.open(path, "rb") as tar:
        for sample in iter_raw_shard(storage, source, shard):
            if not resolve_uri(storage, sample.image.uri).endswith(f"{shard}.tar"):
                raise ValueError(f"{path}: sample {sample.key} points at {sample.image.uri}, not its own tar")
            tar.seek(sample.image.offset)
            data = tar.read(sample.image.size)
            if len(data) != sample.image.size:
                raise ValueError(
                    f"{path}: sample {sample.key}: the tar ends inside its image (truncated shard)"
                )
            yield {
                "key": sample.key,
                "shard": shard,
                "image": data,
                "image_uri": sample.image.uri,
                "image_offset": sample.image.offset,
                "image_size": sample.image.size,
                "image_format": sample.image_format,
                "url": str(sample.meta.get("url") or ""),
            }


def decode(data: bytes, hash_images: bool = False) -> tuple[np.ndarray, tuple[int, int] | None] | None:
    """The image as an HxWx3 uint8 RGB array and, with ``hash_images``, its perceptual hashes from this one
    decode (:func:`pipelines.phash.hashes_of`, reduced as the draft decode of its bytes would be: the hashes
    its bytes give; a run that decontaminates); None when the bytes are not a decodable
    image. The hashes are None when the picture decodes but does not hash."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            scale = draft_scale(img) if hash_images else 1  # read before load() drops the JPEG's tile
            img.load()
            pixels = np.asarray(img.convert("RGB"))
            return pixels, (_hashes(img, scale) if hash_images else None)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


def _hashes(img, scale: int) -> tuple[int, int] | None:
    try:
        return hashes_of(img, scale)
    except (OSError, ValueError):
        return None


def text_language(text: str, language: str, scripts: dict[str, list[str]] | None) -> str:
    """The language of an image's text: with ``scripts`` (language code -> its Unicode scripts, for a
    source of ``language: auto``), the one whose scripts write most of it (the language registry's
    :func:`~pipelines.languages.language_of`); ``language`` without them, or when the text has no letter
    of any of those scripts (a page of digits, nothing read)."""
    if not scripts or not any(profile(tuple(s)).units(text)[0] for s in scripts.values()):
        return language
    return language_of(text, scripts)


def ocr_batch(samples: list[dict], engine, settings: OcrSettings, source: str, language: str,
              scripts: dict[str, list[str]] | None = None, hash_images: bool = False) -> list[dict]:
    """Corpus rows of ``samples``: the decodable images read by ``engine`` in one call, then filtered;
    each row in ``language``, or with ``scripts`` in the language of its text (:func:`text_language`).
    ``hash_images`` (a run that decontaminates): each row's ``image_phash`` / ``image_dhash``, from the
    picture decoded for the engine (null when it does not decode)."""
    images, readable, hashed = [], [], {}
    for i, sample in enumerate(samples):
        decoded = decode(sample["image"], hash_images)
        if decoded is not None:
            images.append(decoded[0])
            readable.append(i)
            hashed[i] = decoded[1]
    results = dict(zip(readable, engine.read(images) if images else [], strict=True))
    info = engine.info
    rows = []
    for i, sample in enumerate(samples):
        data = sample.pop("image")
        phash, dhash = hashed.get(i) or (None, None)
        row = {
            **sample,
            "source": source,
            "language": language,
            "image_sha256": hashlib.sha256(data).hexdigest(),
            "image_phash": to_signed(phash),
            "image_dhash": to_signed(dhash),
            "width": 0,
            "height": 0,
            "lines": [],
            "text": "",
            "text_area": 0.0,
            "low_score_lines": 0,
            "drop_reason": "undecodable_image",
            "engine": info.engine,
            "engine_version": info.engine_version,
            "det_model": info.det_model,
            "rec_model": info.rec_model,
        }
        result = results.get(i)
        if result is not None:
            outcome = apply_filters(result, settings.filters)
            lines = reading_order(outcome.lines)
            text = "\n".join(ln.text for ln in lines)
            row |= {
                "width": result.width,
                "height": result.height,
                "lines": [
                    {"text": ln.text, "quad": [list(p) for p in ln.quad], "score": ln.score} for ln in lines
                ],
                "text": text,
                "language": text_language(text, language, scripts),
                "text_area": outcome.text_area,
                "low_score_lines": outcome.low_score_lines,
                "drop_reason": outcome.drop_reason,
            }
        rows.append(row)
    return rows


def ocr_shard(
    storage: Storage, source: str, shard: str, language: str, settings: OcrSettings, engine,
    scripts: dict[str, list[str]] | None = None, hash_images: bool = False,
) -> pa.Table:
    """The corpus table of one raw shard, OCRed ``settings.batch_size`` images at a time (``scripts``,
    ``hash_images``: see :func:`ocr_batch`)."""
    rows: list[dict] = []
    batch: list[dict] = []
    for sample in raw_samples(storage, source, shard):
        batch.append(sample)
        if len(batch) == settings.batch_size:
            rows += ocr_batch(batch, engine, settings, source, language, scripts, hash_images)
            batch = []
    if batch:
        rows += ocr_batch(batch, engine, settings, source, language, scripts, hash_images)
    return pa.Table.from_pylist(rows, schema=corpus.SCHEMA)
