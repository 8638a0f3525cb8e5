"""The PDF stage over a folder of generated PDFs (in this process, as without Ray): text-layer samples
with the known text, OCR pages handed on in the raw-shard layout, every filter reason counted."""

from __future__ import annotations

import io
import json
import tarfile

import pytest
from PIL import Image

pytest.importorskip("pypdfium2")
pytest.importorskip("reportlab")

from flows.cli import main  # noqa: E402
from flows.registry import REGISTRY  # noqa: E402
from pdf import generate  # noqa: E402
from pdf.settings import PdfSettings  # noqa: E402
from pdf.stage import PdfContext, PdfStage  # noqa: E402
from pipelines.layout.raw import complete_shards, iter_raw_shard, read_image  # noqa: E402
from pipelines.layout.task_table import read_counters  # noqa: E402
from pipelines.source import Source  # noqa: E402
from pipelines.stage import execute  # noqa: E402
from pipelines.storage import Storage  # noqa: E402

PROMPTS = {"transcribe": {"en": ["Read the page."], "zh": ["读出页面文字。"]},
           "grounded": {"en": ["Where is the text?"], "zh": ["文字在哪里？"]}}


def test_a_folder_of_pdfs_becomes_samples_and_ocr_pages_with_every_reason_counted(tmp_path, capsys):
    folder = tmp_path / "pdfs"
    folder.mkdir()
    english, _ = generate.text_pages([generate.ENGLISH, generate.ENGLISH[:2], generate.ENGLISH[2:]])  # 3 pages
    files = {
        "a_english.pdf": english,
        "b_chinese.pdf": generate.text_pages([generate.CHINESE], font="cjk")[0],
        "c_scan.pdf": generate.scanned(),
        "d_lying.pdf": generate.lying_text_layer()[0],
        "e_blank.pdf": generate.blank(),
        "f_locked.pdf": generate.encrypted(),
        "g_cut.pdf": generate.corrupt(),
        "h_russian.pdf": generate.text_pages([["Привет мир, это проверка", "Вторая строка"]], font="latin")[0],
        "i_bomb.pdf": generate.render_bomb(),  # hangs the renderer: cut off, and the unit goes on
        "j_after.pdf": generate.text_pages([generate.CHINESE[:1]], font="cjk")[0],
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    source = Source(name="cc_pdf", kind="pdf", task="ocr_large", language="auto",
                    locations=[str(folder / "*.pdf")], ocr={"language": "en"})
    settings = PdfSettings(scripts={"en": ["Latin"], "zh": ["Han"]}, prompts=PROMPTS, grounded_fraction=0.0,
                           max_pages=2, files_per_unit=5, page_timeout_s=3)
    root = tmp_path / "mix"
    report = execute(PdfStage(source), PdfContext(str(root), {}, settings))

    assert report.units == 2
    counters = report.counters
    assert dict(counters.drops) == {"too_many_pages": 1, "blank_page": 1, "encrypted": 1, "corrupt": 1,
                                    "no_language": 1, "render_timeout": 1}
    assert dict(counters.tallies["ocr_reasons"]) == {"no_text_layer": 1, "latin_decoded_as_cjk": 1}
    assert counters.tallies["pdf_pages"]["text_layer"] == counters.samples == 4
    assert counters.tallies["pdf_pages"]["files"] == 10

    storage = Storage(str(root))
    table = storage.read_parquet(str(root / "tasks" / "cc_pdf" / "00000-text.parquet")).to_pylist()
    answers = {row["key"]: (row["language"], row["conversations"][1]["value"]) for row in table}
    assert answers == {"00000_0000_00000": ("en", "\n".join(generate.ENGLISH)),
                       "00000_0000_00001": ("en", "\n".join(generate.ENGLISH[:2])),
                       "00000_0001_00000": ("zh", "\n".join(generate.CHINESE))}
    assert all(row["conversations"][0]["value"].startswith("<image>\n") for row in table)
    image = table[0]["images"][0]  # the sample points at the page's bytes in the raw shard
    with Image.open(io.BytesIO(storage.fs.cat_file(str(root / image["uri"]), image["offset"],
                                                   image["offset"] + image["size"]))) as page:
        assert page.size == (image["width"], image["height"]) == (1190, 1684)

    # The pages that need OCR, where the OCR stage reads images: a complete raw shard per unit.
    assert complete_shards(storage, "cc_pdf-ocr") == ["00000"]
    handed = list(iter_raw_shard(storage, "cc_pdf-ocr", "00000"))
    assert sorted((s.meta["pdf"].rsplit("/", 1)[1], s.meta["reason"]) for s in handed) == [
        ("c_scan.pdf", "no_text_layer"), ("d_lying.pdf", "latin_decoded_as_cjk")]
    assert all(read_image(storage, s.image)[:2] == b"\xff\xd8" for s in handed)  # JPEG pages
    drops, inputs = read_counters(storage.read_parquet(str(root / "tasks/cc_pdf/00001-text.parquet")).schema)
    assert drops == {"encrypted": 1, "corrupt": 1, "no_language": 1, "render_timeout": 1} and inputs == 5
    after = storage.read_parquet(str(root / "tasks/cc_pdf/00001-text.parquet")).to_pylist()
    assert [row["conversations"][1]["value"] for row in after] == generate.CHINESE[:1]  # rendered after the bomb

    again = execute(PdfStage(source), PdfContext(str(root), {}, settings))  # a rerun redoes nothing
    assert again.skipped == 2 and again.counters.samples == 0

    # `vlmix pdf` adds up the units' counters from the root, the rerun's empty report notwithstanding.
    assert main(["pdf", "--root", str(root), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)["cc_pdf"]
    assert stats["units"] == 2 and stats["samples"] == 4
    assert stats["pages"] == {"files": 10, "ocr": 2, "text_layer": 4}
    assert stats["ocr_reasons"] == {"latin_decoded_as_cjk": 1, "no_text_layer": 1}
    assert stats["drops"] == dict(counters.drops)
    assert stats["languages"] == {"en": 2, "zh": 2}  # the English PDF's two pages kept, two Chinese ones
    assert 0 < stats["render_ms_per_page"] < 1000 * settings.page_timeout_s  # the bomb, cut off, is not among them
    assert main(["pdf", "--root", str(root)]) == 0
    said = capsys.readouterr().out
    assert "cc_pdf: 10 PDF files; 4 pages from their text layer, 2 to OCR" in said
    assert "dropped: blank_page 1, corrupt 1, encrypted 1, no_language 1, render_timeout 1, too_many_pages 1" in said
    (row,) = next(stage for stage in REGISTRY if stage.name == "pdf").artifact({"cc_pdf": stats})[1]
    assert (row["text_layer"], row["ocr"], row["dropped"]) == (4, 2, 6)
    assert row["ocr_reasons"] == "latin_decoded_as_cjk 1, no_text_layer 1" and row["languages"] == "en 2, zh 2"
    assert main(["pdf", "--root", str(tmp_path / "elsewhere")]) == 1  # nothing there: said, not an empty table
    with tarfile.open(root / "raw" / "cc_pdf" / "00000.tar") as tar:
        meta = json.load(tar.extractfile("00000_0000_00000.json"))
    assert meta["page"] == 1 and meta["url"].endswith("a_english.pdf#page=1")


def test_missing_locations_name_the_source(tmp_path):
    source = Source(name="cc_pdf", kind="pdf", task="ocr_large", language="auto",
                    locations=[str(tmp_path / "nothing" / "*.pdf")], obtain="see commoncrawl.org")
    with pytest.raises(FileNotFoundError, match="cc_pdf.*see commoncrawl.org"):
        list(PdfStage(source).units(PdfContext(str(tmp_path), {}, PdfSettings())))
