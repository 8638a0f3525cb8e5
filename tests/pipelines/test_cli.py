"""The command line: its surface is frozen (users script it), and errors exit with clear codes."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from flows.cli import build_parser, main

REPO = Path(__file__).resolve().parents[2]

# Adding a subcommand or option is fine: add it here. Removing or renaming one breaks users.
FROZEN = {
    "validate": {"config", "--set"},
    "demo-sources": {"--out", "--seed", "--scale", "--bad-url-share", "--serve", "--port"},
    "download": {"--config", "--set", "--source", "--no-progress"},
    "demo": {"--config", "--set"},
    "run": {"--config", "--set", "--stage"},
}


def surface() -> dict[str, set[str]]:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    found = {}
    for name, sub in subparsers.choices.items():
        options = set()
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            options.update(action.option_strings and [s for s in action.option_strings if s.startswith("--")]
                           or [action.dest])
        found[name] = options
    return found


def test_no_subcommand_or_option_disappears():
    current = surface()
    for command, options in FROZEN.items():
        assert command in current, f"subcommand {command!r} was removed"
        assert options <= current[command], f"{command}: removed {options - current[command]}"


def test_validate_exit_codes(tmp_path, capsys):
    assert main(["validate", str(REPO / "configs" / "demo.yaml")]) == 0
    assert "demo_wukong_ocr" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("storage: {root: x}\nsources: [{name: a, kind: url_list, task: captioning, language: en}]\n")
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "sources[0] (a).locations: a url_list source needs `locations`" in err


def test_console_script_runs():
    result = subprocess.run([sys.executable, "-m", "flows.cli", "--help"], capture_output=True, text=True,
                            cwd=REPO, check=True)
    assert "validate" in result.stdout and "download" in result.stdout
