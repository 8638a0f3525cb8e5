"""Command-line entry points of the shard tools: ``vlmix verify``, ``vlmix export-internvl``, ``vlmix export-energon``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml
from pydantic import ValidationError

from shards.export import InternVLExportSettings, export_internvl
from shards.verify import verify


def verify_main(argv: list[str] | None = None) -> int:
    """``vlmix verify DIR``: 0 when every shard checks out, 1 with the first problems listed."""
    parser = argparse.ArgumentParser(
        prog="vlmix verify", description="Check a shard directory against its manifest."
    )
    parser.add_argument(
        "directory", help="the directory holding manifest.json and the shards: a path or a URI (s3://...)"
    )
    _add_storage_options(parser)
    parser.add_argument(
        "--max-problems", type=int, default=20, help="stop after this many problems (default 20)"
    )
    parser.add_argument("--no-decode", action="store_true", help="skip decoding the images (faster)")
    args = parser.parse_args(argv)
    result = verify(
        args.directory,
        max_problems=args.max_problems,
        decode_images=not args.no_decode,
        storage_options=args.storage_options,
    )
    if result.ok:
        print(f"OK: {result.shards} shards, {result.samples} samples match the manifest")
        print("shapes: " + ", ".join(f"{shape} {n}" for shape, n in sorted(result.shapes.items())))
        return 0
    print(f"FAILED: {len(result.problems)} problem(s) found", file=sys.stderr)
    for problem in result.problems:
        print(f"  - {problem}", file=sys.stderr)
    return 1


def export_main(argv: list[str] | None = None) -> int:
    """``vlmix export-internvl SHARD_DIR OUT_DIR``: the InternVL meta JSON + JSONL + images."""
    parser = argparse.ArgumentParser(
        prog="vlmix export-internvl", description="Export shards for the official InternVL trainer."
    )
    parser.add_argument("shard_dir", help="the shard directory: a path or a URI (s3://...)")
    parser.add_argument("out_dir", help="the export folder: a path or a URI (s3://...)")
    parser.add_argument(
        "--settings", type=Path, default=None, metavar="YAML",
        help="export settings (root_prefix, data_augment, max_dynamic_patch, datasets: {NAME: {...}}, "
        "length: {...}); the flags below override them",
    )
    parser.add_argument(
        "--root-prefix", default=None,
        help="where the export will be read from (/mnt/data/export, s3://bucket/export): the meta file's "
        "paths start with it (default: paths relative to the meta file)",
    )
    parser.add_argument("--data-augment", action="store_true", default=None, help="data_augment: true for every dataset")
    parser.add_argument("--max-dynamic-patch", type=int, default=None, help="max_dynamic_patch of every dataset (12)")
    parser.add_argument(
        "--tokenizer", default=None, metavar="DIR",
        help="a local tokenizer folder to count each line's text tokens; default: an estimate (one token "
        "per CJK character, one per --chars-per-token other characters)",
    )
    parser.add_argument("--chars-per-token", type=float, default=None, help="the estimate's characters per token (4)")
    _add_storage_options(parser)
    parser.add_argument("--out-storage-options", type=_json_object, default=None, metavar="JSON",
                        help="fsspec options for OUT_DIR when it is a URI on another store than the shards "
                        '(e.g. \'{"endpoint_url": ..., "key": ..., "secret": ...}\'); they reach every worker')
    args = parser.parse_args(argv)
    raw = yaml.safe_load(args.settings.read_text(encoding="utf-8")) if args.settings else {}
    if not isinstance(raw, dict):
        parser.error(f"--settings {args.settings}: must be a YAML mapping")
    flags = {"root_prefix": args.root_prefix, "data_augment": args.data_augment,
             "max_dynamic_patch": args.max_dynamic_patch}
    raw.update({name: value for name, value in flags.items() if value is not None})
    length = {"tokenizer": args.tokenizer, "chars_per_token": args.chars_per_token}
    raw["length"] = {**raw.get("length", {}), **{k: v for k, v in length.items() if v is not None}}
    try:
        settings = InternVLExportSettings.model_validate(raw)
    except ValidationError as err:
        parser.error(f"export settings: {err}")
    print(export_internvl(args.shard_dir, args.out_dir, settings, storage_options=args.storage_options,
                          out_options=args.out_storage_options))
    return 0


def energon_main(argv: list[str] | None = None) -> int:
    """``vlmix export-energon SHARD_DIR [SHARD_DIR ...] [--blend YAML --weights W ...]``: Energon's metadata."""
    parser = argparse.ArgumentParser(
        prog="vlmix export-energon",
        description="Write the .nv-meta/ folder Megatron-Energon reads (index, splits, dataset.yaml with a "
        "sample loader that keeps every turn and image) into each shard directory; optionally a metadataset "
        "blending them by weight.",
    )
    parser.add_argument("shard_dirs", nargs="+", metavar="shard_dir", help="a shard directory: a local folder or s3://bucket/... (endpoint and credentials from the environment)")
    parser.add_argument(
        "--val-shards", type=int, default=0, help="the last N shards form the 'val' split (default: none)"
    )
    parser.add_argument("--workers", type=int, default=2, help="processes indexing the shards (default 2)")
    parser.add_argument("--blend", type=Path, default=None, metavar="YAML",
                        help="also write an Energon metadataset here blending the shard directories")
    parser.add_argument("--weights", type=float, nargs="+", default=None,
                        help="one weight per shard directory for --blend (default: equal)")
    args = parser.parse_args(argv)
    weights = args.weights or [1.0] * len(args.shard_dirs)
    if args.blend is None and args.weights:
        parser.error("--weights needs --blend")
    if len(weights) != len(args.shard_dirs):
        parser.error(f"--weights: {len(weights)} weights for {len(args.shard_dirs)} shard directories")
    from shards.energon import blend_metadataset, export_energon  # needs megatron-energon: imported here only

    for shard_dir in args.shard_dirs:
        print(export_energon(shard_dir, val_shards=args.val_shards, workers=args.workers))
    if args.blend is not None:
        print(blend_metadataset(args.blend, dict(zip(args.shard_dirs, weights, strict=True))))
    return 0


def _add_storage_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--storage-options",
        type=_json_object,
        default=None,
        metavar="JSON",
        help='fsspec options for a URI, e.g. \'{"endpoint_url": "http://127.0.0.1:9000"}\'; '
        "on S3 the endpoint and credentials otherwise come from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID...",
    )


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not JSON: {err}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return value


if __name__ == "__main__":
    sys.exit(verify_main())
