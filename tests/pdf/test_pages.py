"""Pages of generated PDFs with known text through the sandboxed renderer, the line builder and the
text-layer checks: the transcription is the known text in reading order, boxes sit on the ink, a
lying text layer is caught, a hanging or memory-hungry render is cut off and the worker goes on."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("pypdfium2")
pytest.importorskip("reportlab")

from pdf import generate  # noqa: E402
from pdf.decide import decide  # noqa: E402
from pdf.samples import conversation  # noqa: E402
from pdf.sandbox import Renderer  # noqa: E402
from pdf.settings import PdfSettings  # noqa: E402

SETTINGS = PdfSettings(scripts={"en": ["Latin"], "zh": ["Han"]}, page_timeout_s=10)


@pytest.fixture(scope="module")
def renderer():
    with Renderer(SETTINGS) as r:
        yield r


def first_page(renderer, data: bytes):
    count, reason = renderer.open(data, max_pages=1)
    assert reason is None, renderer.last_error
    page, reason = renderer.next_page()
    assert reason is None, renderer.last_error
    return page


def test_transcription_is_the_known_text_in_reading_order(renderer):
    english, _ = generate.text_pages([generate.ENGLISH])
    chinese, _ = generate.text_pages([generate.CHINESE], font="cjk")
    columns, drawn = generate.two_columns()
    rotated, turned = generate.rotated()
    cases = [(english, generate.ENGLISH, "en"), (chinese, generate.CHINESE, "zh"),
             (columns, [line.text for line in drawn], "en"), (rotated, [line.text for line in turned], "en")]
    for data, expected, language in cases:
        decision = decide(first_page(renderer, data), "auto", SETTINGS)
        assert decision.use == "text", decision.reason
        assert decision.language == language
        assert [line.text for line in decision.lines] == expected
    # The columns were drawn row by row across the page: the order comes from the layout, not the file.
    assert [line.text for line in drawn][1:5] == generate.LEFT


@pytest.mark.parametrize("make", [generate.two_columns, generate.rotated])
def test_boxes_land_on_the_words(renderer, make):
    data, drawn = make()
    page = first_page(renderer, data)
    decision = decide(page, "auto", SETTINGS)
    scale = page.width / (842 if page.width > page.height else 595)  # pixels per point
    dark = np.asarray(Image.open(io.BytesIO(page.image)).convert("L")) < 128
    inside = np.zeros_like(dark)
    for line, known in zip(decision.lines, drawn, strict=True):
        x0, y0, x1, y1 = line.box
        assert abs(x0 - known.x * scale) <= 3  # starts where the text was drawn
        assert y0 < known.y * scale < y1  # the baseline runs through the box
        assert 0.8 * known.size * scale <= y1 - y0 <= 1.6 * known.size * scale
        box = dark[int(y0) - 2: int(y1) + 3, int(x0) - 2: int(x1) + 3]
        assert box.mean() > 0.05  # there is ink in it
        inside[int(y0) - 2: int(y1) + 3, int(x0) - 2: int(x1) + 3] = True
    assert (dark & inside).sum() / dark.sum() > 0.99  # and next to none outside the boxes

    turns, variant = conversation(decision.lines, page.width, page.height, "en", "s", "k",
                                  SETTINGS.model_copy(update={"grounded_fraction": 1.0,
                                                              "prompts": {"grounded": {"en": ["Where?"]}}}))
    first = decision.lines[0]
    expected = [round(first.box[0] / page.width * 1000), round(first.box[1] / page.height * 1000),
                round(first.box[2] / page.width * 1000), round(first.box[3] / page.height * 1000)]
    assert variant == "grounded"
    assert turns[1]["value"].split("\n")[0] == f"<ref>{first.text}</ref><box>[{expected}]</box>"


def test_wrong_text_layers_go_to_ocr_with_their_reason(renderer):
    lying, _ = generate.lying_text_layer()
    assert decide(first_page(renderer, lying), "auto", SETTINGS).reason == "latin_decoded_as_cjk"
    square, _ = generate.lying_text_layer("abcdefghij", full_width=True)  # em-square glyphs said to be Latin
    assert decide(first_page(renderer, square), "auto", SETTINGS).reason == "cjk_decoded_as_latin"
    private, _ = generate.lying_text_layer("".join(chr(0xE000 + i) for i in range(10)))
    assert decide(first_page(renderer, private), "auto", SETTINGS).reason == "private_use"
    assert decide(first_page(renderer, generate.scanned()), "auto", SETTINGS).reason == "no_text_layer"
    assert decide(first_page(renderer, generate.unmapped_cid_font()), "auto", SETTINGS).reason == "unmapped_font"
    assert decide(first_page(renderer, generate.off_page_text()), "auto", SETTINGS).reason == "off_page_text"
    assert decide(first_page(renderer, generate.text_beside_scan()), "auto", SETTINGS).reason == "text_missing_for_ink"
    assert decide(first_page(renderer, generate.invisible_layer()), "auto", SETTINGS).reason == "invisible_text"
    blank = decide(first_page(renderer, generate.blank()), "auto", SETTINGS)
    assert (blank.use, blank.reason) == ("drop", "blank_page")
    russian, _ = generate.text_pages([["Привет мир, это проверка страницы", "Вторая строка"]], font="latin")
    other = decide(first_page(renderer, russian), "auto", SETTINGS)
    assert (other.use, other.reason) == ("drop", "no_language")


def test_a_pdf_streams_its_first_pages_in_order_and_one_left_unread_does_not_leak_into_the_next(renderer):
    three, _ = generate.text_pages([generate.ENGLISH, generate.ENGLISH[:2], generate.ENGLISH[2:]])
    assert renderer.open(three, max_pages=2) == (3, None)
    pages = [renderer.next_page() for _ in range(2)]
    assert [(page.index, reason) for page, reason in pages] == [(0, None), (1, None)]
    assert [decide(page, "auto", SETTINGS).lines[-1].text for page, _ in pages] == [generate.ENGLISH[-1], generate.ENGLISH[1]]
    with pytest.raises(RuntimeError, match="no page left"):
        renderer.next_page()  # max_pages: the third page was never rendered
    assert renderer.open(three) == (3, None)
    renderer.next_page()  # the other two pages are not taken
    chinese, _ = generate.text_pages([generate.CHINESE], font="cjk")
    assert decide(first_page(renderer, chinese), "auto", SETTINGS).lines[0].text == generate.CHINESE[0]


def test_unreadable_files_are_named():
    with Renderer(SETTINGS) as renderer:
        assert renderer.open(generate.encrypted()) == (0, "encrypted")
        assert renderer.open(generate.corrupt()) == (0, "corrupt")


def test_a_hanging_render_is_cut_off_and_the_next_pdf_renders():
    with Renderer(SETTINGS.model_copy(update={"page_timeout_s": 1.0})) as renderer:
        assert renderer.open(generate.render_bomb()) == (1, None)
        started = time.monotonic()
        assert renderer.next_page() == (None, "render_timeout")
        assert time.monotonic() - started < 3
        english, _ = generate.text_pages([generate.ENGLISH])
        assert decide(first_page(renderer, english), "auto", SETTINGS).lines[0].text == generate.ENGLISH[0]


def test_a_render_over_its_memory_limit_is_counted_and_the_next_pdf_renders():
    huge = SETTINGS.model_copy(update={"memory_mb": 256, "dpi": 600, "max_side": 8000})
    with Renderer(huge) as renderer:
        english, _ = generate.text_pages([generate.ENGLISH])
        assert renderer.open(english) == (1, None)
        assert renderer.next_page() == (None, "render_memory")
        renderer.settings = SETTINGS.model_copy(update={"memory_mb": 256})
        assert decide(first_page(renderer, english), "auto", SETTINGS).lines[0].text == generate.ENGLISH[0]
