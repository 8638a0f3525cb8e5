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
import time
from dataclasses import dataclass, field

import numpy as np

# Text render modes that paint nothing: 3 (invisible) and 7 (clip only).
INVISIBLE_MODES = (3, 7)
# Ink: pixels darker than this (0..255) in the green channel, sampled every INK_STEP pixels each way
# (strokes at 144 dpi are 2-3 pixels wide).
INK_LEVEL = 128
INK_STEP = 2


@dataclass
class PageData:
    """A rendered page and its text layer (see the module docstring)."""

    index: int
    image: bytes
    image_format: str
    width: int
    height: int
    # Per character, in pdfium's text order; arrays (they cross the pipe as their bytes).
    codes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # Unicode code points
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))  # x0, y0, x1, y1 in pixels of the image
    generated: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # inserted by pdfium (spaces, breaks)
    map_error: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # the font maps it to no Unicode
    invisible: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # drawn with an invisible render mode
    ink_share: float = 0.0  # fraction of the page that is dark ink
    ink_outside_text: float = 0.0  # fraction of that ink outside every character box
    seconds: float = 0.0  # wall-clock time the rendering process spent on the page


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


def _invisible_text_anywhere(raw, page, budget: int = 20_000) -> bool:
    """Whether any text object of the page (forms included) is drawn invisible; True as well when the page
    has more objects than ``budget`` (then each character is asked)."""
    stack = [(raw.FPDFPage_CountObjects(page), lambda i: raw.FPDFPage_GetObject(page, i))]
    seen = 0
    while stack:
        count, get = stack.pop()
        for i in range(count):
            seen += 1
            if seen > budget:
                return True
            obj = get(i)
            kind = raw.FPDFPageObj_GetType(obj)
            if kind == raw.FPDF_PAGEOBJ_TEXT and raw.FPDFTextObj_GetTextRenderMode(obj) in INVISIBLE_MODES:
                return True
            if kind == raw.FPDF_PAGEOBJ_FORM:
                stack.append((raw.FPDFFormObj_CountObjects(obj), lambda j, form=obj: raw.FPDFFormObj_GetObject(form, j)))
    return False


def _codes(raw, textpage, count: int) -> list[int]:
    """Every character's code point: one call for the page (UTF-16), one per character if it has surrogates."""
    buffer = (ctypes.c_uint16 * (count + 1))()
    written = raw.FPDFText_GetText(textpage, 0, count, buffer)
    units = np.frombuffer(buffer, dtype=np.uint16)[: max(0, written - 1)]
    if len(units) == count and not ((units >= 0xD800) & (units <= 0xDFFF)).any():
        return units.tolist()
    return [raw.FPDFText_GetUnicode(textpage, i) for i in range(count)]


def _text_layer(raw, page, textpage, transform: np.ndarray, data: PageData) -> None:
    count = raw.FPDFText_CountChars(textpage)
    if count <= 0:
        return
    generated, map_error, loose_box = raw.FPDFText_IsGenerated, raw.FPDFText_HasUnicodeMapError, raw.FPDFText_GetLooseCharBox
    codes = _codes(raw, textpage, count)
    data.codes = np.array(codes, dtype=np.int64)
    # pdfium inserts only spaces and line breaks: other characters need not be asked.
    data.generated = np.array([code in (10, 13, 32) and generated(textpage, i) == 1 for i, code in enumerate(codes)],
                              dtype=bool)
    data.map_error = np.array([map_error(textpage, i) == 1 for i in range(count)], dtype=bool)
    if _invisible_text_anywhere(raw, page):  # most pages have none: no question per character
        text_object, render_mode = raw.FPDFText_GetTextObject, raw.FPDFTextObj_GetTextRenderMode
        data.invisible = np.array([bool(obj) and render_mode(obj) in INVISIBLE_MODES
                                   for obj in (text_object(textpage, i) for i in range(count))], dtype=bool)
    else:
        data.invisible = np.zeros(count, dtype=bool)
    # Each character's loose box written in place into one array (zeros where pdfium has none).
    rects = (raw.FS_RECTF * count)()
    for i in range(count):
        loose_box(textpage, i, rects[i])
    ltrb = np.frombuffer(rects, dtype=np.float32).reshape(count, 4).astype(float)  # left, top, right, bottom
    corners = ltrb[:, [[0, 3], [2, 3], [0, 1], [2, 1]]]  # (count, 4 corners, x/y)
    points = corners @ transform[:, :2].T + transform[:, 2]
    data.boxes = np.concatenate([points.min(axis=1), points.max(axis=1)], axis=1).round(2)


