"""The quality harness (bench/translate/quality.py) on its shipped reference set: the numbers that
bench/README.md reports, for the methods that run without a model (chrF against the loopback server of
hand-written back-translations, the number check, validation)."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections import Counter
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "translate" / "quality.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_translate_quality", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def test_the_reference_set_and_the_aucs_the_bench_readme_reports(tmp_path, capsys):
    bench = _bench()
    samples = bench.load(bench.REFERENCE)
    labels = Counter(s.label for s in samples)
    assert labels == {"correct": 32, "wrong_meaning": 12, "dropped_object": 11, "wrong_number": 11, "other_language": 7}
    assert Counter(s.kind for s in samples if s.label == "correct") == {"caption": 16, "object": 8, "turn": 8}

    out = tmp_path / "scores.json"
    assert bench.main(["--method", "back_translation", "--serve-reference", "--method", "numbers",
                       "--method", "validation", "--json", str(out)]) == 0
    results = {r["method"]: r for r in json.loads(out.read_text())}
    assert "validation+back_translation" in capsys.readouterr().out
    chrf, numbers, validation = results["back_translation"], results["numbers"], results["validation"]
    both = results["validation+back_translation"]
    assert chrf["unscored"] == 0  # every text was answered by the loopback server

    # No correct translation of the set is rejected by the number check or by validation.
    assert numbers["mean_correct"] == 1.0 and validation["mean_correct"] == 1.0
    # The number check catches the 8 changed digits, not the 3 changed number words (three -> two...).
    assert round(numbers["by_error"]["wrong_number"], 2) == 0.86  # 0.5 + 0.5 * 8/11
    caught = [s["source"] for s in numbers["scores"] if s["label"] == "wrong_number" and s["score"] == 0.0]
    assert len(caught) == 8 and not any(word in " ".join(caught) for word in ("Three", "Two", "Four"))
    # chrF of faithful back-translations: the figures of bench/README.md.
    assert (round(chrf["auc"], 2), round(chrf["by_error"]["other_language"], 2)) == (0.83, 0.42)
    assert round(chrf["by_error"]["dropped_object"], 2) == 0.97 and round(chrf["by_error"]["wrong_meaning"], 2) == 0.95
    assert round(validation["by_error"]["other_language"], 2) == 0.93  # the kanji-heavy Japanese passes
    assert round(both["auc"], 2) == 0.95 and round(both["by_error"]["wrong_number"], 2) == 0.96
