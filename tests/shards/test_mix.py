"""The mixer: shares, weights, repeats, exact-duplicate removal, determinism, clear errors."""

from __future__ import annotations

import math
from collections import Counter

import pytest
from pydantic import ValidationError

from pipelines.layout.task_table import ImageRef, Picture, TaskSample, human_turn, write_task_table
from pipelines.storage import Storage
from shards.mix import REPORT_TASK_SHARES, MixError, MixSettings, largest_remainder
from shards.plan import plan_mixture


def _tables(
    root, datasets: dict[str, tuple[str, str, int]], shared_images: dict[str, str] | None = None
) -> Storage:
    """Task tables of ``{dataset: (task, language, rows)}``; the plan reads no image, so refs are nominal."""
    storage = Storage(str(root))
    for name, (task, language, count) in datasets.items():
        samples = []
        for i in range(count):
            sha = (shared_images or {}).get(f"{name}/{i}") or f"{hash((name, i)) & (2**256 - 1):064x}"
            samples.append(
                TaskSample(
                    source=name,
                    key=str(i),
                    task=task,
                    language=language,
                    images=[Picture(ImageRef(f"images/{name}/{i}.jpg", 0, 1), "jpg", sha, 8, 8)],
                    conversations=[human_turn("q"), {"from": "gpt", "value": "a"}],
                )
            )
        half = count // 2
        write_task_table(storage, name, "00000", samples[:half])
        write_task_table(storage, name, "00001", samples[half:])
    return storage


# Sizes chosen so some datasets are far too small (repeats) and some far larger than needed.
REPORT_LIKE = {
    "laion_en": ("captioning", "en", 4000),
    "laion_zh": ("captioning", "zh", 300),
    "coyo-zh": ("captioning", "zh", 2500),
    "objects365": ("detection", "en", 150),
    "grit-zh": ("detection", "zh", 90),
    "wukong_ocr": ("ocr_large", "zh", 3000),
    "laioncoco_ocr": ("ocr_large", "en", 1200),
    "synthdog": ("ocr_small", "en", 500),
    "lsvt": ("ocr_small", "zh", 120),
}


@pytest.fixture(scope="module")
def report_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("mix")
    _tables(root, REPORT_LIKE)
    return root


def test_report_shares_within_half_a_point_on_12000_samples(report_root):
    weights = {"laion_en": 2.0, "laion_zh": 1.0, "coyo-zh": 1.0, "synthdog": 3.0}
    plan = plan_mixture(str(report_root), MixSettings(total_samples=12_000, seed=7, weights=weights))
    assert len(plan) == 12_000
    for task, share in REPORT_TASK_SHARES.items():
        assert abs(plan.tasks[task]["achieved_share"] - share) <= 0.005
        assert plan.tasks[task]["target_share"] == pytest.approx(share)
    # Within a task the weights split the samples: 2:1:1 for captioning, 3:1 for OCR-small.
    captioning = plan.tasks["captioning"]["samples"]
    assert plan.sources["laion_en"]["samples"] == pytest.approx(captioning / 2, abs=1)
    assert plan.sources["laion_zh"]["samples"] == pytest.approx(captioning / 4, abs=1)
    assert plan.sources["synthdog"]["samples"] == pytest.approx(
        plan.tasks["ocr_small"]["samples"] * 3 / 4, abs=1
    )
    # The languages' expected and achieved shares agree (every dataset here has one language).
    for stats in plan.languages.values():
        assert stats["achieved_share"] == pytest.approx(stats["target_share"], abs=1e-9)


def test_selection_is_without_replacement_until_a_source_runs_out(report_root):
    plan = plan_mixture(str(report_root), MixSettings(total_samples=12_000, seed=1))
    ids = plan.ids()
    assert len(ids) == 12_000 and len(set(ids)) == len(ids), "output keys must be unique, repeats included"
    per_source = Counter()
    for sample_id in ids:
        source, key = sample_id.split("-r")[0].rsplit("-", 1)
        per_source[(source, key)] += 1
    for name, stats in plan.sources.items():
        counts = [n for (source, _), n in per_source.items() if source == name]
        if stats["samples"] <= stats["available"]:
            assert max(counts) == 1 and stats["repeat_time"] <= 1
        else:  # every row floor(k) or ceil(k) times
            k = stats["samples"] / stats["available"]
            assert stats["repeat_time"] == pytest.approx(k)
            assert set(counts) <= {math.floor(k), math.ceil(k)} and len(counts) == stats["available"]
            assert stats["unique_samples"] == stats["available"]
    assert plan.sources["lsvt"]["repeat_time"] > 1 and plan.sources["laion_en"]["repeat_time"] < 1


