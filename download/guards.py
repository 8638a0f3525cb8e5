"""What img2dataset lacks against hostile input, and naming its failures.

img2dataset reads a whole HTTP body into memory whatever its size, decodes with OpenCV before it
checks the pixel count, and accepts truncated JPEGs (OpenCV fills the missing rows with grey).
vlmix adds three guards around it, each failing the row with a message the stats can classify:

- the body is fetched within a wall-clock budget per URL, decoded per its Content-Encoding and
  refused past ``max_body_bytes`` (:mod:`download.fetch`);
- the header is parsed with Pillow (no decode) and images over ``max_pixels`` are refused;
- a JPEG without its end-of-image marker, a PNG without IEND, is refused as truncated.
"""

from __future__ import annotations

import contextlib
import functools
import io

from img2dataset.resizer import Resizer
from PIL import Image, UnidentifiedImageError

from download.messages import (
    BAD_ENCODING,
    BODY_TOO_LARGE,
    DECOMPRESSION_BOMB,
    NOT_AN_IMAGE,
    TOO_MANY_REDIRECTS,
    TOO_SLOW,
    TRUNCATED,
    UNSUPPORTED_ENCODING,
)


@contextlib.contextmanager
def bounded_download(policy):
    """Within the block, img2dataset's downloads in this process go through :func:`download.fetch.download_image`.

    img2dataset has no hook for this; its ``download_image`` is looked up as a module global at
    call time, so replacing that one name is enough. Used around each Ray task, in the worker,
    and undone after it: Ray reuses worker processes, and a plain img2dataset run that gets one
    later must not inherit vlmix's download.
    """
    import img2dataset.downloader as downloader_module

    from download.fetch import download_image

    original = downloader_module.download_image
    downloader_module.download_image = functools.partial(download_image, policy=policy)
    try:
        yield
    finally:
        downloader_module.download_image = original


def _looks_truncated(image_format: str | None, data: bytes) -> bool:
    tail = data[-4096:]
    if image_format == "JPEG":
        return b"\xff\xd9" not in tail
    if image_format == "PNG":
        return b"IEND" not in tail
    if image_format == "GIF":
        return not data.rstrip(b"\0").endswith(b";")
    return False


class GuardedResizer(Resizer):
    """img2dataset's Resizer behind a header check: not-an-image, bombs and truncation are refused."""

    def __init__(self, *args, max_pixels: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_pixels = max_pixels

    def __call__(self, img_stream, blurring_bbox_list=None):
        refused = self.refusal(img_stream.getvalue())
        if refused:
            return None, None, None, None, None, refused
        img_stream.seek(0)
        return super().__call__(img_stream, blurring_bbox_list)

    def refusal(self, data: bytes) -> str | None:
        """Why these bytes must not be decoded, or None when they may."""
        if not data:
            return f"{NOT_AN_IMAGE} (empty body)"
        try:
            with Image.open(io.BytesIO(data)) as image:
                image_format, (width, height) = image.format, image.size
        except Image.DecompressionBombError as err:
            return f"{DECOMPRESSION_BOMB} ({err})"
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
            return f"{NOT_AN_IMAGE} (starts with {data[:16]!r})"
        if width * height > self.max_pixels:
            return f"{DECOMPRESSION_BOMB} ({width}x{height} > {self.max_pixels} pixels)"
        if _looks_truncated(image_format, data):
            return f"{TRUNCATED} ({image_format}, {len(data)} bytes)"
        return None


# Failure reasons, with whether a later attempt may succeed. The first matching pattern wins.
_REASONS = (
    (BODY_TOO_LARGE, "body_too_large", False),
    (NOT_AN_IMAGE, "not_an_image", False),
    (DECOMPRESSION_BOMB, "decompression_bomb", False),
    (TRUNCATED, "truncated_image", False),
    (TOO_SLOW, "too_slow", True),  # retried once at most: see stage._retry_list
    (TOO_MANY_REDIRECTS, "too_many_redirects", False),
    (UNSUPPORTED_ENCODING, "unsupported_encoding", False),
    (BAD_ENCODING, "bad_encoding", False),
    ("timed out", "timeout", True),
    ("timeout", "timeout", True),
    ("Connection refused", "connection_error", True),
    ("Connection reset", "connection_error", True),
    ("Remote end closed", "connection_error", True),
    ("RemoteDisconnected", "connection_error", True),
    ("IncompleteRead", "connection_error", True),
    ("Name or service not known", "dns_error", False),
    ("Temporary failure in name resolution", "dns_error", True),
    ("CERTIFICATE_VERIFY_FAILED", "tls_error", False),
    ("X-Robots-Tag", "disallowed_by_site", False),
    ("hash mismatch", "hash_mismatch", False),
    ("Image decoding error", "undecodable_image", False),
    ("image too small", "image_too_small", False),
    ("image area too large", "image_area_too_large", False),
    ("aspect ratio too large", "aspect_ratio_too_large", False),
)


def classify_error(message: str | None) -> tuple[str, bool]:
    """Map an img2dataset/vlmix error message to ``(reason, retryable)``."""
    if not message:
        return "unknown", False
    if message.startswith("HTTP Error "):
        code = message[len("HTTP Error ") :].split(":")[0].strip()
        retryable = code.startswith("5") or code in ("408", "429")
        return f"http_{code}", retryable
    for pattern, reason, retryable in _REASONS:
        if pattern in message:
            return reason, retryable
    return "other", False
