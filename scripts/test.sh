#!/usr/bin/env bash
# Install vlmix with every extra and run the whole test suite. Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Two workers, each taking whole files (a file's fixtures, such as its Ray cluster, stay in one worker)
# in collection order, the longest files first (tests/conftest.py, LONG_FIRST):
# much of the suite waits on servers and subprocesses. VLMIX_TEST_WORKERS=0 runs it in one process.
workers="${VLMIX_TEST_WORKERS:-2}"
if [ "$workers" = "0" ]; then
  exec .venv/bin/python -m pytest tests "$@"
fi
exec .venv/bin/python -m pytest tests -n "$workers" --dist loadfile --no-loadscope-reorder "$@"
