"""A shipped config's commented-out section, as a user uncomments it: the tests run what the file offers."""

from __future__ import annotations

from pathlib import Path


def commented_section(config: Path, key: str) -> dict:
    """The section ``key`` that ``config`` ships commented out (``# key:`` and the ``#   `` lines under it)."""
    import yaml

    lines = config.read_text().splitlines()
    start = lines.index(f"# {key}:")
    taken = [lines[start][2:]]
    for line in lines[start + 1:]:
        if not line.startswith("#   "):
            break
        taken.append(line[2:])
    return yaml.safe_load("\n".join(taken))[key]
