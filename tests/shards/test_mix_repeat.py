"""Mixing by InternVL's repeat_time: a fraction down-samples, above 1 repeats, whole multiples repeat every sample."""

from __future__ import annotations

from collections import Counter

import pytest
from pydantic import ValidationError

from pipelines.layout.task_table import ImageRef, Picture, TaskSample, human_turn, write_task_table
from pipelines.storage import Storage
from shards.mix import MixSettings
from shards.plan import plan_mixture

DATASETS = {"vqav2": ("general_qa", 40), "gqa": ("general_qa", 30), "sharegpt": ("text_only", 12),
            "docvqa": ("document", 25)}


def _tables(root) -> Storage:
    storage = Storage(str(root))
    for name, (task, count) in DATASETS.items():
        samples = [
            TaskSample(source=name, key=str(i), task=task, language="en",
                       images=[Picture(ImageRef(f"images/{name}/{i}.jpg", 0, 1), "jpg", f"{hash((name, i)) & (2**256 - 1):064x}", 8, 8)],
                       conversations=[human_turn("q"), {"from": "gpt", "value": "a"}])
            for i in range(count)
        ]
        write_task_table(storage, name, "00000", samples[: count // 2])
        write_task_table(storage, name, "00001", samples[count // 2:])
    return storage


def test_repeat_time_below_and_above_one_gives_the_counts_it_says(tmp_path):
    _tables(tmp_path)
    settings = MixSettings(shares={"general_qa": 1, "text_only": 1, "document": 1}, seed=3,
                           repeat_time={"vqav2": 0.25, "gqa": 2.5, "sharegpt": 3})  # docvqa: 1 (unlisted)
    plan = plan_mixture(str(tmp_path), settings)
    expected = {"vqav2": 10, "gqa": 75, "sharegpt": 36, "docvqa": 25}
    assert {name: plan.sources[name]["samples"] for name in expected} == expected
    assert len(plan) == sum(expected.values()) == 146
    assert plan.sources["vqav2"]["repeat_time"] == 0.25 and plan.sources["gqa"]["repeat_time"] == 2.5
    assert plan.sources["gqa"]["target_repeat_time"] == 2.5 and plan.sources["docvqa"]["target_repeat_time"] == 1
    assert plan.tasks["general_qa"]["samples"] == 85
    assert plan.tasks["text_only"]["achieved_share"] == pytest.approx(36 / 146)

    ids = plan.ids()
    assert len(set(ids)) == len(ids) == 146  # repeats get keys of their own
    repeat_of = Counter(int(key.rsplit("-r", 1)[1]) if "-r" in key else 0 for key in ids)
    # First uses: every unique pick (10 + 30 + 12 + 25); 1st repeats: gqa's 30 and sharegpt's 12;
    # 2nd repeats: sharegpt's 12 and gqa's remainder of 15 (2.5 x 30 = 2 x 30 + 15).
    assert repeat_of == {0: 77, 1: 42, 2: 27}
    assert plan.sources["vqav2"]["unique_samples"] == 10 and plan.sources["gqa"]["unique_samples"] == 30


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"repeat_time": {"vqav2": -1}}, "finite number >= 0"),
        ({"repeat_time": {"vqav2": 0.5}, "weights": {"gqa": 2}}, "do not apply with repeat_time"),
        ({"repeat_time": {"vqav2": 0.5}, "total_samples": 10}, "follows from repeat_time"),
        ({}, "total_samples is required"),
    ],
)
def test_bad_repeat_settings_fail_where_they_are_built(bad, message):
    with pytest.raises(ValidationError, match=message):
        MixSettings(shares={"general_qa": 1.0}, **bad)


def test_a_repeat_time_for_a_dataset_without_samples_weighs_nothing(tmp_path):
    """A translated variant whose every sample was flagged has no table: its repeat time changes nothing."""
    _tables(tmp_path)
    shares = {"general_qa": 1, "text_only": 1, "document": 1}
    plan = plan_mixture(str(tmp_path), MixSettings(shares=shares, repeat_time={"gqa": 2, "gqa-zh": 2}))
    assert "gqa-zh" not in plan.sources and plan.sources["gqa"]["samples"] == 60 and len(plan) == 40 + 60 + 12 + 25
