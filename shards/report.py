"""The mixture report beside the manifest: ``report.png`` (target vs achieved shares) and ``report.md``."""

from __future__ import annotations

import io
from pathlib import Path

from pipelines._imports import require
from pipelines.storage import Storage
from shards.location import open_directory


def write_report(
    directory: str | Path | Storage, manifest: dict, storage_options: dict | None = None
) -> tuple[str, str]:
    """Write ``report.png`` and ``report.md`` for ``manifest`` into ``directory`` (a folder or a URI)."""
    storage = open_directory(directory, storage_options)
    png, md = storage.path("report.png"), storage.path("report.md")
    chart = io.BytesIO()
    _chart(chart, manifest)
    storage.fs.pipe_file(png, chart.getvalue())
    storage.fs.pipe_file(md, summary(manifest).encode("utf-8"))
    return png, md


def _chart(path, manifest: dict) -> None:
    matplotlib = require("matplotlib", "mix")
    matplotlib.use("Agg")  # files only; never a window
    plt = require("matplotlib.pyplot", "mix")
    groups = [("task", manifest["tasks"]), ("language", manifest["languages"])]
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2), width_ratios=[max(len(g[1]), 1) + 1 for g in groups])
    for axis, (label, stats) in zip(axes, groups, strict=True):
        names = list(stats)
        positions = range(len(names))
        target = [100 * stats[n]["target_share"] for n in names]
        achieved = [100 * stats[n]["achieved_share"] for n in names]
        axis.bar([p - 0.2 for p in positions], target, 0.4, label="target", color="#9aa7b8")
        axis.bar([p + 0.2 for p in positions], achieved, 0.4, label="achieved", color="#2f6db5")
        for p, value in zip(positions, achieved, strict=True):
            axis.annotate(f"{value:.1f}", (p + 0.2, value), ha="center", va="bottom", fontsize=8)
        axis.set_xticks(list(positions), names, rotation=20)
        axis.set_ylabel("% of samples")
        axis.set_title(f"share per {label}")
        axis.legend(frameon=False)
    figure.suptitle(f"{manifest['total_samples']:,} samples, seed {manifest['seed']}")
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=110, metadata={"Software": None})
    plt.close(figure)


def _table(title: str, stats: dict, extra: tuple[str, ...] = ()) -> list[str]:
    header = f"| {title} | target % | achieved % | samples |" + "".join(f" {e} |" for e in extra)
    lines = [header, "|" + " --- |" * (4 + len(extra))]
    for name, s in stats.items():
        cells = [f"{100 * s['target_share']:.2f}", f"{100 * s['achieved_share']:.2f}", f"{s['samples']:,}"]
        cells += [_cell(s.get(e)) for e in extra]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _cell(value) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def summary(manifest: dict) -> str:
    """The markdown summary: shares per task, language and source; shards; drops per stage."""
    shards = manifest["shards"]
    size = sum(s["bytes"] for s in shards)
    lines = [
        "# Mixture report",
        "",
        f"{manifest['total_samples']:,} samples in {len(shards)} shards ({size / 2**20:,.1f} MiB), "
        f"seed {manifest['seed']}, config `{manifest['config_hash'][:12]}`.",
        "",
        *_table("task", manifest["tasks"]),
        "",
        *_table("language", manifest["languages"]),
        "",
        *_table("source", manifest["sources"], ("available", *_repeat_columns(manifest["sources"]),
                                                "duplicates_removed", *_decontam_columns(manifest["sources"]))),
        "",
        "## Dropped, by stage and reason",
        "",
    ]
    for stage, counters in manifest["drops"].items():
        flat = _flatten(counters)
        if flat:
            lines.append(f"- **{stage}**: " + ", ".join(f"{k} {v:,}" for k, v in flat.items()))
        else:
            lines.append(f"- **{stage}**: nothing")
    return "\n".join(lines) + "\n"


def _repeat_columns(sources: dict) -> tuple[str, ...]:
    """The repeat time each source got, and the one it asked for when the mixture is weighted by them."""
    if any("target_repeat_time" in s for s in sources.values()):
        return ("target_repeat_time", "repeat_time")
    return ("repeat_time",)


def _decontam_columns(sources: dict) -> tuple[str, ...]:
    """The decontamination stage's removals per source, when it ran."""
    if any("near_duplicates_removed" in s for s in sources.values()):
        return ("near_duplicates_removed", "contamination_removed")
    return ()


def _flatten(counters: dict, prefix: str = "") -> dict[str, int]:
    flat: dict[str, int] = {}
    for key, value in counters.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}/"))
        elif value:
            flat[name] = value
    return flat
