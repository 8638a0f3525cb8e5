"""Export for the official InternVL trainer: a portable meta JSON + JSONL + images, lengths for group_by_length."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import shutil

import pytest
import yaml
from PIL import Image

from shards import ShardSettings, export_internvl, mix_and_write
from shards.cli import export_main
from shards.export import DatasetExport, InternVLExportSettings
from shards.lengths import LengthSettings
from shards.mix import MixSettings
from shards.reader import iter_samples
from tests.shards.shapes import COUNTS, build_shapes


def _read_like_internvl(meta_path):
    """What InternVL's build_datasets/LazySupervisedDataset open: the meta's paths from the working
    directory (the trainer is started in the export's folder), each image at os.path.join(root, image)."""
    with contextlib.chdir(os.path.dirname(os.path.abspath(meta_path))):
        return _read_meta(os.path.basename(meta_path))


def _read_meta(meta_path):
    meta = json.loads(open(meta_path, encoding="utf-8").read())
    out = {}
    for source, entry in meta.items():
        lines = [json.loads(line) for line in open(entry["annotation"], encoding="utf-8")]
        images = {}
        for line in lines:
            names = line.get("image", [])
            for name in [names] if isinstance(names, str) else names:
                images[name] = open(os.path.join(entry["root"], name), "rb").read()
        out[source] = (entry, lines, images)
    return out


def test_export_moves_to_another_folder_and_still_loads(task_root, tmp_path):
    shards = tmp_path / "shards"
    manifest = mix_and_write(str(task_root), shards, MixSettings(total_samples=300, seed=1),
                             ShardSettings(report=False))
    settings = InternVLExportSettings(max_dynamic_patch=8, datasets={
        "synthdog": DatasetExport(data_augment=True), "coyo-zh": DatasetExport(max_dynamic_patch=4)})
    export_internvl(shards, tmp_path / "made_here", settings)
    moved = tmp_path / "elsewhere" / "export"
    shutil.move(tmp_path / "made_here", moved)
    read = _read_like_internvl(moved / "meta.json")
    assert set(read) == set(manifest["sources"])
    shard_images = {}
    for entry in manifest["shards"]:
        for _, members in iter_samples(shards / entry["name"]):
            record = json.loads(members["json"])
            shard_images[record["id"]] = hashlib.sha256(members[record["meta"]["images"][0]["member"]]).hexdigest()
    for source, (entry, lines, images) in read.items():
        assert not os.path.isabs(entry["root"]) and not os.path.isabs(entry["annotation"])
        assert entry["data_augment"] is (source == "synthdog")
        assert entry["max_dynamic_patch"] == (4 if source == "coyo-zh" else 8)
        assert entry["mixture_repeat_time"] == manifest["sources"][source]["repeat_time"]
        expected = manifest["sources"][source]["samples"]
        assert entry["length"] == len(lines) * entry["repeat_time"] == expected
        assert len(images) == manifest["sources"][source]["unique_samples"]  # repeats share their image
        for line in lines:
            assert hashlib.sha256(images[line["image"]]).hexdigest() == shard_images[line["id"]]
            assert line["conversations"][0]["value"].startswith("<image>\n")


def test_root_prefix_names_where_the_export_will_be(task_root, tmp_path):
    shards = tmp_path / "shards"
    mix_and_write(str(task_root), shards, MixSettings(total_samples=50, seed=2), ShardSettings(report=False))
    settings = tmp_path / "export.yaml"
    settings.write_text(yaml.safe_dump({"datasets": {"laion_en": {"data_augment": True}}}))
    assert export_main([str(shards), str(tmp_path / "out"), "--root-prefix", "s3://bucket/run/export/",
                        "--settings", str(settings), "--max-dynamic-patch", "6"]) == 0
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    for source, entry in meta.items():
        assert entry["root"] == "s3://bucket/run/export/images"
        assert entry["annotation"] == f"s3://bucket/run/export/annotations/{source}.jsonl"
        assert entry["max_dynamic_patch"] == 6 and entry["data_augment"] is (source == "laion_en")
    with pytest.raises(SystemExit):
        export_main([str(shards), str(tmp_path / "bad"), "--max-dynamic-patch", "0"])
    with pytest.raises(ValueError, match="not_a_source"):
        export_internvl(shards, tmp_path / "bad", InternVLExportSettings(datasets={"not_a_source": DatasetExport()}))


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    return root / "shards", build_shapes(root, root / "shards")


def test_every_shape_exports_with_whole_repeats_left_to_the_loader(shapes, tmp_path):
    shards, manifest = shapes
    read = _read_like_internvl(export_internvl(shards, tmp_path / "out"))
    entry, lines, images = read["pairs"]  # repeat_time 2: each sample once, the loader repeats it
    assert entry["repeat_time"] == 2 and len(lines) == COUNTS["pairs"] and len(images) == 2 * COUNTS["pairs"]
    for line in lines:
        assert isinstance(line["image"], list) and len(line["image"]) == 2 and len(line["conversations"]) == 4
        assert Image.open(io.BytesIO(images[line["image"][1]])).size  # the second image is a real one
    entry, lines, _ = read["chat"]
    assert entry["repeat_time"] == 3 and len(lines) == COUNTS["chat"]
    assert all("image" not in line and len(line["conversations"]) == 4 for line in lines)
    entry, lines, _ = read["captions"]  # 1.5: the mixture's lines, repeats included
    assert entry["repeat_time"] == 1 and len(lines) == manifest["sources"]["captions"]["samples"]
    for line in read["chat"][1]:  # the documented estimate with no tokenizer: BOS + 1 per 4 characters
        text = "\n".join(turn["value"] for turn in line["conversations"])
        assert line["length"] == 1 + math.ceil(len(text) / 4)


def test_lengths_match_the_loader_with_a_tokenizer(shapes, tmp_path):
    transformers = pytest.importorskip("transformers")
    from trainer.tiling import tile_count
    from trainer.tokenization import train_tokenizer

    shards, _ = shapes
    texts = ["Describe the image. caption 1 哪张更亮 because What is And doubled"] * 20
    tokenizer_dir = train_tokenizer(texts, tmp_path / "tokenizer", vocab_size=300)
    settings = InternVLExportSettings(max_dynamic_patch=6, length=LengthSettings(tokenizer=str(tokenizer_dir)))
    read = _read_like_internvl(export_internvl(shards, tmp_path / "out", settings))
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(tokenizer_dir))
    checked = 0
    for entry, lines, images in read.values():
        for line in lines:
            # the loader's own text count: its tokenizer over the turns joined by newlines
            text = "\n".join(turn["value"] for turn in line["conversations"])
            tokens = len(tokenizer(text).input_ids)
            names = line.get("image", [])
            names = [names] if isinstance(names, str) else names
            budget = max(1, entry["max_dynamic_patch"] // max(1, len(names)))  # the loader shares it
            tiles = sum(tile_count(*Image.open(io.BytesIO(images[name])).size, 1, budget) for name in names)
            assert line["length"] == tokens + 256 * tiles
            checked += 1
    assert checked == sum(COUNTS.values()) + COUNTS["captions"] // 2


def test_export_writes_to_object_storage(shapes, monkeypatch):
    moto_server = pytest.importorskip("moto.server")
    s3fs = pytest.importorskip("s3fs")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        for name, value in {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "test",
                            "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}.items():
            monkeypatch.setenv(name, value)
        s3fs.S3FileSystem.clear_instance_cache()
        fs = s3fs.S3FileSystem()
        fs.mkdir("export-bucket")
        shards, _ = shapes
        # The export's units may run on Ray workers started before this server: its endpoint and keys go
        # with the work, as a user passes them to a cluster, not through the driver's environment.
        out_options = {"endpoint_url": f"http://{host}:{port}", "key": "test", "secret": "test",
                       "client_kwargs": {"region_name": "us-east-1"}}
        assert export_main([str(shards), "s3://export-bucket/run/export",
                            "--out-storage-options", json.dumps(out_options)]) == 0
        meta = json.loads(fs.cat("export-bucket/run/export/meta.json"))
        entry = meta["pairs"]
        lines = [json.loads(line) for line in fs.cat(f"export-bucket/run/export/{entry['annotation']}").splitlines()]
        assert len(lines) == COUNTS["pairs"]
        for line in lines:  # every image of every line is there, beside the meta file
            for name in line["image"]:
                assert Image.open(io.BytesIO(fs.cat(f"export-bucket/run/export/{entry['root']}/{name}"))).size
        assert not fs.exists("export-bucket/run/export/.vlmix-export")  # the work files are gone
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
        server.stop()


KILLED_EXPORT = """
import json, sys
from pathlib import Path
from shards import export_internvl
from shards.export import ExportShards, InternVLExportSettings
shards, out, last = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
run_unit = ExportShards.run_unit

def dies_on_the_last_shard(self, unit, ctx):
    if unit.name == last:
        raise KeyboardInterrupt  # as a kill would stop it, mid-export
    return run_unit(self, unit, ctx)

ExportShards.run_unit = dies_on_the_last_shard
died = []
for settings in (None, InternVLExportSettings(max_dynamic_patch=2)):  # other settings: no record reused
    try:
        export_internvl(shards, out, settings)
    except KeyboardInterrupt:
        died.append(True)
meta_after_kill = (out / "meta.json").exists()
calls = []
ExportShards.run_unit = lambda self, unit, ctx: calls.append(unit.name) or run_unit(self, unit, ctx)
export_internvl(shards, out)
print(json.dumps({"died": died, "meta_after_kill": meta_after_kill, "calls": calls}))
"""


def test_a_killed_export_resumes_to_the_same_files(shapes, tmp_path):
    """In a fresh interpreter without Ray, so that a unit can be made to die where it runs."""
    import subprocess
    import sys
    from pathlib import Path

    shards, manifest = shapes
    clean = tmp_path / "clean"
    export_internvl(shards, clean)
    last = manifest["shards"][-1]["name"]
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", KILLED_EXPORT, str(shards), str(tmp_path / "resumed"), last],
                          cwd=repo, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["died"] == [True, True] and not result["meta_after_kill"]
    assert result["calls"] == [last]  # only the unit that had not finished
    files = sorted(p.relative_to(clean) for p in clean.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "resumed") for p in (tmp_path / "resumed").rglob("*") if p.is_file())
    for name in files:
        assert (clean / name).read_bytes() == (tmp_path / "resumed" / name).read_bytes()
