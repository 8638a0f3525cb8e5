"""Small PDFs with known text, for the tests, the benchmark and the demo (reportlab, BSD).

Each maker returns the PDF's bytes; the text-bearing ones also return what a reader must find:
the lines in reading order with where they were drawn (``x``, the baseline ``y`` from the top of the
page, and the font size, in points). The hostile ones are real PDFs, not mocks: a text layer
whose ToUnicode map lies, a page of forms that draw each other a billion times, a truncated file.
"""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass

CJK_FONT = "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"
LATIN_FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
A4 = (595.0, 842.0)

ENGLISH = ["Common Crawl holds many documents.", "Each page becomes an image and its text.",
           "The text layer is an exact label.", "Reading order follows the columns."]
CHINESE = ["文档页面被渲染成图像。", "文字层给出准确的标注。", "中文和英文都可以处理。", "按照阅读顺序输出文字。"]
LEFT = ["Left column line one", "left column line two", "left column line three", "left column line four"]
RIGHT = ["Right column line one", "right column line two", "right column line three", "right column line four"]


@dataclass(frozen=True)
class Line:
    text: str
    x: float
    y: float  # baseline, points from the top of the page
    size: float


def _canvas(**kwargs):
    from reportlab.pdfgen import canvas

    out = io.BytesIO()
    return out, canvas.Canvas(out, pagesize=A4, **kwargs)


def _font(name: str) -> str:
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    if name == "cjk" and "WQY" not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(TTFont("WQY", CJK_FONT, subfontIndex=0))
    if name == "latin" and "DejaVu" not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(TTFont("DejaVu", LATIN_FONT))
    return {"cjk": "WQY", "latin": "DejaVu"}.get(name, name)


def _draw(c, lines: list[Line], font: str) -> None:
    for line in lines:
        c.setFont(font, line.size)
        c.drawString(line.x, A4[1] - line.y, line.text)


def text_pages(pages: list[list[str]], font: str = "Helvetica", size: float = 14) -> tuple[bytes, list[list[Line]]]:
    """One page per list of lines, drawn top to bottom at the left margin."""
    out, c = _canvas()
    font = _font(font) if font in ("cjk", "latin") else font
    drawn = []
    for texts in pages:
        lines = [Line(t, 72, 100 + i * size * 2.2, size) for i, t in enumerate(texts)]
        _draw(c, lines, font)
        drawn.append(lines)
        c.showPage()
    c.save()
    return out.getvalue(), drawn


def two_columns(size: float = 12) -> tuple[bytes, list[Line]]:
    """A title over two columns and a footer under them; the columns drawn row by row across."""
    out, c = _canvas()
    title = Line("Two columns under one title", 72, 80, size + 4)
    rows = [(Line(left, 60, 130 + i * 2 * size, size), Line(right, 320, 130 + i * 2 * size, size))
            for i, (left, right) in enumerate(zip(LEFT, RIGHT, strict=True))]
    footer = Line("A footer that runs across both columns at the bottom of the page", 60, 130 + 6 * 2 * size, size)
    _draw(c, [title] + [line for row in rows for line in row] + [footer], "Helvetica")
    c.showPage()
    c.save()
    return out.getvalue(), [title, *(r[0] for r in rows), *(r[1] for r in rows), footer]


def rotated(size: float = 14) -> tuple[bytes, list[Line]]:
    """A landscape page stored the way scanners and office suites do: a portrait MediaBox with
    ``/Rotate 90`` and content drawn turned a quarter, so it shows upright. Lines are in display
    coordinates (842 x 595 points)."""
    lines = [Line(t, 72, 100 + i * size * 2.2, size) for i, t in enumerate(ENGLISH)]
    text = b"".join(b"BT /F1 %g Tf %g %g Td (%s) Tj ET\n" % (ln.size, ln.x, A4[0] - ln.y, ln.text.encode())
                    for ln in lines)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Rotate 90 "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        _stream(b"q 0 1 -1 0 595 0 cm\n" + text + b"Q"),
    ]
    return assemble(objects), lines


def scanned(texts: list[str] = ENGLISH) -> bytes:
    """A page that is only a picture of text (a scan): no text layer at all."""
    from PIL import Image, ImageDraw, ImageFont
    from reportlab.lib.utils import ImageReader

    image = Image.new("L", (1240, 1754), 255)
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(LATIN_FONT, 36)
    for i, text in enumerate(texts):
        draw.text((150, 200 + i * 80), text, fill=0, font=font)
    out, c = _canvas()
    c.drawImage(ImageReader(image), 0, 0, width=A4[0], height=A4[1])
    c.showPage()
    c.save()
    return out.getvalue()


