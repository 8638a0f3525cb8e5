"""``vlmix verify``: a sound directory passes; truncation and tampering are caught and listed."""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile

import pytest

from shards import ShardSettings, mix_and_write, verify
from shards.cli import verify_main
from shards.mix import MixSettings


@pytest.fixture(scope="module")
def good_dir(task_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("verify") / "good"
    mix_and_write(str(task_root), out, MixSettings(total_samples=400, seed=8), ShardSettings(max_samples=100))
    return out


@pytest.fixture
def copy(good_dir, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(good_dir, target)
    return target


def _member(shard, extension):
    """(offset, size) of the data of the first member with ``extension`` in ``shard``."""
    with tarfile.open(shard) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("." + extension))
        return member.offset_data, member.size


def _patch(path, offset, old: bytes, new: bytes):
    data = bytearray(path.read_bytes())
    at = data.index(old, offset)
    data[at : at + len(old)] = new
    path.write_bytes(bytes(data))


def _reseal(directory, shard):
    """Update the manifest's size and checksum of ``shard``, as a careless hand edit would."""
    manifest = json.loads((directory / "manifest.json").read_text())
    for entry in manifest["shards"]:
        if entry["name"] == shard.name:
            entry["bytes"] = shard.stat().st_size
            entry["sha256"] = hashlib.sha256(shard.read_bytes()).hexdigest()
    (directory / "manifest.json").write_text(json.dumps(manifest))


def test_a_sound_directory_passes(good_dir, capsys):
    result = verify(good_dir)
    assert result.ok and result.shards == 4 and result.samples == 400
    assert verify_main([str(good_dir)]) == 0
    assert "OK: 4 shards, 400 samples" in capsys.readouterr().out


def test_a_truncated_shard_is_caught(copy, capsys):
    shard = copy / "mix-000001.tar"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2 + 100])
    problems = verify(copy).problems
    assert any("mix-000001.tar" in p and "bytes, manifest says" in p for p in problems)
    assert any("mix-000001.tar: unreadable after" in p for p in problems)
    assert any("manifest says 400 samples in all" in p for p in problems)
    assert verify_main([str(copy)]) == 1
    assert "mix-000001.tar" in capsys.readouterr().err


def test_a_tampered_caption_is_caught(copy):
    shard = copy / "mix-000002.tar"
    offset, _ = _member(shard, "json")
    _patch(shard, offset, b"answer", b"ANSWER")
    assert verify(copy).problems == [
        "mix-000002.tar: sha256 differs from the manifest's (the file was changed)"
    ]


def test_a_tampered_image_is_caught_even_with_the_manifest_resealed(copy):
    shard = copy / "mix-000000.tar"
    offset, size = _member(shard, "jpg")
    data = bytearray(shard.read_bytes())
    data[offset + size // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    _reseal(copy, shard)
    problems = verify(copy).problems
    assert len(problems) == 1 and "bytes differ from its sha256" in problems[0]


def test_a_schema_violation_is_caught(copy):
    shard = copy / "mix-000003.tar"
    offset, _ = _member(shard, "json")
    _patch(shard, offset, b'"from":"gpt"', b'"from":"bot"')
    _reseal(copy, shard)
    problems = verify(copy).problems
    assert len(problems) >= 1 and "JSON fails the schema at conversations.1.from" in problems[0]


def test_missing_manifest_and_stray_shards(copy):
    shutil.copy(copy / "mix-000000.tar", copy / "mix-000009.tar")
    assert verify(copy).problems == ["mix-000009.tar: a shard not listed in the manifest"]
    (copy / "manifest.json").unlink()
    assert "not a finished vlmix shard directory" in verify(copy).problems[0]
