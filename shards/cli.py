"""Command-line entry points of the shard tools; ``vlmix verify`` and ``vlmix export-internvl`` call them."""

from __future__ import annotations

import argparse
import json
import sys

from shards.export import export_internvl
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
    parser.add_argument("out_dir", help="a local folder for the export")
    _add_storage_options(parser)
    args = parser.parse_args(argv)
    print(export_internvl(args.shard_dir, args.out_dir, storage_options=args.storage_options))
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