def invisible_layer(texts: list[str] = ENGLISH) -> bytes:
    """A scan with an invisible text layer on top (render mode 3), as OCR'd scans carry."""
    from PIL import Image
    from reportlab.lib.utils import ImageReader

    out, c = _canvas()
    c.drawImage(ImageReader(Image.new("L", (100, 100), 40)), 72, 500, width=300, height=200)
    text = c.beginText(72, A4[1] - 100)
    text.setTextRenderMode(3)
    text.setFont("Helvetica", 14)
    for line in texts:
        text.textLine(line)
    c.drawText(text)
    c.showPage()
    c.save()
    return out.getvalue()


def blank() -> bytes:
    out, c = _canvas()
    c.showPage()
    c.save()
    return out.getvalue()


def encrypted() -> bytes:
    """Text behind a user password."""
    from reportlab.lib.pdfencrypt import StandardEncryption

    out, c = _canvas(encrypt=StandardEncryption("user-secret", "owner-secret"))
    c.drawString(72, 700, "secret text")
    c.showPage()
    c.save()
    return out.getvalue()


def corrupt() -> bytes:
    """A PDF cut off after its first bytes, as a failed download leaves it."""
    return text_pages([ENGLISH])[0][:300]


def assemble(objects: list[bytes], root: int = 1) -> bytes:
    """A PDF file from its objects (object i+1 is ``objects[i]``), with a correct xref table."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, root, xref)
    return bytes(out)


def _stream(data: bytes, extra: bytes = b"") -> bytes:
    packed = zlib.compress(data)
    return b"<< /Length %d /Filter /FlateDecode %s>>\nstream\n" % (len(packed), extra) + packed + b"\nendstream"


def lying_text_layer(targets: str = "文档页面被渲染成图像", full_width: bool = False) -> tuple[bytes, str]:
    """Latin glyphs on the page whose ToUnicode map says they are ``targets`` (Han): the classic garbled
    Chinese text layer. Returns the PDF and the Latin text actually drawn. ``full_width``: the font
    advances every glyph a full em, as a CJK font's glyphs do (give Latin ``targets`` for the reverse lie)."""
    drawn = "ABCDEFGHIJ"[: len(targets)]
    widths = b" /FirstChar 65 /LastChar 74 /Widths [%s]" % b" ".join([b"1000"] * 10) if full_width else b""
    cmap = ("/CIDInit /ProcSet findresource begin 12 dict begin begincmap /CMapName /Lie def\n"
            "1 begincodespacerange <00> <FF> endcodespacerange\n"
            f"{len(drawn)} beginbfchar\n"
            + "".join(f"<{ord(a):02X}> <{ord(b):04X}>\n" for a, b in zip(drawn, targets, strict=True))
            + "endbfchar endcmap CMapName currentdict /CMap defineresource pop end end\n").encode()
    content = b"".join(b"BT /F1 28 Tf 72 %d Td (%s) Tj ET\n" % (760 - 50 * row, drawn.encode()) for row in range(6))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 4 0 R >> >> "
        b"/Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding /ToUnicode 6 0 R%s >>"
        % widths,
        _stream(content),
        _stream(cmap),
    ]
    return assemble(objects), drawn


def render_bomb(depth: int = 9, fan_out: int = 12) -> bytes:
    """One page whose form draws a form ``fan_out`` times, that one the next, ``depth`` levels deep:
    a few kilobytes that ask the renderer for ``fan_out ** depth`` glyph-sized paths."""
    first = 5
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /XObject << /X0 %d 0 R >> >> "
        b"/Contents 4 0 R >>" % first,
        _stream(b"q 595 0 0 842 0 0 cm /X0 Do Q"),
    ]
    for level in range(depth):
        if level == depth - 1:
            body, resources = b"0.1 0.1 0.8 0.8 re f", b""
        else:
            step = 1.0 / fan_out
            body = b"".join(b"q %.4f 0 0 %.4f %.4f %.4f cm /X Do Q\n" % (step * 3, step * 3, (i % 4) * 0.25, step * i)
                            for i in range(fan_out))
            resources = b"/Resources << /XObject << /X %d 0 R >> >>" % (first + level + 1)
        objects.append(_stream(body, b"/Type /XObject /Subtype /Form /BBox [0 0 1 1] " + resources + b" "))
    return assemble(objects)


MORE_ENGLISH = ["Scanned pages need optical character recognition.", "A text layer can be wrong in many ways.",
                "Fonts map glyph codes to Unicode characters.", "The crawl stores files found on the web.",
                "Pages are rendered at a fixed resolution.", "Each line is given with its bounding box.",
                "Tables and figures sit between paragraphs.", "Reports, manuals and papers are common."]
