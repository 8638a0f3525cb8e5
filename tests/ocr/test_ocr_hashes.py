"""A run that decontaminates: the OCR actor hashes each picture it decoded for OCR into the corpus
(``image_phash``, ``image_dhash``), and the OCR task tables take those hashes instead of decoding the
images again; a corpus of an older run, written without the columns, still gives hashed task tables."""

from __future__ import annotations

import io

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from ocr_synth import heldout_set, jpeg_bytes, write_raw_shard
from PIL import Image

from ocr import corpus
from ocr.entry import OcrInput, OcrRun, run
from ocr.settings import OcrSettings
from ocr.stage import OcrContext, OcrStage
from ocr.tasks import OcrTaskSettings, write_ocr_task_tables
from pipelines.phash import hashes, to_signed
from pipelines.stage import Unit
from pipelines.storage import Storage

pytest.importorskip("imagehash", reason="perceptual hashes need the 'decontam' extra")

SETTINGS = OcrSettings(model="PP-OCRv6_tiny", batch_size=2)
MASK = (1 << 64) - 1


def png_bytes(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def signs(tmp_path) -> list[bytes]:
    """One raw shard of ``signs``: two JPEG text pages (quality 92 and 60), a PNG one, and bytes that are
    no image; returns the images' bytes in key order."""
    pages = heldout_set("en", "clean", pages=3)
    images = [jpeg_bytes(pages[0].image), jpeg_bytes(pages[1].image, quality=60), png_bytes(pages[2].image),
              b"\xff\xd8\xff\xe0 not a jpeg"]
    write_raw_shard(tmp_path / "raw" / "signs", 0, images)
    return images


def ocr_unit(tmp_path, engine, perceptual_hash: bool):
    """The OCR stage's unit ``00000`` of ``signs`` as its actor runs it (the session's engine); its corpus table."""
    ctx = OcrContext(str(tmp_path), perceptual_hash=perceptual_hash)
    OcrStage("signs", "en", SETTINGS).run_unit(Unit("00000", group="signs"), ctx, engine)
    return pq.read_table(tmp_path / "ocr" / "signs" / "00000.parquet").sort_by("key")


def bits(a: int, b: int) -> int:
    return bin(a ^ b).count("1")


def task_hashes(tmp_path, dataset: str = "signs_ocr") -> dict[str, tuple[list[int] | None, list[int] | None]]:
    table = pq.read_table(tmp_path / "tasks" / dataset / "00000.parquet")
    return {key: (phash, dhash) for key, phash, dhash in zip(
        table["key"].to_pylist(), table["image_phash"].to_pylist(), table["image_dhash"].to_pylist(), strict=True)}


def test_the_actor_hashes_the_picture_it_decoded_as_its_bytes_hash(tiny_engine, tmp_path):
    images = signs(tmp_path)
    table = ocr_unit(tmp_path, tiny_engine, perceptual_hash=True)
    assert table.schema.field("image_phash").type == "int64" == table.schema.field("image_dhash").type
    rows = table.to_pylist()
    assert [r["drop_reason"] for r in rows][-1] == "undecodable_image"
    assert (rows[-1]["image_phash"], rows[-1]["image_dhash"]) == (None, None)
    for row, data in zip(rows[:-1], images[:-1], strict=True):
        expected = hashes(data)
        got = (row["image_phash"] & MASK, row["image_dhash"] & MASK)
        if data.startswith(b"\xff\xd8"):
            # A JPEG's bytes hash from a draft decode at reduced scale, the actor's picture from its full
            # decode reduced by the same factor: within 2 bits of each (measured: 0-2 here).
            assert bits(got[0], expected[0]) <= 2 and bits(got[1], expected[1]) <= 2, (got, expected)
        else:  # a PNG decodes in full both ways: the same hashes
            assert got == expected
    # Not asked to hash: the columns are there, null.
    table = ocr_unit(tmp_path, tiny_engine, perceptual_hash=False)
    assert table["image_phash"].null_count == table["image_dhash"].null_count == table.num_rows == 4


def test_the_task_tables_take_the_corpus_hashes_without_decoding_again(tiny_engine, tmp_path):
    signs(tmp_path)
    table = ocr_unit(tmp_path, tiny_engine, perceptual_hash=True)
    kept = [k for k, reason in zip(table["key"].to_pylist(), table["drop_reason"].to_pylist(), strict=True)
            if reason is None]
    assert len(kept) == 3
    # Hashes no decode of these pictures gives: the task table can only have them from the corpus.
    marked = {key: (0x0123456789ABCDEF + n, 0xFEDCBA9876543210 - n) for n, key in enumerate(table["key"].to_pylist())}
    keys = table["key"].to_pylist()
    table = table.set_column(table.schema.get_field_index("image_phash"), "image_phash",
                             [[to_signed(marked[k][0]) for k in keys]])
    table = table.set_column(table.schema.get_field_index("image_dhash"), "image_dhash",
                             [[to_signed(marked[k][1]) for k in keys]])
    corpus.write_shard(Storage(str(tmp_path)), "signs", "00000", table)
    write_ocr_task_tables(str(tmp_path), "signs", "signs_ocr", OcrTaskSettings(seed=1), perceptual_hash=True)
    assert task_hashes(tmp_path) == {k: ([to_signed(marked[k][0])], [to_signed(marked[k][1])]) for k in kept}
    # A run that does not decontaminate stores none, whatever the corpus holds.
    write_ocr_task_tables(str(tmp_path), "signs", "signs_ocr", OcrTaskSettings(seed=1), perceptual_hash=False)
    assert set(task_hashes(tmp_path).values()) == {(None, None)}


def test_a_corpus_without_the_columns_still_gives_hashed_task_tables(tiny_engine, tmp_path):
    images = signs(tmp_path)
    table = ocr_unit(tmp_path, tiny_engine, perceptual_hash=True)
    old = table.drop_columns(["image_phash", "image_dhash"])  # as an older run wrote it
    corpus.write_shard(Storage(str(tmp_path)), "signs", "00000", old)
    assert "image_phash" not in pq.read_schema(tmp_path / "ocr" / "signs" / "00000.parquet").names
    write_ocr_task_tables(str(tmp_path), "signs", "signs_ocr", OcrTaskSettings(seed=1), perceptual_hash=True)
    by_key = dict(zip(table["key"].to_pylist(), images, strict=True))
    found = task_hashes(tmp_path)
    assert len(found) == 3
    assert found == {key: ([to_signed(hashes(by_key[key])[0])], [to_signed(hashes(by_key[key])[1])])
                     for key in found}  # hashed from the bytes, as before the corpus had them


def test_a_decontaminating_run_hashes_in_the_actor_and_keeps_corpus_shards_done_before(tmp_path):
    """The OCR stage's entry, as the flow runs it: a shard OCRed by a run that did not decontaminate is not
    redone (its rows have null hashes, and the task table hashes their bytes); a new shard is hashed by the
    actor and its task table carries the corpus's hashes."""
    images = signs(tmp_path)
    ocr_input = OcrInput("signs_ocr", "signs", "ocr_large", "en", "en")
    run(OcrRun(str(tmp_path), engine=SETTINGS, seed=1, sources=(ocr_input,)))
    first = tmp_path / "ocr" / "signs" / "00000.parquet"
    written = first.stat().st_mtime_ns
    pages = heldout_set("en", "clean", pages=5)[3:]
    write_raw_shard(tmp_path / "raw" / "signs", 1, [jpeg_bytes(p.image) for p in pages])

    run(OcrRun(str(tmp_path), engine=SETTINGS, seed=1, sources=(ocr_input,), perceptual_hash=True))
    assert first.stat().st_mtime_ns == written
    assert pq.read_table(first)["image_phash"].null_count == 4
    by_key = dict(zip(pq.read_table(first).sort_by("key")["key"].to_pylist(), images, strict=True))
    found = task_hashes(tmp_path)
    assert found and found == {k: ([to_signed(hashes(by_key[k])[0])], [to_signed(hashes(by_key[k])[1])])
                               for k in found}
    new = pq.read_table(tmp_path / "ocr" / "signs" / "00001.parquet")
    assert pc.sum(pc.is_null(new["image_phash"])).as_py() == 0
    table = pq.read_table(tmp_path / "tasks" / "signs_ocr" / "00001.parquet")
    corpus_hashes = {k: ([p], [d]) for k, p, d in zip(new["key"].to_pylist(), new["image_phash"].to_pylist(),
                                                       new["image_dhash"].to_pylist(), strict=True)}
    assert table.num_rows and {k: (p, d) for k, p, d in zip(
        table["key"].to_pylist(), table["image_phash"].to_pylist(), table["image_dhash"].to_pylist(), strict=True)
    } == {k: corpus_hashes[k] for k in table["key"].to_pylist()}
