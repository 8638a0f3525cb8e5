"""Content-Encoding decoders whose output is capped: a compression bomb stops at the cap.

``Content-Encoding: gzip`` (or ``deflate``, or ``br`` where the ``brotli`` package >= 1.2 is
installed) is valid HTTP for any body, images included, and some CDNs send it. img2dataset hands
such a body to the image decoder as is, and the row fails. Here it is decoded chunk by chunk with
zlib's (or brotli's) own output limit, so no more than ``cap + 1`` decoded bytes ever exist.
"""

from __future__ import annotations

import zlib

try:  # optional: br bodies are decoded only where a brotli with an output limit is installed
    import brotli as _brotli

    _BROTLI_LIMITS = "output_buffer_limit" in (_brotli.Decompressor.process.__doc__ or "")
except ImportError:  # pragma: no cover - depends on the environment
    _brotli, _BROTLI_LIMITS = None, False

_STEP = 64 * 1024  # decoded bytes per decoder call
IDENTITY = frozenset({"", "identity", "none"})


class UnsupportedEncoding(ValueError):
    """The body has a Content-Encoding this process cannot decode."""


class BadEncoding(ValueError):
    """The body does not decode with the Content-Encoding it declares."""


class DecodedTooLarge(ValueError):
    """The decoded body would exceed the cap."""


def supported_encodings() -> list[str]:
    return ["gzip", "deflate"] + (["br"] if _BROTLI_LIMITS else [])


class CappedDecoder:
    """Decode one body's chunks in order; ``feed`` raises :class:`DecodedTooLarge` past ``cap`` bytes."""

    def __init__(self, content_encoding: str | None, cap: int):
        codings = [c.strip().lower() for c in (content_encoding or "").split(",") if c.strip()]
        codings = [c for c in codings if c not in IDENTITY]
        if len(codings) > 1:
            raise UnsupportedEncoding(f"stacked content encodings {content_encoding!r}")
        self.coding = codings[0] if codings else None
        if self.coding == "x-gzip":
            self.coding = "gzip"
        if self.coding not in (None, "gzip", "deflate", "br") or (self.coding == "br" and not _BROTLI_LIMITS):
            raise UnsupportedEncoding(f"content encoding {content_encoding!r} (decodable: {supported_encodings()})")
        self.cap = cap
        self.decoded = 0
        self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS) if self.coding == "gzip" else None
        self._brotli = _brotli.Decompressor() if self.coding == "br" else None
        self._sniffed = self.coding != "deflate"  # deflate: zlib-wrapped or raw, seen on the first bytes
        self._head = b""

    def feed(self, data: bytes) -> list[bytes]:
        """The decoded bytes of the next chunk, as pieces (no joined copy of up to ``cap`` bytes)."""
        if self.coding is None:
            return [self._count(data)]
        try:
            if not self._sniffed:
                data, self._head = self._head + data, b""
                if len(data) < 2:
                    self._head = data
                    return []
                self._zlib = zlib.decompressobj(zlib.MAX_WBITS if _zlib_header(data) else -zlib.MAX_WBITS)
                self._sniffed = True
            return list(self._brotli_steps(data) if self._brotli is not None else self._zlib_steps(data))
        except (zlib.error, getattr(_brotli, "error", zlib.error)) as err:
            raise BadEncoding(f"{self.coding} body does not decode: {err}") from None

    def _room(self) -> int:
        # One byte over the cap is enough to refuse; small steps keep the decoder's own buffers small.
        return min(self.cap - self.decoded + 1, _STEP)

    def _zlib_steps(self, data: bytes):
        while True:
            yield self._count(self._zlib.decompress(data, self._room()))
            data = self._zlib.unconsumed_tail
            if not data:
                return

    def _brotli_steps(self, data: bytes):
        yield self._count(self._brotli.process(data, output_buffer_limit=self._room()))
        while not self._brotli.can_accept_more_data():
            yield self._count(self._brotli.process(b"", output_buffer_limit=self._room()))

    def finish(self) -> bytes:
        """The decoder's last bytes; raises :class:`BadEncoding` if the encoded stream was cut short."""
        if not self._sniffed:
            raise BadEncoding(f"{self.coding} body of {len(self._head)} byte(s)")
        if self._zlib is not None:
            out = self._count(self._zlib.flush())
            if not self._zlib.eof:
                raise BadEncoding(f"{self.coding} body ends before its end of stream")
            return out
        if self._brotli is not None and not self._brotli.is_finished():
            raise BadEncoding("br body ends before its end of stream")
        return b""

    def _count(self, out: bytes) -> bytes:
        self.decoded += len(out)
        if self.decoded > self.cap:
            raise DecodedTooLarge(f"more than {self.cap} bytes once decoded ({self.coding or 'identity'})")
        return out


def _zlib_header(data: bytes) -> bool:
    """Whether ``data`` starts with a zlib header (RFC 1950), as ``deflate`` should; else it is raw."""
    return len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
