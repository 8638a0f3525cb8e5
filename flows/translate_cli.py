"""``vlmix translate``: translate the English annotations of the sources marked for translation.

    vlmix translate --config configs/demo.yaml [--source NAME] [--endpoint URL] [--target CODE]
    vlmix translate --config configs/demo.yaml --plan [--tokenizer MODEL_DIR]   # what a run would ask; no request

Exit codes: 0 every part done, 1 some parts failed (rerun to finish them), 2 invalid input.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import yaml

from flows.config import ConfigError, load_config
from flows.translation import NothingToTranslate, plan_lines, plan_translation, run_translation
from pipelines._imports import MissingDependency
from translate.client import ServerUnavailable
from translate.launch import ServerStartError
from translate.run import report_lines
from translate.settings import TranslateSettings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vlmix translate", description=__doc__.splitlines()[0])
    parser.add_argument("--config", "-c", required=True, help="YAML mixture config")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="override a config value, e.g. --set translation.concurrency=32 (repeatable)",
    )
    parser.add_argument(
        "--source",
        action="append",
        default=[],
        metavar="NAME",
        help="translate only this source (repeatable; default: every source with targets)",
    )
    parser.add_argument(
        "--endpoint",
        action="append",
        default=[],
        metavar="URL",
        help="OpenAI-compatible base URL, e.g. http://gpu1:8000/v1 (repeatable); "
        "default: translation.endpoints, else vlmix starts vLLM on Ray",
    )
    parser.add_argument(
        "--model",
        help="model name the endpoints serve (default: translation.model, else the endpoint's first model)",
    )
    parser.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="CODE",
        help="target language code, overriding the sources' translate_to (repeatable)",
    )
    parser.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="GLOB",
        help="input Parquet parts (with exactly one --source; see translate/README.md)",
    )
    parser.add_argument(
        "--text-column",
        action="append",
        default=[],
        metavar="NAME",
        help="text columns of wide input tables (default: caption)",
    )
    parser.add_argument(
        "--settings", metavar="FILE", help="YAML of the stage settings (TranslateSettings); default: the config's translation.stage"
    )
    parser.add_argument(
        "--plan",
        action="store_true",
        help="print, per target, the texts, distinct texts, those the cache lacks and their prompt and answer "
        "tokens, then exit without sending a request",
    )
    parser.add_argument(
        "--tokenizer",
        metavar="DIR",
        help="local folder of the model's tokenizer for --plan (default: translation.model when it is one; "
        "else tokens are estimated)",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    overrides = list(args.overrides)
    if args.model:
        overrides.append(f"translation.model={args.model}")
    try:
        config = load_config(args.config, overrides=overrides)
        settings = _settings(args.settings) if args.settings else config.translation.stage
        if args.plan:
            return _plan(config, settings, args)
        reports = run_translation(
            config,
            settings,
            sources=args.source or None,
            endpoints=args.endpoint or None,
            inputs=args.input or None,
            targets=args.target or None,
            text_columns=args.text_column or None,
        )
    except (ConfigError, NothingToTranslate, KeyError, MissingDependency) as err:
        print(f"vlmix translate: {err}", file=sys.stderr)
        return 2
    except (ServerStartError, ServerUnavailable) as err:
        print(f"vlmix translate: {err}", file=sys.stderr)
        return 1
    for line in report_lines(reports):
        print(line)
    failed = any(report.failed for by_target in reports.values() for report in by_target.values())
    return 1 if failed else 0


def _plan(config, settings, args) -> int:
    from pipelines.runtime import ensure_ray

    ensure_ray(config.ray.address, config.ray.num_cpus)  # the counting runs in Ray tasks, as a run's parts do
    plans, how = plan_translation(config, settings, sources=args.source or None, endpoints=args.endpoint or None,
                                  inputs=args.input or None, targets=args.target or None,
                                  text_columns=args.text_column or None, tokenizer=args.tokenizer)
    for line in plan_lines(plans, how):
        print(line)
    return 0


def _settings(path: str) -> TranslateSettings:
    """Stage settings from a file, in place of the config's `translation.stage`."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(path, [str(err)]) from None
    from pydantic import ValidationError

    try:
        return TranslateSettings.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(
            path, [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors()]
        ) from None


if __name__ == "__main__":
    sys.exit(main())
