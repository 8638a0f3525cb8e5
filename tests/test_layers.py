"""The layering the README's "Architecture" section draws holds in the code: import-linter's contract
(pyproject.toml, [tool.importlinter]) over every import, at module level and inside functions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_stages_stand_on_the_foundation_and_never_import_one_another():
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "1 kept, 0 broken" in result.stdout


def test_no_module_takes_the_name_of_a_standard_library_module():
    # Some modules run as scripts (translate/engine_worker.py in vLLM's environment), which puts their
    # folder first on sys.path: a translate/numbers.py there broke vLLM's own `from numbers import Number`.
    packages = [path.parent for path in REPO.glob("*/__init__.py")]
    assert len(packages) >= 10
    clashes = [str(module.relative_to(REPO)) for package in packages for module in package.rglob("*.py")
               if module.stem in sys.stdlib_module_names]
    assert clashes == []
