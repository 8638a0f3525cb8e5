"""Demo sources: deterministic by seed, realistic, and served with the broken URLs they promise."""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from flows.demo import BAD_KINDS, DemoServer, generate, write_url_lists


def digest(directory: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(directory.rglob("*")):
        if path.is_file() and path.suffix in (".jpg", ".parquet", ".png"):
            h.update(path.relative_to(directory).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a = generate(tmp_path / "a", seed=3, scale=0.03)
    b = generate(tmp_path / "b", seed=3, scale=0.03)
    c = generate(tmp_path / "c", seed=4, scale=0.03)
    assert digest(a) == digest(b)
    assert digest(a) != digest(c)


def test_collections_look_like_their_datasets(demo_directory):
    scenes = pq.read_table(demo_directory / "items" / "scenes.parquet").to_pylist()
    assert all(row["caption"] and row["language"] == "en" for row in scenes)
    objects = pq.read_table(demo_directory / "items" / "objects.parquet").to_pylist()
    import json

    for row in objects:
        image = Image.open(demo_directory / row["path"])
        for box in json.loads(row["objects"]):
            x, y, w, h = box["bbox"]
            assert 0 <= x and 0 <= y and x + w <= image.width and y + h <= image.height
    text_zh = pq.read_table(demo_directory / "items" / "text_zh.parquet").to_pylist()
    assert all(any("\u4e00" <= ch <= "\u9fff" for ch in row["caption"]) for row in text_zh)
    synth = pq.read_table(demo_directory / "items" / "synth_text.parquet").to_pylist()
    assert {row["language"] for row in synth} == {"en", "zh"}
    bad = [row["bad"] for name in ("scenes", "objects", "text_zh", "text_en", "synth_text")
           for row in pq.read_table(demo_directory / "items" / f"{name}.parquet").to_pylist() if row["bad"]]
    assert set(bad) == set(BAD_KINDS)  # every failure kind is exercised


def fetch(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read(2**20)
    except urllib.error.HTTPError as err:
        return err.code, b""


def test_server_serves_images_and_each_kind_of_broken_url(demo_directory):
    with DemoServer(demo_directory, hang_s=5, oversized_mib=2) as server:
        lists = write_url_lists(demo_directory, server.base_url)
        rows = pq.read_table(lists["scenes"]).to_pylist()
        assert all(row["url"].startswith("http://127.0.0.1:") for row in rows)
        good = next(row for row in rows if row["expect"] == "ok" and "/bad/" not in row["url"])
        status, body = fetch(good["url"])
        assert status == 200 and body[:2] == b"\xff\xd8"
        base = server.base_url + "/bad/{}/" + good["url"].split("/", 3)[3]
        assert fetch(base.format("missing"))[0] == 404
        assert fetch(base.format("html"))[1].startswith(b"<html>")
        truncated = fetch(base.format("truncated"))[1]
        assert 0 < len(truncated) < len(body)
        assert fetch(base.format("flaky"))[0] == 503 and fetch(base.format("flaky"))[0] == 200
        with pytest.raises(TimeoutError):
            fetch(base.format("hang"), timeout=0.5)


def test_the_demo_serves_on_its_fixed_port_and_falls_back_when_taken(tmp_path, caplog):
    """The URLs repeat from run to run (fixed port), and a taken port does not stop the demo."""
    import logging
    import socket

    from flows.config import DemoConfig

    with socket.socket() as probe:  # a port free right now stands in for the configured one
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with DemoServer(tmp_path, port=port) as first:
        assert first.base_url == f"http://127.0.0.1:{port}"
        with caplog.at_level(logging.WARNING, logger="flows.demo.server"), DemoServer(tmp_path, port=port) as second:
            assert second.base_url != first.base_url and f"demo port {port} is in use" in caplog.text
    assert DemoConfig(directory=str(tmp_path)).port > 0