def _ink(green: np.ndarray, data: PageData) -> None:
    """Ink share of the page, and the share of ink no character box (visible, non-space) covers.
    ``green``: the rendered page's green channel, every ``INK_STEP`` pixels each way."""
    dark = green < INK_LEVEL
    total = int(dark.sum())
    data.ink_share = total / dark.size if dark.size else 0.0
    if not total:
        return
    boxes = data.boxes
    keep = (data.codes > 32) & ~data.invisible & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    covered = np.zeros_like(dark)
    if keep.any():
        x0, y0, x1, y1 = boxes[keep].T
        pad = (y1 - y0) * 0.25
        top = np.maximum(0, ((y0 - pad) / INK_STEP).astype(int))
        bottom = ((y1 + pad) / INK_STEP).astype(int) + 1
        left = np.maximum(0, ((x0 - pad) / INK_STEP).astype(int))
        right = ((x1 + pad) / INK_STEP).astype(int) + 1
        # A line's characters: boxes on the same rows, each touching the one before; one slice a run.
        starts = np.flatnonzero(np.concatenate([[True], (top[1:] != top[:-1]) | (bottom[1:] != bottom[:-1])
                                                | (left[1:] > right[:-1])]))
        for t, b, lo, hi in zip(top[starts], bottom[starts], np.minimum.reduceat(left, starts),
                                np.maximum.reduceat(right, starts), strict=True):
            covered[t:b, lo:hi] = True
    data.ink_outside_text = float((dark & ~covered).sum() / total)


class _Canvas:
    """One pixel buffer the rendering process draws every page into, grown when a page needs more: a
    fresh buffer a page costs its allocation and a page fault every 4 KB of it (about 2 ms at 144 dpi)."""

    buffer: ctypes.Array | None = None

    @classmethod
    def bitmap(cls, width: int, height: int, format: int, rev_byteorder: bool):
        """A ``bitmap_maker`` for ``PdfPage.render``: a four-byte-a-pixel bitmap on the shared buffer."""
        import pypdfium2

        size = width * height * 4
        if cls.buffer is None or len(cls.buffer) < size:
            cls.buffer = None  # the old one goes before the new one is asked for (the memory limit)
            cls.buffer = (ctypes.c_ubyte * size)()
        view = (ctypes.c_ubyte * size).from_buffer(cls.buffer)
        return pypdfium2.PdfBitmap.new_native(width, height, format, rev_byteorder, buffer=view, stride=width * 4)


def render_scale(width_pt: float, height_pt: float, dpi: float, max_side: int) -> float:
    """Pixels per point at ``dpi``, lowered so the longer side is at most ``max_side`` pixels."""
    scale = dpi / 72
    longer = max(width_pt, height_pt) * scale
    return scale * min(1.0, max_side / longer) if longer > 0 else scale


def read_page(document, index: int, dpi: float, max_side: int, image_format: str, quality: int) -> PageData:
    """Render page ``index`` of an open ``pypdfium2.PdfDocument`` and read its text layer."""
    import pypdfium2.raw as raw

    started = time.perf_counter()
    page = document[index]
    try:
        width_pt, height_pt = page.get_size()
        scale = render_scale(width_pt, height_pt, dpi, max_side)
        # RGBx, four bytes a pixel, on the process's one canvas: Pillow wraps it without a copy and
        # encodes JPEG from it; the ink is read from it too, before the next page draws over it.
        bitmap = page.render(scale=scale, may_draw_forms=True, prefer_bgrx=True, rev_byteorder=True,
                             bitmap_maker=_Canvas.bitmap)
        image = bitmap.to_pil()
        width, height = image.size
        out = io.BytesIO()
        if image_format == "png":
            image.convert("RGB").save(out, format="PNG", compress_level=6)
        else:
            image.save(out, format="JPEG", quality=quality)
        data = PageData(index, out.getvalue(), image_format, width, height)
        textpage = page.get_textpage()
        try:
            _text_layer(raw, page.raw, textpage.raw, _device_transform(raw, page.raw, width, height), data)
        finally:
            textpage.close()
        _ink(bitmap.to_numpy()[::INK_STEP, ::INK_STEP, 1], data)
        bitmap.close()
        data.seconds = time.perf_counter() - started
        return data
    finally:
        page.close()