def test_same_seed_same_plan_other_seed_other_selection(report_root):
    a = plan_mixture(str(report_root), MixSettings(total_samples=3000, seed=11))
    b = plan_mixture(str(report_root), MixSettings(total_samples=3000, seed=11))
    c = plan_mixture(str(report_root), MixSettings(total_samples=3000, seed=12))
    assert a.ids() == b.ids()
    assert set(a.ids()) != set(c.ids())


def test_exact_duplicates_are_removed_and_counted_by_source(tmp_path):
    same = "ab" * 32
    shared = {"laion_en/0": same, "coco/5": same, "coco/6": same, "coco_zh/0": same}
    datasets = {
        "laion_en": ("captioning", "en", 10),
        "coco": ("captioning", "en", 10),
        "coco_zh": ("captioning", "zh", 10),
    }
    _tables(tmp_path, datasets, shared)
    plan = plan_mixture(str(tmp_path), MixSettings(total_samples=20, shares={"captioning": 1.0}))
    # coco sorts first, so its first copy stays; its second copy and laion_en's go. The Chinese
    # sample of the same image is another sample (a translation), so it stays.
    assert plan.drops["dedup"] == {"coco": 1, "laion_en": 1}
    assert plan.sources["coco"]["available"] == 9 and plan.sources["coco_zh"]["available"] == 10
    # The removed rows are never picked, not even as repeats; every other row is (all six tables
    # share one route unit, so each table's removals must come back to it and no other).
    repeated = plan_mixture(str(tmp_path), MixSettings(total_samples=300, shares={"captioning": 1.0}))
    picked = {key.split("-r")[0] for key in repeated.ids()}
    assert picked == {f"{d}-{i}" for d in datasets for i in range(10)} - {"coco-6", "laion_en-0"}
    image_only = plan_mixture(
        str(tmp_path), MixSettings(total_samples=20, shares={"captioning": 1.0}, dedup="image")
    )
    assert image_only.drops["dedup"] == {"coco": 1, "coco_zh": 1, "laion_en": 1}
    kept = plan_mixture(str(tmp_path), MixSettings(total_samples=20, shares={"captioning": 1.0}, dedup="off"))
    assert kept.drops["dedup"] == {} and kept.sources["coco"]["available"] == 10


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"weights": {"laion_en": float("nan")}}, "finite number above 0"),
        ({"weights": {"laion_en": 0}}, "finite number above 0"),
        ({"weights": {"laion_en": -1}}, "finite number above 0"),
        ({"weights": {"laion_en": float("inf")}}, "finite number above 0"),
        ({"shares": {"captioning": 0.5, "detection": 0.3}}, "add up to 1"),
        ({"shares": {"captioning": 1.0, "detection": 0.0}}, "finite number above 0"),
        ({"total_samples": 0}, "greater than or equal to 1"),
    ],
)
def test_bad_settings_fail_where_they_are_built(bad, message):
    with pytest.raises(ValidationError, match=message):
        MixSettings(**{"total_samples": 10, **bad})


def test_a_task_without_data_is_an_error_not_a_shifted_mixture(tmp_path):
    _tables(tmp_path, {"laion_en": ("captioning", "en", 10), "ocr": ("ocr_large", "en", 10)})
    with pytest.raises(MixError, match="task 'detection' has a target share of 0.052 but no samples"):
        plan_mixture(str(tmp_path), MixSettings(total_samples=100))
    with pytest.raises(MixError, match=r"weights name datasets with no samples.*laoin_en"):
        plan_mixture(
            str(tmp_path),
            MixSettings(
                total_samples=10, shares={"captioning": 0.5, "ocr_large": 0.5}, weights={"laoin_en": 1}
            ),
        )
    with pytest.raises(FileNotFoundError, match="no task tables for datasets"):
        plan_mixture(str(tmp_path), MixSettings(total_samples=10, datasets=["missing"]))


def test_largest_remainder_adds_up_exactly():
    counts = largest_remainder(1001, REPORT_TASK_SHARES)
    assert sum(counts.values()) == 1001
    assert all(abs(counts[t] - 1001 * s) < 1 for t, s in REPORT_TASK_SHARES.items())
