"""Every stage that reads an image hashes it as it reads it (a run that decontaminates): the task stage, the
OCR stage's tables, the PDF stage's pages; the decontamination stage uses those hashes instead of reading
the images again."""

from __future__ import annotations

import shutil

import pyarrow.parquet as pq

from decontam import DecontamSettings, run_decontam
from ocr.captions import CaptionTranscriptions, TranscriptionContext
from pdf import generate
from pdf.settings import PdfSettings
from pdf.stage import PdfContext, PdfStage
from pipelines.layout.conversations import ConversationRecord, write_conversation_table
from pipelines.layout.raw import resolve_uri
from pipelines.phash import phash
from pipelines.source import Source
from pipelines.stage import execute
from pipelines.storage import Storage
from tasks import TaskSettings, build_task_samples
from tests.decontam.images import encode, picture
from tests.tasks.test_tasks_build import config_source, write_raw_shard


def _records(pictures: list[int], quality: int) -> list[dict]:
    out = []
    for number, seed in enumerate(pictures):
        image = picture(seed)
        out.append({"key": f"{number:09d}", "image": encode(image, quality=quality), "caption": f"a picture {number}",
                    "width": image.width, "height": image.height, "original_width": image.width,
                    "original_height": image.height})
    return out


def test_the_task_stage_hashes_as_it_reads_and_decontam_reads_no_image_again(tmp_path):
    web, coco = _records([1, 2, 3], 90), _records([3, 4], 60)  # picture 3 in both, re-encoded
    expected = [phash(record["image"]) for record in web]
    write_raw_shard(tmp_path, "web", "00000", web)
    write_raw_shard(tmp_path, "coco", "00000", coco)
    for name in ("web", "coco"):
        source = config_source(name=name, kind="url_list", task="captioning", language="en")
        build_task_samples(source, str(tmp_path), TaskSettings(seed=1, perceptual_hash=True))
    table = pq.read_table(tmp_path / "tasks" / "web" / "00000.parquet").sort_by("key")
    assert [[h & (2**64 - 1) for h in hashes] for hashes in table["image_phash"].to_pylist()] == [[h] for h in expected]
    # Without the raw shards the images cannot be read again: the stage works from the hashes alone.
    shutil.rmtree(tmp_path / "raw")
    summary = run_decontam(tmp_path, DecontamSettings(near_duplicates={"scope": "image"}), order=["web", "coco"])
    assert summary["removed"] == {"coco": {"near_duplicate": 1}, "web": {}}
    assert summary["unreadable"]["training"] == {}
    removed = pq.read_table(Storage(str(tmp_path)).path("decontam", "coco")).to_pylist()
    assert [(row["id"], row["kept"]) for row in removed] == [("coco-000000000", "web-000000002")]


def test_a_run_that_does_not_decontaminate_leaves_the_column_empty(tmp_path):
    write_raw_shard(tmp_path, "web", "00000", _records([1], 90))
    build_task_samples(config_source(name="web", kind="url_list", task="captioning", language="en"), str(tmp_path),
                       TaskSettings(seed=1))
    assert pq.read_table(tmp_path / "tasks" / "web" / "00000.parquet")["image_phash"].to_pylist() == [None]


def _phashes(path) -> list[list[int] | None]:
    table = pq.read_table(path).sort_by("key")
    return [None if hashes is None else [h & (2**64 - 1) for h in hashes] for hashes in table["image_phash"].to_pylist()]


def _image_bytes(storage: Storage, path) -> list[bytes]:
    """The bytes of each row's image, where the table says they are (read before the raw inputs go)."""
    out = []
    for refs in pq.read_table(path).sort_by("key")["images"].to_pylist():
        with storage.fs.open(resolve_uri(storage, refs[0]["uri"]), "rb") as f:
            f.seek(refs[0]["offset"])
            out.append(f.read(refs[0]["size"]))
    return out


