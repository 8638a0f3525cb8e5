"""``vlmix ocr``: run the OCR stage over one source's raw shards (and optionally build its task tables).

    vlmix ocr --root /data/mix --source wukong --language zh --concurrency 4
    vlmix ocr --root s3://bucket/mix --source laion_coco --language en --ray-address auto \\
        --settings ocr.yaml --tasks-dataset laion_coco_ocr
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import yaml

from .settings import OcrSettings

# Command-line flags that override one OcrSettings field each (flag -> field).
OVERRIDES = {
    "engine": "engine",
    "model": "model",
    "det_model_dir": "det_model_dir",
    "rec_model_dir": "rec_model_dir",
    "device": "device",
    "concurrency": "concurrency",
    "batch_size": "batch_size",
    "cpus_per_actor": "cpus_per_actor",
    "gpus_per_actor": "gpus_per_actor",
}
FILTER_OVERRIDES = ("min_line_score", "min_chars", "max_lines", "min_text_area")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vlmix ocr", description="OCR raw image shards into an OCR corpus (PP-OCR)."
    )
    p.add_argument("--root", required=True, help="storage root: a local path or an fsspec URI (s3://...)")
    p.add_argument(
        "--source", required=True, help="source name: reads <root>/raw/<source>/, writes <root>/ocr/<source>/"
    )
    p.add_argument(
        "--language", required=True, help="language of the text in the images: zh (Wukong), en (LAION-COCO)"
    )
    p.add_argument("--settings", type=Path, help="YAML or JSON file with OcrSettings fields")
    p.add_argument(
        "--ray-address",
        default=None,
        help="join this Ray cluster ('auto', 'ray://host:10001'); default: local Ray",
    )
    p.add_argument(
        "--tasks-dataset", default=None, help="also write OCR task tables under <root>/tasks/<this name>/"
    )
    p.add_argument("--engine", choices=["onnx", "paddleocr"])
    p.add_argument("--model")
    p.add_argument("--det-model-dir")
    p.add_argument("--rec-model-dir")
    p.add_argument("--device", help="cpu, gpu or gpu:N")
    p.add_argument("--concurrency", type=int, help="OCR actors")
    p.add_argument("--batch-size", type=int, help="images per actor call")
    p.add_argument("--cpus-per-actor", type=float)
    p.add_argument("--gpus-per-actor", type=float)
    for name in FILTER_OVERRIDES:
        p.add_argument(
            f"--{name.replace('_', '-')}", type=float if "score" in name or "area" in name else int
        )
    return p


def settings_from_args(args: argparse.Namespace) -> OcrSettings:
    """OcrSettings from the settings file, then the flags given on the command line."""
    data = yaml.safe_load(args.settings.read_text()) if args.settings else {}
    data = dict(data or {})
    for flag, field in OVERRIDES.items():
        if getattr(args, flag) is not None:
            data[field] = getattr(args, flag)
    filters = dict(data.get("filters") or {})
    for name in FILTER_OVERRIDES:
        if getattr(args, name) is not None:
            filters[name] = getattr(args, name)
    if filters:
        data["filters"] = filters
    return OcrSettings.model_validate(data)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``vlmix ocr``; returns the process exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = settings_from_args(args)
    except (ValueError, OSError, yaml.YAMLError) as err:
        print(f"vlmix ocr: bad settings: {err}", file=sys.stderr)
        return 2
    from pipelines.runtime import ensure_ray

    from .stage import run_ocr_stage

    ensure_ray(args.ray_address)
    stats = run_ocr_stage(args.root, args.source, args.language, settings)
    if args.tasks_dataset:
        from .tasks import write_ocr_task_tables

        stats["task_tables"] = write_ocr_task_tables(args.root, args.source, args.tasks_dataset)
    summary = {
        k: stats[k] for k in ("shards", "images", "kept", "dropped", "lines_dropped", "shards_this_run")
    }
    print(json.dumps(summary, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
