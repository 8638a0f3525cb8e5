"""How well does a quality method tell right translations from wrong ones? AUC on a reference set.

The reference set (default: ``quality_reference.jsonl`` beside this file, written by hand for vlmix)
holds English texts (captions, object names, conversation turns), each with a correct Chinese
translation and one or more deliberately wrong ones, labelled by what is wrong: ``dropped_object``,
``wrong_number``, ``other_language`` (Japanese, Korean, French, German), ``wrong_meaning``. Every Chinese
text also has the English a faithful back-translation gives (``back``), written by hand, for
``--serve-reference``. One JSON object a line::

    {"kind": "caption", "source": "...", "correct": {"zh": "...", "back": "..."},
     "wrong": [{"error": "dropped_object", "zh": "...", "back": "..."}, ...]}

Methods, each scoring every (source, translation) pair with vlmix's own code:

- ``back_translation``: translate/quality.py, the stage's back-translation prompt and chrF, against
  ``--endpoint URL`` (an OpenAI-compatible server with the model you translate with; ``--model``,
  ``--api-key-env``), or ``--serve-reference``: a loopback server answering each back-translation
  request with the set's hand-written ``back`` (measures chrF given faithful back-translations, not a
  model);
- ``encoder``: translate/encoder.py, cosine of a sentence-transformers model's embeddings, from
  ``--encoder DIR`` (a local folder: LaBSE or another multilingual encoder);
- ``numbers``: translate/digits.py alone, 1 if every number of the source survived, else 0;
- ``validation``: the stage's whole answer validation (translate/validate.py with default settings:
  script share, length, refusals, numbers), 1 if accepted, else 0.

For each score method, ``validation+<method>`` is the two as the stage applies them: an answer
validation rejects ranks below every scored one.

AUC is the chance that a correct translation scores above a wrong one (ties count half), over all
wrong ones and per error kind (correct ones against that kind's). Binary methods (``numbers``,
``validation``) score 0.5 on a kind they never catch.

    .venv/bin/python bench/translate/quality.py --method back_translation --serve-reference --method numbers
    .venv/bin/python bench/translate/quality.py --method encoder --encoder /models/LaBSE
    .venv/bin/python bench/translate/quality.py --method back_translation --endpoint http://gpu1:8000/v1 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: the tests' server double

from tests.translate.translator_double import TranslatorDouble  # noqa: E402
from translate.digits import missing_numbers  # noqa: E402
from translate.settings import TranslateSettings, ValidationSettings  # noqa: E402
from translate.validate import Validator  # noqa: E402

REFERENCE = Path(__file__).with_name("quality_reference.jsonl")
METHODS = ("back_translation", "encoder", "numbers", "validation")
CORRECT = "correct"


@dataclass(frozen=True)
class Sample:
    kind: str  # caption, object, turn
    source: str
    translation: str
    back: str  # the hand-written faithful back-translation
    label: str  # correct, or the error kind


def load(path: Path) -> list[Sample]:
    samples = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        item = json.loads(line)
        samples.append(Sample(item["kind"], item["source"], item["correct"]["zh"], item["correct"]["back"], CORRECT))
        samples += [Sample(item["kind"], item["source"], w["zh"], w["back"], w["error"]) for w in item["wrong"]]
    return samples


def auc(good: list[float], bad: list[float]) -> float | None:
    if not good or not bad:
        return None
    wins = sum(1.0 if g > b else 0.5 if g == b else 0.0 for g in good for b in bad)
    return wins / (len(good) * len(bad))


def back_translation_scores(samples, endpoint, model, api_key_env, language) -> list[float | None]:
    from translate.client import ChatClient
    from translate.quality import score

    settings = TranslateSettings()

    async def go():
        async with ChatClient([endpoint], model=model, api_key_env=api_key_env, concurrency=8) as client:
            results, _ = await score(client, None, [(s.source, s.translation) for s in samples], settings.max_tokens,
                                     "zh", language)
            return [value for _, value in results]

    return asyncio.run(go())


def scores_of(method: str, samples: list[Sample], args) -> list[float | None]:
    if method == "numbers":
        return [0.0 if missing_numbers(s.source, s.translation) else 1.0 for s in samples]
    if method == "validation":
        validator = Validator(args.scripts, ValidationSettings())
        return [1.0 if validator.reason(s.source, s.translation) is None else 0.0 for s in samples]
    if method == "encoder":
        from translate.encoder import check_folder, similarities

        if not args.encoder:
            raise SystemExit("--method encoder needs --encoder DIR (a local sentence-transformers model)")
        check_folder(args.encoder)
        return similarities(args.encoder, [(s.source, s.translation) for s in samples], 64, args.encoder_device)
    if args.serve_reference:
        # The tests' loopback double of a translation server, answering each translation with its
        # hand-written faithful back-translation.
        server = TranslatorDouble(answer={s.translation: s.back for s in samples}.__getitem__, model="reference")
        try:
            return back_translation_scores(samples, server.url, server.model, None, args.language)
        finally:
            server.close()
    if not args.endpoint:
        raise SystemExit("--method back_translation needs --endpoint URL or --serve-reference")
    return back_translation_scores(samples, args.endpoint, args.model, args.api_key_env, args.language)


def summary(method: str, samples: list[Sample], scores: list[float | None]) -> dict:
    scored = [(s, v) for s, v in zip(samples, scores, strict=True) if v is not None]
    good = [v for s, v in scored if s.label == CORRECT]
    bad = [v for s, v in scored if s.label != CORRECT]
    kinds = sorted({s.label for s in samples} - {CORRECT})
    return {
        "method": method,
        "auc": auc(good, bad),
        "by_error": {k: auc(good, [v for s, v in scored if s.label == k]) for k in kinds},
        "by_text_kind": {k: auc([v for s, v in scored if s.label == CORRECT and s.kind == k],
                                [v for s, v in scored if s.label != CORRECT and s.kind == k])
                         for k in sorted({s.kind for s in samples})},
        "correct": len(good), "wrong": len(bad), "unscored": len(samples) - len(scored),
        "mean_correct": statistics.mean(good) if good else None, "mean_wrong": statistics.mean(bad) if bad else None,
        "scores": [{"source": s.source, "translation": s.translation, "label": s.label, "score": v}
                   for s, v in zip(samples, scores, strict=True)],
    }


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", type=Path, default=REFERENCE)
    parser.add_argument("--method", action="append", choices=METHODS, help="repeatable; default: numbers, validation")
    parser.add_argument("--endpoint", help="OpenAI-compatible base URL for back_translation")
    parser.add_argument("--model", help="model name at the endpoint (default: its first)")
    parser.add_argument("--api-key-env", help="environment variable holding the endpoint's key")
    parser.add_argument("--serve-reference", action="store_true",
                        help="back_translation against a loopback server answering the set's hand-written back-translations")
    parser.add_argument("--encoder", help="local folder of a sentence-transformers model, for encoder")
    parser.add_argument("--encoder-device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--language", default="Chinese", help="the translations' language, as the prompt names it")
    parser.add_argument("--scripts", nargs="+", default=["Han"], help="its scripts, for validation")
    parser.add_argument("--json", type=Path, help="write every score and the AUCs here")
    args = parser.parse_args(argv)
    samples = load(args.reference)
    methods = args.method or ["numbers", "validation"]
    scores = {m: scores_of(m, samples, args) for m in methods}
    results = [summary(m, samples, scores[m]) for m in methods]
    # As the stage applies them: validation first (a rejected answer is never scored), then the score.
    accepted = scores.get("validation") or scores_of("validation", samples, args)
    for m in (m for m in methods if m in ("back_translation", "encoder")):
        low = min((v for v in scores[m] if v is not None), default=0.0) - 1
        combined = [v if ok else low for v, ok in zip(scores[m], accepted, strict=True)]
        results.append(summary(f"validation+{m}", samples, combined))
    kinds = sorted({s.label for s in samples} - {CORRECT})
    counts = {k: sum(1 for s in samples if s.label == k) for k in [CORRECT, *kinds]}
    print(f"{args.reference.name}: " + ", ".join(f"{k} {n}" for k, n in counts.items()))
    print(f"{'method':28s} {'AUC':>5s} " + " ".join(f"{k:>15s}" for k in kinds) + "   mean correct / wrong")
    for r in results:
        print(f"{r['method']:28s} {_fmt(r['auc']):>5s} " + " ".join(f"{_fmt(r['by_error'][k]):>15s}" for k in kinds)
              + f"   {_fmt(r['mean_correct'])} / {_fmt(r['mean_wrong'])}"
              + (f" ({r['unscored']} unscored)" if r["unscored"] else ""))
    for r in results:
        print(f"  {r['method']} by text kind: " + ", ".join(f"{k} {_fmt(v)}" for k, v in r["by_text_kind"].items()))
    if args.json:
        args.json.write_text(json.dumps(results, ensure_ascii=False, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
