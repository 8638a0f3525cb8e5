"""The cache and the input tables, on local disk and on S3 (moto's server on loopback)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from flows.translate_cli import build_parser
from pipelines.storage import Storage
from translate.cache import CachedAnswer, TranslationCache, text_hash
from translate.table import InputError, read_input


@pytest.fixture(scope="module")
def s3_root():
    moto_server = pytest.importorskip("moto.server")
    import boto3

    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    options = {
        "endpoint_url": f"http://{host}:{port}",
        "key": "test",
        "secret": "test",
        "client_kwargs": {"region_name": "us-east-1"},
    }
    boto3.client(
        "s3",
        endpoint_url=options["endpoint_url"],
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
    ).create_bucket(Bucket="mix")
    yield "s3://mix/root", options
    server.stop()


@pytest.mark.parametrize("where", ["local", "s3"])
def test_cache_round_trip_keyed_by_text_target_model_and_prompt(where, tmp_path, request):
    if where == "s3":
        root, options = request.getfixturevalue("s3_root")
        storage = Storage(root, options)
    else:
        storage = Storage(str(tmp_path))
    cache = TranslationCache(storage, storage.path("translate", "_cache"), "/models/qwen", "fig5-aaaa")
    cache.add("zh", [(text_hash("A dog."), "A dog.", CachedAnswer("一只狗。", "stop"))])
    cache.add("zh", [(text_hash("A cat."), "A cat.", CachedAnswer("一只猫。", "stop"))])

    wanted = [text_hash("A dog."), text_hash("A cat."), text_hash("A cow.")]
    assert cache.lookup("zh", wanted) == {
        text_hash("A dog."): CachedAnswer("一只狗。", "stop"),
        text_hash("A cat."): CachedAnswer("一只猫。", "stop"),
    }
    assert cache.lookup("ja", wanted) == {}  # another target
    other_model = TranslationCache(storage, cache.root, "/models/yi", "fig5-aaaa")
    other_prompt = TranslationCache(storage, cache.root, "/models/qwen", "fig5-bbbb")
    assert other_model.lookup("zh", wanted) == {} and other_prompt.lookup("zh", wanted) == {}


def test_wide_input_reads_string_and_list_columns_of_downloaded_rows(tmp_path):
    storage = Storage(str(tmp_path))
    storage.write_parquet(
        storage.path("in.parquet"),
        pa.table(
            {
                "key": ["a", "b", "c"],
                "status": ["success", "failed_to_download", "success"],
                "caption": ["A dog.", "lost", None],
                "ref_exps": [["the dog", "a ball"], ["x"], []],
            }
        ),
    )
    rows = read_input(storage, storage.path("in.parquet"), ["caption", "ref_exps"])
    assert [(r.key, r.field, r.text) for r in rows] == [
        ("a", "caption", "A dog."),
        ("a", "ref_exps.0", "the dog"),
        ("a", "ref_exps.1", "a ball"),
        ("c", "caption", None),
    ]


def test_input_without_text_columns_is_a_clear_error(tmp_path):
    storage = Storage(str(tmp_path))
    storage.write_parquet(storage.path("in.parquet"), pa.table({"key": ["a"], "url": ["http://x"]}))
    with pytest.raises(InputError, match="missing"):
        read_input(storage, storage.path("in.parquet"))


def test_command_line_surface_is_stable():
    """Users' scripts call these options; removing or renaming one is a breaking change."""
    options = {o for action in build_parser()._actions for o in action.option_strings}
    assert options == {
        "-h",
        "--help",
        "--config",
        "-c",
        "--set",
        "--source",
        "--endpoint",
        "--model",
        "--target",
        "--input",
        "--text-column",
        "--settings",
        "--plan",
        "--tokenizer",
        "--verbose",
        "-v",
    }
