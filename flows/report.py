"""What the launcher says before and after a run: the config checked, the products that exist."""

from __future__ import annotations

from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def deployment_config(deployment: str) -> str:
    """The config a deployment of ``prefect.yaml`` runs by default."""
    import yaml

    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    for entry in spec.get("deployments", []):
        if entry.get("name") == deployment:
            return str(REPO / entry.get("parameters", {}).get("config", "configs/demo.yaml"))
    return str(REPO / "configs" / "demo.yaml")


def check_config(parameters: dict[str, Any], deployment: str = "local"):
    """The loaded config, or None after printing why it is invalid (before anything starts)."""
    from flows.config import ConfigError, load_config
    from flows.registry import STAGE_NAMES

    path = parameters.get("config") or deployment_config(deployment)
    unknown = sorted(set(parameters.get("stages") or []) - set(STAGE_NAMES))
    if unknown:
        print(f"error: unknown stages {unknown}; the stages are {list(STAGE_NAMES)}", flush=True)
        return None
    try:
        return load_config(path, overrides=parameters.get("overrides", []))
    except (ConfigError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", flush=True)
        return None


def print_products(config) -> None:
    """Where the shards, manifest, report and training run are: only those that exist."""
    from flows.assemble import shard_directory
    from flows.stages import read_summary
    from pipelines.storage import Storage
    from shards.location import options_for

    storage = config.storage.open()
    directory = shard_directory(config)
    out = Storage(directory, options_for(directory, storage))
    found = [(label, name) for label, name in (("manifest", "manifest.json"), ("report", "report.md"),
                                               ("report", "report.png")) if out.exists(out.path(name))]
    if found:
        print(f"shards:       {directory}")
    for label, name in found:
        print(f"{label + ':':13s} {directory.rstrip('/')}/{name}")
    if config.train is not None and (Path(config.train.out) / "metrics.jsonl").exists():
        print(f"training run: {config.train.out} (tensorboard --logdir {config.train.out}/tensorboard)")
    for line in translation_lines(read_summary(storage, "translate") or {}):
        print(line)
    for line in pdf_lines(read_summary(storage, "pdf") or {}):
        print(line)
    print(flush=True)


def translation_lines(summary: dict[str, dict[str, dict]]) -> list[str]:
    """One line per source and target: texts, requests to the model, cache answers, flags."""
    lines = []
    for source, by_target in summary.items():
        for target, v in by_target.items():
            flagged = ", ".join(f"{k} {n}" for k, n in sorted(v.get("flagged", {}).items())) or "none"
            lines.append(f"translation:  {source} -> {target}: {v['translated']}/{v['rows']} texts translated, "
                         f"{v['requests']} requests to the model, {v['from_cache']} from the cache; "
                         f"flagged: {flagged}")
    return lines


def pdf_lines(summary: dict[str, dict]) -> list[str]:
    """Per pdf source: pages from the text layer, to OCR and why, dropped and why (``vlmix pdf`` says more)."""
    from pdf.stats import lines

    return [f"pdf:          {line}" if not line.startswith(" ") else f"              {line}"
            for name, stats in summary.items() for line in lines(name, stats)]