def test_ocr_pdf_and_conversation_tables_are_hashed_where_read_and_decontam_reads_no_image_again(tmp_path):
    """The OCR stage's transcriptions from captions, a conversation table attached to a raw shard (the OCR
    corpus's hook) and the PDF stage's text-layer pages carry each image's hash, computed from the bytes
    each stage holds; with the raw inputs gone, the decontamination stage still finds the duplicates."""
    storage = Storage(str(tmp_path))
    synth, scans = _records([5, 6], 90), _records([5, 7], 60)  # picture 5 in both, re-encoded
    expected = {"synthdog": [[phash(r["image"])] for r in synth], "scans_ocr": [[phash(r["image"])] for r in scans]}
    write_raw_shard(tmp_path, "synthdog", "00000", synth)
    write_raw_shard(tmp_path, "scans", "00000", scans)
    ctx = TranscriptionContext(str(tmp_path), seed=1, prompts={"en": ["Read the text."]}, scripts={"en": ["Latin"]},
                               perceptual_hash=True)
    execute(CaptionTranscriptions("synthdog", "synthdog", "ocr_small", "en"), ctx)
    turns = [{"from": "human", "value": "<image>\nRead the text."}, {"from": "gpt", "value": "x"}]
    records = {r["key"]: ConversationRecord(r["key"], "en", turns) for r in scans}
    write_conversation_table(storage, "scans_ocr", "ocr_small", "scans", "00000", records, hash_images=True)
    # One PDF page in two PDF sources: the same rendered image in both.
    page, _ = generate.text_pages([generate.ENGLISH])
    settings = PdfSettings(scripts={"en": ["Latin"]}, grounded_fraction=0.0, perceptual_hash=True,
                           prompts={"transcribe": {"en": ["Read the page."]}, "grounded": {"en": ["Where?"]}})
    for name in ("pdf_a", "pdf_b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "page.pdf").write_bytes(page)
        source = Source(name=name, kind="pdf", task="ocr_large", language="en",
                        locations=[str(tmp_path / name / "*.pdf")])
        execute(PdfStage(source), PdfContext(str(tmp_path), {}, settings))

    tables = {name: sorted((tmp_path / "tasks" / name).glob("*.parquet")) for name in ("synthdog", "scans_ocr",
                                                                                     "pdf_a", "pdf_b")}
    assert _phashes(tables["synthdog"][0]) == expected["synthdog"]
    assert _phashes(tables["scans_ocr"][0]) == expected["scans_ocr"]
    for name in ("pdf_a", "pdf_b"):
        (path,) = tables[name]
        assert _phashes(path) == [[phash(data)] for data in _image_bytes(storage, path)] and len(_phashes(path)) == 1
    # Neither the raw shards, the rendered pages nor the PDFs are there to read again.
    for folder in ("raw", "pdf_a", "pdf_b"):
        shutil.rmtree(tmp_path / folder)
    summary = run_decontam(tmp_path, DecontamSettings(near_duplicates={"scope": "image"}),
                           order=["synthdog", "scans_ocr", "pdf_a", "pdf_b"])
    assert summary["removed"] == {"synthdog": {}, "scans_ocr": {"near_duplicate": 1}, "pdf_a": {},
                                  "pdf_b": {"near_duplicate": 1}}
    assert summary["unreadable"]["training"] == {}
    removed = {row["id"]: row["kept"] for dataset in ("scans_ocr", "pdf_b")
               for row in pq.read_table(storage.path("decontam", dataset)).to_pylist()}
    assert removed == {"scans_ocr-000000000": "synthdog-000000000",
                       "pdf_b-" + pq.read_table(tables["pdf_b"][0])["key"][0].as_py():
                       "pdf_a-" + pq.read_table(tables["pdf_a"][0])["key"][0].as_py()}


def test_without_decontamination_the_ocr_and_pdf_tables_carry_no_hash(tmp_path):
    write_raw_shard(tmp_path, "synthdog", "00000", _records([1], 90))
    ctx = TranscriptionContext(str(tmp_path), seed=1, prompts={"en": ["Read the text."]}, scripts={"en": ["Latin"]})
    execute(CaptionTranscriptions("synthdog", "synthdog", "ocr_small", "en"), ctx)
    assert _phashes(tmp_path / "tasks" / "synthdog" / "00000.parquet") == [None]
    assert PdfSettings().perceptual_hash is False


def test_a_table_from_before_the_dhash_is_hashed_again_by_the_stage(tmp_path):
    """A task table written by the version that stored the pHash alone: the stage cannot confirm a match
    without the dHash, so it reads and hashes that table's images, and still finds the copy."""
    web, coco = _records([1, 2], 90), _records([2], 60)
    write_raw_shard(tmp_path, "web", "00000", web)
    write_raw_shard(tmp_path, "coco", "00000", coco)
    for name in ("web", "coco"):
        build_task_samples(config_source(name=name, kind="url_list", task="captioning", language="en"), str(tmp_path),
                           TaskSettings(seed=1, perceptual_hash=True))
    old = tmp_path / "tasks" / "coco" / "00000.parquet"
    table = pq.read_table(old)
    pq.write_table(table.drop_columns(["image_dhash"]).replace_schema_metadata(table.schema.metadata), old)
    summary = run_decontam(tmp_path, DecontamSettings(near_duplicates={"scope": "image"}), order=["web", "coco"])
    assert summary["removed"] == {"coco": {"near_duplicate": 1}, "web": {}}
