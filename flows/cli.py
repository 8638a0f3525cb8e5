"""The ``vlmix`` command line. Each subcommand is a thin wrapper over a stage's public function.

Exit codes: 0 success, 1 the work failed (or another run holds the storage root), 2 the input (config,
arguments) is invalid, 130 / 143 stopped by SIGINT / SIGTERM (``vlmix run``: rerun to resume).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys

from flows.config import Config, ConfigError, load_config
from flows.demo.serve import serve_for_config
from flows.registry import REGISTRY, STAGE_NAMES, StageSelectionError, select
from pipelines._imports import MissingDependency

DEFAULT_CONFIG = "configs/demo.yaml"
log = logging.getLogger("vlmix")


def _add_config_args(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("--config", "-c", required=required, default=None if required else DEFAULT_CONFIG,
                        help="YAML config" + ("" if required else f" (default {DEFAULT_CONFIG})"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                        help="override a config value, e.g. --set download.timeout_s=5 (repeatable)")


def _load(args) -> Config:
    return load_config(args.config, overrides=args.overrides)


def cmd_validate(args) -> int:
    config = _load(args)
    print(f"{args.config}: valid (config hash {config.fingerprint()[:16]})")
    shares = config.task_shares()
    weighting = " (weighted by mixture.repeat_time)" if config.mixture.repeat_time is not None else ""
    print("tasks:", ", ".join(f"{task} {shares[task]:.1%}" if task in shares else task for task in config.tasks)
          + weighting)
    for source in config.sources:
        extra = f" -> {', '.join(source.translate_to)}" if source.translate_to else ""
        ocr = f", OCR ({source.ocr.language})" if source.ocr else ""
        print(f"  {source.name:24s} {source.kind:15s} {source.task:11s} {source.language}{extra}{ocr}")
    return 0


def cmd_demo_sources(args) -> int:
    from flows.demo import DemoServer, generate, write_url_lists

    directory = generate(args.out, seed=args.seed, scale=args.scale, bad_url_share=args.bad_url_share)
    print(f"demo sources in {directory}")
    if not args.serve:
        return 0
    with DemoServer(directory, port=args.port) as server:
        paths = write_url_lists(directory, server.base_url)
        print(f"serving on {server.base_url}; URL lists: {', '.join(str(p) for p in paths.values())}")
        print("Ctrl-C to stop")
        with contextlib.suppress(KeyboardInterrupt):
            server._thread.join()
    return 0


def _print_download_stats(all_stats) -> None:
    for stats in all_stats.values():
        data = stats.to_json()
        failed = ", ".join(f"{k} {v}" for k, v in data["failed"].items()) or "none"
        dropped = ", ".join(f"{k} {v}" for k, v in data["filtered"].items()) or "none"
        print(f"{data['source']:24s} {data['downloaded']:6d}/{data['urls']:<6d} downloaded "
              f"(recovered by retry {data['recovered_by_retry']}); filtered: {dropped}; failed: {failed}")


def cmd_download(args) -> int:
    from flows.assemble import download_all

    config = _load(args)
    with serve_for_config(config):
        all_stats = download_all(config, names=args.source or None, progress=not args.no_progress)
    _print_download_stats(all_stats)
    return 0


def cmd_demo(args) -> int:
    """The main job on the demo mixture, in this process: the whole flow, no Prefect server needed."""
    config = _load(args)
    if config.demo is None:
        raise ConfigError(args.config, ["demo: this command needs a config with a `demo` section"])
    args.stage = None
    return cmd_run(args)


def cmd_run(args) -> int:
    """The build-pretrain-mix flow with no Prefect server (Prefect's ephemeral mode): in a child process
    under the storage root's lease, stopped cleanly on SIGTERM/SIGINT (:mod:`flows.supervise`)."""
    import os

    from flows.supervise import in_child, supervise

    config = _load(args)
    select(config, args.stage)  # fail fast, before Prefect starts: the config, the stages chosen
    if not in_child():
        return supervise(args.argv, config.storage.root, config.storage.options)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    # Prefect's ephemeral server waits 20 s by default to come up; on busy cores (Ray and the stages
    # starting beside it) that is too short, and the run would fail before its first stage.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    from flows.build_pretrain_mix import build_pretrain_mix

    records = build_pretrain_mix(config=str(args.config), stages=args.stage or None, overrides=args.overrides)
    for stage, record in records.items():
        outcome = "skipped (unchanged)" if record["skipped"] else f"done in {record['seconds']} s"
        print(f"{stage}: {outcome}")
    return 0


def cmd_stages(args) -> int:
    """The flow's stages (flows.registry), in order, and whether the config runs them."""
    config = _load(args)
    for stage in REGISTRY:
        on = "runs" if stage.enabled_for(config) else f"off (runs when {stage.enabled_when})"
        after = ", ".join(stage.depends_on) or "-"
        print(f"{stage.name:10s} after {after:20s} retries {stage.retries} (every {stage.retry_delay_seconds:g} s)  {on}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vlmix", description=__doc__.splitlines()[0])
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    validate = commands.add_parser("validate", help="check a config and print what it describes")
    validate.add_argument("config")
    validate.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE")
    validate.set_defaults(run=cmd_validate)

    demo_sources = commands.add_parser("demo-sources", help="generate (and optionally serve) the demo sources")
    demo_sources.add_argument("--out", default="data/demo-sources", help="output folder")
    demo_sources.add_argument("--seed", type=int, default=0)
    demo_sources.add_argument("--scale", type=float, default=1.0, help="multiplies the sample counts")
    demo_sources.add_argument("--bad-url-share", type=float, default=0.06)
    demo_sources.add_argument("--serve", action="store_true", help="serve on 127.0.0.1 until Ctrl-C")
    demo_sources.add_argument("--port", type=int, default=0, help="with --serve; 0 picks a free port")
    demo_sources.set_defaults(run=cmd_demo_sources)

    download = commands.add_parser("download", help="download the config's URL-list sources (img2dataset on Ray)")
    _add_config_args(download)
    download.add_argument("--source", action="append", help="only this source (repeatable)")
    download.add_argument("--no-progress", action="store_true")
    download.set_defaults(run=cmd_download)

    demo = commands.add_parser("demo", help="run the main job on the demo mixture (no internet needed)")
    _add_config_args(demo, required=False)
    demo.set_defaults(run=cmd_demo)

    run = commands.add_parser("run", help="run the build-pretrain-mix flow here, without a Prefect server")
    _add_config_args(run)
    run.add_argument("--stage", action="append", choices=STAGE_NAMES, metavar="STAGE",
                     help=f"only this stage (repeatable; one of {', '.join(STAGE_NAMES)}); "
                          "default every stage the config enables")
    run.set_defaults(run=cmd_run)

    stages = commands.add_parser("stages", help="list the flow's stages in order and which the config runs")
    _add_config_args(stages, required=False)
    stages.set_defaults(run=cmd_stages)

    for name, _, _, _, text in DELEGATED:  # listed for --help; main() hands their arguments over whole
        commands.add_parser(name, help=text, add_help=False)
    return parser


# Subcommands owned by other packages: (name, module, function, extra, help).
DELEGATED: list[tuple[str, str, str, str, str]] = [
    ("ocr", "ocr.cli", "main", "ocr", "OCR one source's raw shards into an OCR corpus (PP-OCR on Ray)"),
    ("pdf", "pdf.cli", "main", "pdf", "what the PDF stage made of each pdf source's pages: text layer, OCR and why, drops"),
    ("translate", "flows.translate_cli", "main", "translate", "translate sources' English texts (Figure-5 prompt, vLLM)"),
    ("train", "trainer.cli", "main", "train", "train InternVL from the shards (stage 1 or 2 recipe)"),
    ("verify", "shards.cli", "verify_main", "mix", "check every shard against its schema and the manifest"),
    ("export-internvl", "shards.cli", "export_main", "mix", "export shards to InternVL's meta JSON + JSONL"),
    ("export-energon", "shards.cli", "energon_main", "energon", "write the .nv-meta/ Megatron-Energon reads into a shard folder"),
]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    delegated = {name: (module, function, extra) for name, module, function, extra, _ in DELEGATED}
    if argv and argv[0] in delegated:  # the other package's parser gets every argument, --help included
        from pipelines._imports import require

        module, function, extra = delegated[argv[0]]
        try:
            return int(getattr(require(module, extra), function)(argv[1:]) or 0)
        except MissingDependency as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    args = build_parser().parse_args(argv)
    args.argv = argv  # `vlmix run` runs its flow in a child process with the same arguments
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for chatty in ("httpx", "httpcore", "urllib3"):  # one line per HTTP request otherwise
        logging.getLogger(chatty).setLevel(logging.WARNING)
    try:
        return args.run(args)
    except (ConfigError, StageSelectionError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except MissingDependency as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        from flows.supervise import in_child

        if not in_child():  # under `vlmix run`, the supervisor says where the run stopped
            print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
