"""A source that loses everything, or most, of its records stops the mixture with its reasons, unless
the user allows it for that source; then it passes with a warning and the others share its place."""

from __future__ import annotations

import hashlib
import logging

import pytest

from pipelines.layout.task_table import ImageRef, Picture, TaskSample, human_turn, write_task_table
from pipelines.storage import Storage
from shards.mix import MixSettings
from shards.plan import plan_mixture
from shards.yields import LowYieldError


def _samples(name: str, task: str, count: int) -> list[TaskSample]:
    return [TaskSample(source=name, key=str(i), task=task, language="en",
                       images=[Picture(ImageRef(f"images/{name}/{i}.jpg", 0, 1), "jpg", hashlib.sha256(f"{name}{i}".encode()).hexdigest(), 8, 8)],
                       conversations=[human_turn("q"), {"from": "gpt", "value": "a"}]) for i in range(count)]


def _root(tmp_path, coco_kept: int) -> Storage:
    storage = Storage(str(tmp_path))
    write_task_table(storage, "laion", "00000", _samples("laion", "captioning", 20))
    write_task_table(storage, "objects365", "00000", _samples("objects365", "detection", 10))
    # A COCO-format source whose image paths were wrong: the builder read 30 records, kept coco_kept.
    write_task_table(storage, "coco", "00000", _samples("coco", "detection", coco_kept),
                     drops={"image_path_invalid": 30 - coco_kept - 1, "no_boxes": 1}, inputs=30)
    return storage


def _settings(**extra) -> MixSettings:
    return MixSettings(shares={"captioning": 0.5, "detection": 0.5}, total_samples=40, **extra)


@pytest.mark.parametrize("kept", [0, 9])
def test_a_source_below_its_floor_fails_naming_it_and_its_reasons(tmp_path, kept):
    with pytest.raises(LowYieldError) as raised:
        plan_mixture(_root(tmp_path, kept), _settings())
    message = str(raised.value)
    assert f"'coco' kept {kept} of its 30 input records" in message
    assert f"image_path_invalid: {29 - kept}" in message and "min_kept_share" in message
    assert "objects365" not in message and "laion" not in message


def test_an_empty_source_fails_even_under_a_low_floor(tmp_path):
    with pytest.raises(LowYieldError, match="'coco' kept 0"):
        plan_mixture(_root(tmp_path, 0), _settings(min_kept_share=0.01))


def test_allowed_for_that_source_it_passes_with_a_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="shards.yields"):
        plan = plan_mixture(_root(tmp_path, 0), _settings(min_kept_shares={"coco": 0}))
    assert "'coco' kept 0 of its 30" in caplog.text and "allowed" in caplog.text
    assert plan.tasks["detection"]["samples"] == 20 and "coco" not in plan.sources


@pytest.mark.parametrize("failed, fails", [(30, True), (10, False)])
def test_urls_that_failed_to_download_count_as_lost_inputs(tmp_path, failed, fails):
    """laion's tables kept all 20 records its builder read, but `failed` more of its URLs never downloaded."""
    settings = _settings(upstream_losses={"laion": {"download:http_404": failed}})
    if fails:
        with pytest.raises(LowYieldError) as raised:
            plan_mixture(_root(tmp_path, 29), settings)
        assert "'laion' kept 20 of its 50 input records" in str(raised.value)
        assert "download:http_404: 30" in str(raised.value)
    else:
        plan = plan_mixture(_root(tmp_path, 29), settings)
        assert plan.tasks["captioning"]["samples"] == 20
