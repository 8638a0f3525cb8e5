"""Configuration: the shipped configs load; broken files fail at load, naming field and value."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from flows.config import REPORT_TASK_SHARES, ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]

MINIMAL = """
storage: {root: out}
languages:
  zh: {name: Chinese, scripts: [Han]}
sources:
  - name: captions
    kind: url_list
    task: captioning
    language: en
    locations: [urls.parquet]
  - {name: boxes, kind: coco, task: detection, language: en, locations: [a.json], image_root: img}
  - {name: ocr_big, kind: url_list, task: ocr_large, language: zh, locations: [z.parquet], ocr: {language: zh}}
  - {name: ocr_few, kind: internvl_jsonl, task: ocr_small, language: en, locations: [s.jsonl], image_root: img}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def problems(tmp_path: Path, text: str, overrides=()) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), overrides=overrides)
    return caught.value.problems


def test_shipped_configs_load_with_the_reports_shares():
    for name in ("pretrain.yaml", "demo.yaml"):
        config = load_config(REPO / "configs" / name)
        assert config.task_shares() == REPORT_TASK_SHARES


def test_pretrain_config_names_every_dataset_of_table_1a():
    config = load_config(REPO / "configs" / "pretrain.yaml")
    by_task: dict[str, set[str]] = {}
    for source in config.sources:
        by_task.setdefault(source.task, set()).add(source.name)
    assert {"laion_en", "laion_zh", "coyo", "grit_caption", "coco_caption", "textcaps"} <= by_task["captioning"]
    assert {"objects365", "grit_detection", "all_seeing"} <= by_task["detection"]
    assert {"wukong_ocr", "laioncoco_ocr", "common_crawl_pdf"} <= by_task["ocr_large"]
    assert len(by_task["ocr_small"]) == 14
    assert config.source("coyo").translate_to == ["zh"] and not config.source("coyo").keep_original
    assert config.source("wukong_ocr").ocr.language == "zh"
    assert config.source("laioncoco_ocr").ocr.language == "en"
    # A user-supplied source says where its files come from.
    assert all(s.obtain for s in config.sources if s.images_from is None)


def test_minimal_config_gets_defaults_and_relative_paths(tmp_path):
    config = load_config(write(tmp_path, MINIMAL))
    assert config.storage.root == str(tmp_path / "out")
    assert config.source("captions").locations == [str(tmp_path / "urls.parquet")]
    assert config.task_shares() == REPORT_TASK_SHARES
    assert config.download.max_image_side == 4096


def test_overrides_reach_nested_fields_and_list_items(tmp_path):
    config = load_config(
        write(tmp_path, MINIMAL),
        overrides=["download.timeout_s=3", "sources.0.weight=2.5", "translation.targets=[zh]"],
    )
    assert config.download.timeout_s == 3
    assert config.source("captions").weight == 2.5
    assert config.translation.targets == ["zh"]


def test_fingerprint_changes_with_content(tmp_path):
    a = load_config(write(tmp_path, MINIMAL))
    b = load_config(write(tmp_path, MINIMAL), overrides=["seed=1"])
    assert a.fingerprint() != b.fingerprint()
    assert a.fingerprint() == load_config(write(tmp_path, MINIMAL)).fingerprint()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("sources.0.filters.max_punsafe=abc", "sources[0] (captions).filters.max_punsafe: got 'abc'"),
        ("sources.0.filters.max_punsafe=1.5", "less than or equal to 1"),
        ("sources.0.kind=ftp_list", "sources[0] (captions).kind: got 'ftp_list'"),
        ("sources.0.weight=-1", "sources[0] (captions).weight: got -1"),
        ("sources.0.weight=.nan", "finite"),
        ("sources.0.punsfe=0.5", "sources[0] (captions).punsfe: got 0.5, expected: Extra inputs are not permitted"),
        ("sources.0.name=Bad Name", "sources[0] (Bad Name).name: got 'Bad Name'"),
        ("download.timeout_s=0", "download.timeout_s: got 0"),
        ("tasks.captioning.share=0.6", "task shares must add up to 1, they add up to 0.6000"),
        ("sources.0.task=vqa", "task 'vqa' is not one of"),
        ("sources.0.translate_to=[fr]", "translate_to 'fr' is not in `languages`"),
        ("translation.targets=[de]", "translation.targets: 'de' is not in `languages`"),
        ("sources.1.name=captions", "source names must be unique; repeated: ['captions']"),
        ("sources.0.filters.max_punsafe=0.5", "filter `max_punsafe` needs `columns.punsafe`"),
        ("sources.1.image_root=null", "sources[1] (boxes).image_root: a coco source needs `image_root`"),
        ("sources.0.locations=[]", "sources[0] (captions).locations: a url_list source needs `locations`"),
        ("sources.3.locations=[]", "sources[3] (ocr_few).locations: needs `locations`"),
        # What a kind cannot do fails at validate, naming the source, the field and what would work.
        ("sources.1.task=captioning", "sources[1] (boxes).task: a coco source feeds detection, not 'captioning'"),
        ("sources.2.translate_to=[zh]", "sources[2] (ocr_big).translate_to: OCR samples answer with the text"),
        ("sources.2.task=captioning", "sources[2] (ocr_big).ocr: OCR builds OCR corpora: set task to one of"),
        ("sources.3.ocr={language: en}", "sources[3] (ocr_few).ocr: OCR runs on downloaded images"),
        ("sources.3.kind=webdataset", "sources[3] (ocr_few).image_root: a webdataset source carries its images"),
        ("sources.1.images_from=captions", "sources[1] (boxes).images_from: only url_list sources reuse"),
        ("sources.1.language=zh & sources.1.translate_to=[zh]", "sources[1] (boxes).translate_to: translation is from English; this source's language is 'zh'"),
    ],
)
def test_each_broken_field_is_named(tmp_path, change, expected):
    found = problems(tmp_path, MINIMAL, overrides=change.split(" & "))
    assert any(expected in problem for problem in found), found


