"""One PDF page read with pdfium: the rendered image, the text layer with positions, the ink.

This runs inside the rendering process (:mod:`pdf.sandbox`), never in a worker itself: pdfium is
C++ fed with hostile files. What it returns pickles (plain numbers, lists and bytes) and holds all
that the decision and the samples need, so the worker never touches pdfium.

Character boxes are pdfium's *loose* boxes (the font's ascent to descent, the glyph's advance
width), mapped from page space into the rendered image's pixels with the page's own rotation
(``FPDF_PageToDevice``), so a box drawn on the image covers the glyph whatever ``/Rotate`` says.
"""

from __future__ import annotations

import ctypes
import io
from dataclasses import dataclass, field

import numpy as np

# Text render modes that paint nothing: 3 (invisible) and 7 (clip only).
INVISIBLE_MODES = (3, 7)
# Ink: pixels darker than this (0..255) on the page rendered in grey; measured on a 4x reduced page.
INK_LEVEL = 128
INK_REDUCE = 4


@dataclass
class PageData:
    """A rendered page and its text layer (see the module docstring)."""

    index: int
    image: bytes
    image_format: str
    width: int
    height: int
    codes: list[int] = field(default_factory=list)  # Unicode code points, pdfium's text order
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)  # x0, y0, x1, y1 pixels
    generated: list[bool] = field(default_factory=list)  # inserted by pdfium (spaces, line breaks)
    map_error: list[bool] = field(default_factory=list)  # the font has no valid Unicode mapping for it
    invisible: list[bool] = field(default_factory=list)  # drawn with an invisible render mode
    ink_share: float = 0.0  # fraction of the page that is dark ink
    ink_outside_text: float = 0.0  # fraction of that ink outside every character box


def _device_transform(raw, page, width: int, height: int) -> np.ndarray:
    """The affine map page points -> image pixels (a 2x3 matrix), from three points through pdfium."""
    out_x, out_y = ctypes.c_int(), ctypes.c_int()
    big = 1 << 14  # map a large bitmap and scale down: pdfium rounds device coordinates to integers
    fx, fy = big / width, big / height

    def device(x: float, y: float) -> tuple[float, float]:
        raw.FPDF_PageToDevice(page, 0, 0, big, big, 0, x, y, out_x, out_y)
        return out_x.value / fx, out_y.value / fy

    ox, oy = device(0, 0)
    ax, ay = device(1000, 0)
    bx, by = device(0, 1000)
    return np.array([[(ax - ox) / 1000, (bx - ox) / 1000, ox], [(ay - oy) / 1000, (by - oy) / 1000, oy]])


def _text_layer(raw, page, textpage, transform: np.ndarray, data: PageData) -> None:
    count = raw.FPDFText_CountChars(textpage)
    rect = raw.FS_RECTF()
    corners = np.empty((max(count, 0), 4, 2))
    for i in range(count):
        code = raw.FPDFText_GetUnicode(textpage, i)
        data.codes.append(int(code))
        data.generated.append(bool(raw.FPDFText_IsGenerated(textpage, i) == 1))
        data.map_error.append(bool(raw.FPDFText_HasUnicodeMapError(textpage, i) == 1))
        obj = raw.FPDFText_GetTextObject(textpage, i)
        data.invisible.append(bool(obj) and raw.FPDFTextObj_GetTextRenderMode(obj) in INVISIBLE_MODES)
        if raw.FPDFText_GetLooseCharBox(textpage, i, rect):
            x0, x1, y0, y1 = rect.left, rect.right, rect.bottom, rect.top
        else:
            x0 = x1 = y0 = y1 = 0.0
        corners[i] = ((x0, y0), (x1, y0), (x0, y1), (x1, y1))
    if count > 0:
        points = corners @ transform[:, :2].T + transform[:, 2]
        lo, hi = points.min(axis=1), points.max(axis=1)
        data.boxes = [tuple(float(v) for v in box) for box in np.concatenate([lo, hi], axis=1).round(2)]


def _ink(gray: np.ndarray, data: PageData) -> None:
    """Ink share of the page, and the share of ink no character box (visible, non-space) covers."""
    h, w = gray.shape
    small = gray[: h - h % INK_REDUCE or h, : w - w % INK_REDUCE or w]
    if small.shape[0] >= INK_REDUCE and small.shape[1] >= INK_REDUCE:
        small = small.reshape(small.shape[0] // INK_REDUCE, INK_REDUCE, small.shape[1] // INK_REDUCE,
                              INK_REDUCE).min(axis=(1, 3))
    dark = small < INK_LEVEL
    total = int(dark.sum())
    data.ink_share = total / dark.size if dark.size else 0.0
    if not total:
        return
    covered = np.zeros_like(dark)
    for (x0, y0, x1, y1), code, hidden in zip(data.boxes, data.codes, data.invisible, strict=True):
        if hidden or code <= 32 or x1 <= x0 or y1 <= y0:
            continue
        pad = (y1 - y0) * 0.25
        covered[max(0, int((y0 - pad) / INK_REDUCE)): int((y1 + pad) / INK_REDUCE) + 1,
                max(0, int((x0 - pad) / INK_REDUCE)): int((x1 + pad) / INK_REDUCE) + 1] = True
    data.ink_outside_text = float((dark & ~covered).sum() / total)


def render_scale(width_pt: float, height_pt: float, dpi: float, max_side: int) -> float:
    """Pixels per point at ``dpi``, lowered so the longer side is at most ``max_side`` pixels."""
    scale = dpi / 72
    longer = max(width_pt, height_pt) * scale
    return scale * min(1.0, max_side / longer) if longer > 0 else scale


def read_page(document, index: int, dpi: float, max_side: int, image_format: str, quality: int) -> PageData:
    """Render page ``index`` of an open ``pypdfium2.PdfDocument`` and read its text layer."""
    import pypdfium2.raw as raw

    page = document[index]
    try:
        width_pt, height_pt = page.get_size()
        scale = render_scale(width_pt, height_pt, dpi, max_side)
        bitmap = page.render(scale=scale, may_draw_forms=True)
        image = bitmap.to_pil().convert("RGB")
        width, height = image.size
        out = io.BytesIO()
        if image_format == "png":
            image.save(out, format="PNG", compress_level=6)
        else:
            image.save(out, format="JPEG", quality=quality)
        data = PageData(index, out.getvalue(), image_format, width, height)
        textpage = page.get_textpage()
        try:
            _text_layer(raw, page.raw, textpage.raw, _device_transform(raw, page.raw, width, height), data)
        finally:
            textpage.close()
        _ink(np.asarray(image.convert("L")), data)
        return data
    finally:
        page.close()
