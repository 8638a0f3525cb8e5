"""The mixer leaves out what the decontamination stage removed and counts it per source."""

from __future__ import annotations

import tarfile

import pytest

from decontam import DecontamSettings, run_decontam
from shards.mix import MixSettings
from shards.write import ShardSettings, mix_and_write
from tests.decontam.images import encode, picture
from tests.decontam.tables import sample, write


def test_removed_samples_are_left_out_of_the_shards_and_counted_in_the_manifest(tmp_path):
    root = tmp_path / "root"
    web = [sample(root, "web", f"w{i}", encode(picture(i)), "Describe.", f"Picture {i}.") for i in range(6)]
    # coco holds pictures 0 and 1 again, re-encoded, with shorter captions: they go, web's stay.
    coco = [sample(root, "coco", f"c{i}", encode(picture(i), quality=60), "Describe.", "Pic.") for i in range(2)]
    coco += [sample(root, "coco", f"c{i}", encode(picture(i)), "Describe.", f"Another {i}.") for i in range(10, 14)]
    write(root, "web", web)
    write(root, "coco", coco)
    mix = MixSettings(shares={"captioning": 1.0}, repeat_time={}, total_samples=None)
    settings = ShardSettings(max_samples=100, report=True)
    before = mix_and_write(str(root), tmp_path / "before", mix, settings.model_copy(update={"report": False}))
    assert before["total_samples"] == 12 and "decontam" not in before["drops"]

    run_decontam(root, DecontamSettings(), order=["web", "coco"])
    after = mix_and_write(str(root), tmp_path / "after", mix, settings)
    assert after["total_samples"] == 10
    assert after["drops"]["decontam"] == {"coco": {"near_duplicate": 2}}
    assert after["sources"]["coco"]["near_duplicates_removed"] == 2
    assert after["sources"]["web"]["near_duplicates_removed"] == 0
    assert after["sources"]["coco"]["available"] == 4
    assert after["inputs_fingerprint"] != before["inputs_fingerprint"]
    keys = set()
    for shard in after["shards"]:
        with tarfile.open(tmp_path / "after" / shard["name"]) as tar:
            keys |= {member.name.split(".")[0] for member in tar.getmembers()}
    assert keys == {f"web-w{i}" for i in range(6)} | {f"coco-c{i}" for i in range(10, 14)}
    report = (tmp_path / "after" / "report.md").read_text()
    assert "near_duplicates_removed" in report and "decontam" in report
    # A config without the stage (the flow passes decontaminated=False) ignores its lists.
    ignored = mix_and_write(str(root), tmp_path / "ignored", mix.model_copy(update={"decontaminated": False}),
                            settings.model_copy(update={"report": False}))
    assert ignored["total_samples"] == 12 and "decontam" not in ignored["drops"]


def test_removals_of_a_rewritten_table_are_refused(tmp_path):
    root = tmp_path / "root"
    write(root, "web", [sample(root, "web", "a", encode(picture(1)), "Describe.", "One.")])
    write(root, "coco", [sample(root, "coco", "a", encode(picture(1)), "Describe.", "Two.")])
    run_decontam(root, DecontamSettings(), order=["web", "coco"])
    write(root, "coco", [sample(root, "coco", "b", encode(picture(2)), "Describe.", "Three.")])
    mix = MixSettings(shares={"captioning": 1.0}, repeat_time={}, total_samples=None)
    with pytest.raises(ValueError, match="rerun the decontamination stage"):
        mix_and_write(str(root), tmp_path / "out", mix, ShardSettings(report=False))