def test_a_task_without_sources_is_an_error(tmp_path):
    text = MINIMAL.replace("task: ocr_small", "task: ocr_large")
    assert any("tasks ['ocr_small'] have a share but no source" in p for p in problems(tmp_path, text))


def test_missing_storage_is_reported(tmp_path):
    found = problems(tmp_path, MINIMAL.replace("storage: {root: out}", ""))
    assert found == ["storage: missing, field required"]


def test_yaml_syntax_error_names_the_line(tmp_path):
    found = problems(tmp_path, "seed: 1\nstorage: {root: out\nsources: []\n")
    assert len(found) == 1 and found[0].startswith("line ")


def test_bad_override_syntax(tmp_path):
    assert "expected dotted.path=value" in problems(tmp_path, MINIMAL, overrides=["seed"])[0]
    assert "is not an index" in problems(tmp_path, MINIMAL, overrides=["sources.9.weight=1"])[0]


def test_all_problems_are_listed_at_once(tmp_path):
    found = problems(tmp_path, MINIMAL, overrides=["download.timeout_s=-1", "sources.0.weight=0"])
    assert len(found) == 2


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml")


def test_interpolation_of_paths(tmp_path):
    text = MINIMAL.replace("locations: [urls.parquet]", 'locations: ["${paths.data}/urls.parquet"]')
    config = load_config(write(tmp_path, text + "paths: {data: s3://bucket/in}\n"))
    assert config.source("captions").locations == ["s3://bucket/in/urls.parquet"]
    assert "no such setting" in problems(tmp_path, text)[0]


def test_fingerprint_leaves_out_where_the_run_is_stored(tmp_path):
    """The manifest's config hash is the same for a run moved to another storage root."""
    a = load_config(write(tmp_path, MINIMAL))
    b = load_config(write(tmp_path, MINIMAL), overrides=["storage.root=s3://bucket/run"])
    assert a.fingerprint() == b.fingerprint()



def test_fingerprint_leaves_out_how_many_workers_run_it(tmp_path):
    """More OCR actors, download threads or requests in flight make the same mixture: the same hash;
    a setting that changes what is made (images per OCR call) does not."""
    a = load_config(write(tmp_path, MINIMAL))
    spread = load_config(write(tmp_path, MINIMAL), overrides=[
        "ocr.concurrency=8", "ocr.cpus_per_actor=2", "download.threads_per_worker=4", "download.max_workers=32",
        "translation.concurrency=64", "ray.num_cpus=1"])
    assert a.fingerprint() == spread.fingerprint()
    assert a.fingerprint() != load_config(write(tmp_path, MINIMAL), overrides=["ocr.batch_size=3"]).fingerprint()


def test_ocr_tasks_in_a_config_set_the_style_only_and_the_run_takes_task_seed_and_prompts_from_the_mixture(tmp_path):
    """What the YAML says is what runs: ``ocr_tasks`` cannot set what the flow derives (no silent override)."""
    base = {"storage": {"root": str(tmp_path)}, "tasks": {"captioning": {"share": 1.0}},
            "sources": [{"name": "a", "kind": "url_list", "task": "captioning", "language": "en",
                         "locations": ["urls.parquet"]}]}
    config = _validate({**base, "ocr_tasks": {"grounded_fraction": 0.25, "box_format": "quad"}})
    assert (config.ocr_tasks.grounded_fraction, config.ocr_tasks.box_format) == (0.25, "quad")
    with pytest.raises(ConfigError, match=r"ocr_tasks\.seed"):
        _validate({**base, "ocr_tasks": {"seed": 3}})


def _validate(raw: dict):
    from flows.config import validate_config

    return validate_config(raw)


def test_task_sample_options_in_a_config_reach_the_task_stage(tmp_path):
    from flows.assemble import task_settings

    config = _validate({"storage": {"root": str(tmp_path)}, "tasks": {"captioning": {"share": 1.0}}, "seed": 9,
                        "task_samples": {"max_objects": 5, "images_per_unit": 200},
                        "sources": [{"name": "a", "kind": "url_list", "task": "captioning", "language": "en",
                                     "locations": ["urls.parquet"]}]})
    settings = task_settings(config)
    assert (settings.max_objects, settings.images_per_unit, settings.seed) == (5, 200, 9)
