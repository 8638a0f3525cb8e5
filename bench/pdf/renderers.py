"""The renderer choice, measured: pypdfium2 (pdfium) against PyMuPDF (MuPDF) and pdfminer.six on the same PDFs.

Per library, in one process, one page at a time: pages/s to render at 144 dpi, encode a JPEG and
read every character with its box (pdfminer has no renderer: text only), and text-position
fidelity: for every known line of the generated PDFs (``pdf.generate``: English, Chinese, two
columns), the distance of its first character's left edge from where it was drawn and whether the
drawn baseline runs through that character's box. PyMuPDF and pdfminer.six are not vlmix
dependencies (PyMuPDF is AGPL); install them elsewhere to run this:

    .venv/bin/python -m pip install --target /tmp/alt pymupdf pdfminer.six==20260107
    PYTHONPATH=/tmp/alt .venv/bin/python bench/pdf/renderers.py        # one JSON line per library
"""

from __future__ import annotations

import io
import json
import statistics
import time

from pdf import generate

DPI = 144
SCALE = DPI / 72


def documents():
    """(bytes, [[Line]] per page, page height in points): the known-text PDFs."""
    english, english_lines = generate.text_pages([generate.ENGLISH * 6] * 4)
    chinese, chinese_lines = generate.text_pages([generate.CHINESE * 6] * 4, font="cjk")
    columns, column_lines = generate.two_columns()
    return [(english, english_lines), (chinese, chinese_lines), (columns, [column_lines])]


def pdfium(data: bytes):
    """As the PDF stage reads a page (``pdf.page.read_page``: raw pdfium calls, ink measure included)."""
    import pypdfium2

    from pdf.page import read_page

    document = pypdfium2.PdfDocument(data)
    for index in range(len(document)):
        page = read_page(document, index, DPI, 4096, "jpg", 90)
        yield [(chr(code), x0 / SCALE, y0 / SCALE, x1 / SCALE, y1 / SCALE)
               for code, (x0, y0, x1, y1) in zip(page.codes, page.boxes, strict=True)]


def pdfium_helpers(data: bytes):
    """Through pypdfium2's helper classes, one character at a time."""
    import pypdfium2

    document = pypdfium2.PdfDocument(data)
    for page in document:
        page.render(scale=SCALE).to_pil().convert("RGB").save(io.BytesIO(), format="JPEG", quality=90)
        text = page.get_textpage()
        height = page.get_height()
        chars = []
        for i in range(text.count_chars()):
            left, bottom, right, top = text.get_charbox(i, loose=True)
            chars.append((text.get_text_range(i, 1), left, height - top, right, height - bottom))
        yield chars


def mupdf(data: bytes):
    import pymupdf

    document = pymupdf.open(stream=data, filetype="pdf")
    for page in document:
        page.get_pixmap(dpi=DPI).pil_save(io.BytesIO(), format="JPEG", quality=90)
        chars = []
        for block in page.get_text("rawdict")["blocks"]:
            for line in block.get("lines", []):
                for span in line["spans"]:
                    chars += [(c["c"], *c["bbox"]) for c in span["chars"]]
        yield chars


def pdfminer(data: bytes):
    from pdfminer.high_level import extract_pages
    from pdfminer.layout import LTChar, LTTextBox, LTTextLine

    for layout in extract_pages(io.BytesIO(data)):
        chars = []
        for box in layout:
            if isinstance(box, LTTextBox):
                for line in box:
                    if isinstance(line, LTTextLine):
                        chars += [(c.get_text(), c.x0, layout.height - c.y1, c.x1, layout.height - c.y0)
                                  for c in line if isinstance(c, LTChar)]
        yield chars


def fidelity(chars, lines) -> tuple[list[float], list[bool]]:
    """Per known line: |first character's left - drawn x| (points), and baseline inside its box."""
    errors, inside = [], []
    for line in lines:
        first = [c for c in chars if c[0] == line.text[0] and abs((c[2] + c[4]) / 2 - (line.y - line.size / 3)) < line.size]
        if not first:
            errors.append(float("inf"))
            inside.append(False)
            continue
        best = min(first, key=lambda c: abs(c[1] - line.x))
        errors.append(abs(best[1] - line.x))
        inside.append(best[2] < line.y < best[4])
    return errors, inside


def main() -> None:
    docs = documents()
    for name, read in (("pypdfium2 (as vlmix reads a page)", pdfium), ("pypdfium2 (helper classes)", pdfium_helpers),
                       ("pymupdf", mupdf), ("pdfminer.six", pdfminer)):
        try:
            list(read(docs[2][0]))  # import and warm up
        except ImportError as err:
            print(json.dumps({"library": name, "skipped": str(err)}))
            continue
        pages, errors, inside, started = 0, [], [], time.perf_counter()
        for data, page_lines in docs:
            for chars, lines in zip(read(data), page_lines, strict=True):
                pages += 1
                e, i = fidelity(chars, lines)
                errors += e
                inside += i
        seconds = time.perf_counter() - started
        lying = "".join(c[0] for c in next(read(generate.lying_text_layer()[0])))[:10]
        print(json.dumps({"library": name, "pages": pages, "pages_per_s": round(pages / seconds, 2),
                          "renders": read is not pdfminer, "median_left_error_pt": round(statistics.median(errors), 2),
                          "max_left_error_pt": round(max(errors), 2), "baseline_in_box": f"{sum(inside)}/{len(inside)}",
                          "lying_layer_reads_as": lying}, ensure_ascii=False))


if __name__ == "__main__":
    main()