MORE_CHINESE = ["扫描页面需要光学字符识别。", "文字层可能以多种方式出错。", "字体把字形编码映射到统一码。",
                "网络爬虫保存了网页上的文件。", "页面按照固定的分辨率渲染。", "每一行文字都给出它的边界框。",
                "表格和图片位于段落之间。", "报告、手册和论文都很常见。"]


def demo_corpus(folder, seed: int = 0, documents: int = 24) -> list:
    """The demo's Common Crawl PDF stand-ins in ``folder`` (written once; the same seed, the same files):
    English and Chinese documents of 1-3 pages, two columns, a rotated page, scans without a text layer,
    lying text layers, a blank page, an encrypted and a truncated file. Returns the files."""
    import json
    import random
    from pathlib import Path

    folder = Path(folder)
    stamp = {"seed": seed, "documents": documents, "version": 1}
    marker = folder / "_GENERATED.json"
    if marker.exists() and json.loads(marker.read_text()) == stamp:
        return sorted(folder.glob("*.pdf"))
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    files = {}
    for i in range(documents):
        chinese = i % 2 == 1
        pool = CHINESE + MORE_CHINESE if chinese else ENGLISH + MORE_ENGLISH
        pages = [rng.sample(pool, rng.randint(3, 6)) for _ in range(rng.randint(1, 3))]
        files[f"doc_{i:03d}_{'zh' if chinese else 'en'}.pdf"] = text_pages(
            pages, font="cjk" if chinese else "Helvetica", size=rng.choice([12, 14, 16]))[0]
    files.update({"two_columns.pdf": two_columns()[0], "rotated.pdf": rotated()[0],
                  "scan_en.pdf": scanned(rng.sample(ENGLISH + MORE_ENGLISH, 4)),
                  "scan_en_2.pdf": scanned(rng.sample(ENGLISH + MORE_ENGLISH, 4)),
                  "lying_layer.pdf": lying_text_layer()[0], "private_codes.pdf": lying_text_layer(
                      "".join(chr(0xE000 + i) for i in range(10)))[0],
                  "blank.pdf": blank(), "encrypted.pdf": encrypted(), "truncated.pdf": corrupt()})
    for name, data in files.items():
        (folder / name).write_bytes(data)
    marker.write_text(json.dumps(stamp))
    return sorted(folder.glob("*.pdf"))


def _single_page(content: bytes, font: bytes, extra: list[bytes] | None = None) -> bytes:
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 4 0 R >> >> "
        b"/Contents 5 0 R >>",
        font,
        _stream(content),
        *(extra or []),
    ]
    return assemble(objects)


def unmapped_cid_font() -> bytes:
    """Text in a CID font (Identity-H, two-byte codes) with no ToUnicode map and no embedded cmap: the codes
    name glyphs, nothing says which characters they are (Chinese PDFs from old converters)."""
    codes = "".join(f"{0x0400 + i:04X}" for i in range(12)).encode()
    content = b"".join(b"BT /F1 24 Tf 72 %d Td <%s> Tj ET\n" % (760 - 40 * row, codes) for row in range(6))
    font = (b"<< /Type /Font /Subtype /Type0 /BaseFont /NoSuchCID /Encoding /Identity-H /DescendantFonts [6 0 R] >>")
    descendant = (b"<< /Type /Font /Subtype /CIDFontType2 /BaseFont /NoSuchCID "
                  b"/CIDSystemInfo << /Registry (Adobe) /Ordering (Identity) /Supplement 0 >> /DW 1000 >>")
    return _single_page(content, font, [descendant])


def off_page_text() -> bytes:
    """A page whose text is drawn outside its MediaBox: nothing of it shows."""
    content = b"".join(b"BT /F1 14 Tf 700 %d Td (%s) Tj ET\n" % (760 - 30 * i, line.encode())
                       for i, line in enumerate(ENGLISH))
    return _single_page(content, b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")


def text_beside_scan() -> bytes:
    """A real title line over a scanned body: the text layer holds a fraction of the page's text."""
    from PIL import Image, ImageDraw, ImageFont
    from reportlab.lib.utils import ImageReader

    image = Image.new("L", (1000, 1000), 255)
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(LATIN_FONT, 40)
    for i in range(12):
        draw.text((40, 30 + i * 80), (MORE_ENGLISH + ENGLISH)[i], fill=0, font=font)
    out, c = _canvas()
    c.setFont("Helvetica", 14)
    c.drawString(72, A4[1] - 60, "Annual report")
    c.drawImage(ImageReader(image), 40, 100, width=515, height=640)
    c.showPage()
    c.save()
    return out.getvalue()
