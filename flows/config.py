"""The configuration of a whole mixture: sources, tasks and their shares, languages, stage settings.

A config is one YAML file validated by the typed models below. Loading never returns a half-valid
object: a bad file raises :class:`ConfigError` listing every problem as ``path: got VALUE,
expected WHAT``, before any stage runs.

>>> from flows.config import load_config
>>> config = load_config("configs/demo.yaml", overrides=["translation.targets=[zh, ja]"])  # doctest: +SKIP
>>> config.task_shares()  # doctest: +SKIP
{'captioning': 0.539, 'detection': 0.052, 'ocr_large': 0.32, 'ocr_small': 0.089}
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from decontam.settings import DecontamSettings
from download.settings import Download
from ocr.settings import OcrSettings
from ocr.tasks import OcrTaskStyle
from pdf.settings import PdfOptions
from pipelines._model import ConfigModel, without_execution_fields
from pipelines.languages import Language
from pipelines.source import Columns, OcrSource, Source, UrlFilters
from shards.mix import REPORT_TASK_SHARES, MixOptions  # the report's Table 1a shares, owned by the mixer
from shards.write import ShardSettings
from tasks.build import TaskSampleOptions
from tasks.kinds import kind_names, kind_of
from trainer.settings import Preset, Recipe, TrainSettings
from translate.budget import check_budget
from translate.keys import check_api_key_env
from translate.settings import PROMPT_OVERHEAD_TOKENS, ClientSettings, TranslateSettings

_NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")


class ConfigError(ValueError):
    """A configuration file is malformed; ``problems`` holds one line per offending field."""

    def __init__(self, source: str, problems: list[str]):
        self.problems = problems
        listing = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid configuration {source}:\n{listing}")


__all__ = ["Columns", "Config", "ConfigError", "Language", "OcrSource", "Source", "UrlFilters", "load_config",
           "validate_config"]


class TaskSpec(ConfigModel):
    share: float | None = Field(
        None, description="target fraction of the mixture's samples (0..1); left out when the mixture is "
        "weighted by mixture.repeat_time"
    )

    @field_validator("share")
    @classmethod
    def _share_range(cls, value: float | None) -> float | None:
        if value is not None and (not math.isfinite(value) or not 0 <= value <= 1):
            raise ValueError("must be a fraction between 0 and 1")
        return value


class Translation(ClientSettings):
    """What to translate into, where the model is, and the stage's settings; how the client talks to
    the endpoints is the translation package's own model (:class:`translate.settings.ClientSettings`)."""

    targets: list[str] = Field(default_factory=list, description="language codes to translate into")
    endpoints: list[str] = Field(
        default_factory=list,
        description="OpenAI-compatible base URLs (vLLM); empty = vlmix starts vLLM servers itself",
    )
    stage: TranslateSettings = Field(
        default_factory=TranslateSettings, description="token budgets, validation, cache, vLLM servers"
    )

    @model_validator(mode="after")
    def _keys_are_named(self) -> Translation:
        check_api_key_env(self.api_key_env, self.endpoints)
        check_budget(self.max_tokens_per_minute, self.stage.max_max_tokens, PROMPT_OVERHEAD_TOKENS)
        return self


class Mixture(MixOptions):
    """How many samples the mixture has and how they are drawn: the mixer's own options (task shares
    are in `tasks`, per-source weights and floors on the sources)."""

    total_samples: int | None = Field(10_000, ge=1, description="samples in the final shards, repeats included "
                                      "(with task shares; the repeat times give the total with repeat_time)")


class Shards(ShardSettings):
    """The final WebDataset shards: the shard writer's own settings, and where they go."""

    directory: str | None = Field(None, description="output folder; None = <storage.root>/shards")


class TrainStage(TrainSettings):
    """Optional last stage of the flow: the trainer's own settings (`vlmix train` options), with
    flow defaults; the flow trains from the shards it produced unless `shards` names others."""

    recipe: Recipe = Field("stage2", description="stage1 (LLM frozen) or stage2 (all)")
    shards: str | None = Field(None, description="None = the shards this flow wrote")
    model: Preset = Field("tiny", description="model preset: tiny, mini-internvl-2b, internvl-1.5-26b")
    out: str = Field(description="checkpoints, TensorBoard logs and metrics.jsonl")
    steps: int = Field(20, ge=1, description="optimizer steps")


class Storage(ConfigModel):
    root: str = Field(description="where every stage writes: a local path or an fsspec URI (s3://bucket/prefix)")
    options: dict[str, Any] = Field(
        default_factory=dict, description="fsspec storage options, e.g. {endpoint_url: ...} for S3"
    )

    def open(self):
        """The root, opened with its options (:class:`pipelines.storage.Storage`): the one way the
        application turns this setting into storage; stages get ``StageContext(root_uri, options)``."""
        from pipelines.storage import Storage as Root

        return Root(self.root, self.options)


class RayConfig(ConfigModel):
    address: str | None = Field(None, description="None = local Ray on this machine; 'auto' or ray://host:port")
    num_cpus: int | None = Field(None, ge=1, description="CPUs of the local Ray; None = all")


class DemoConfig(ConfigModel):
    """Demo sources generated and served on loopback (configs/demo.yaml)."""

    directory: str = Field(description="where generated demo images and URL lists go")
    bad_url_share: float = Field(0.06, ge=0, lt=1, description="fraction of URLs that are broken on purpose")
    scale: float = Field(1.0, gt=0, description="multiplies the number of generated samples")
    port: int = Field(
        28471, ge=0, le=65535, description="loopback port of the demo's image server, fixed so that the URLs, and "
        "the shards' meta.url, repeat from run to run; 0, or a port in use: any free port (the URLs then differ)")
    finetune: bool = Field(
        False, description="also generate the fine-tuning demo's sources under directory/finetune "
        "(configs/demo-finetune.yaml; flows/demo/finetune.py)"
    )


class Config(ConfigModel):
    """A whole mixture: what to read, how to process it, what to produce."""

    seed: int = 0
    storage: Storage
    ray: RayConfig = Field(default_factory=RayConfig)
    tasks: dict[str, TaskSpec] = Field(
        default_factory=lambda: {name: TaskSpec(share=share) for name, share in REPORT_TASK_SHARES.items()}
    )
    languages: dict[str, Language] = Field(default_factory=dict)
    translation: Translation = Field(default_factory=Translation)
    download: Download = Field(default_factory=Download)
    ocr: OcrSettings = Field(default_factory=OcrSettings, description="the OCR stage (engines, actors, filters)")
    pdf: PdfOptions = Field(default_factory=PdfOptions, description="the PDF stage (render, limits, checks)")
    task_samples: TaskSampleOptions = Field(
        default_factory=TaskSampleOptions, description="the task stage: objects per sample, records per unit")
    ocr_tasks: OcrTaskStyle = Field(default_factory=OcrTaskStyle, description="OCR corpus -> conversations")
    decontaminate: DecontamSettings | None = Field(
        None, description="near-duplicate images across sources and evaluation sets kept out, before the mix "
        "(decontam/README.md); None: the stage does not run")
    mixture: Mixture = Field(default_factory=Mixture)
    shards: Shards = Field(default_factory=Shards)
    train: TrainStage | None = Field(None, description="train from the shards at the end of the flow")
    sources: list[Source] = Field(min_length=1)
    demo: DemoConfig | None = None
    paths: dict[str, str] = Field(
        default_factory=dict, description="named locations to reuse in sources as ${paths.NAME}"
    )

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        names = [source.name for source in self.sources]
        self._check_weighting(names)
        duplicated = sorted({name for name in names if names.count(name) > 1})
        if duplicated:
            raise ValueError(f"source names must be unique; repeated: {duplicated}")
        kinds = kind_names()
        problems = []
        for index, source in enumerate(self.sources):
            where = f"sources[{index}] ({source.name})"
            if source.kind not in kinds:
                problems.append(f"{where}.kind: got {source.kind!r}, expected one of {kinds}")
                continue
            problems += [f"{where}.{name}: {message}" for name, message in kind_of(source).problems(source, list(self.tasks))]
        if problems:
            raise ValueError("\n  - ".join(problems))
        for source in self.sources:
            if source.task not in self.tasks:
                raise ValueError(f"source {source.name!r}: task {source.task!r} is not one of {sorted(self.tasks)}")
            if source.images_from is not None and source.images_from not in names:
                raise ValueError(f"source {source.name!r}: images_from {source.images_from!r} is no source")
            for code in source.translate_to:
                if code not in self.languages:
                    raise ValueError(f"source {source.name!r}: translate_to {code!r} is not in `languages`")
        for code in self.translation.targets:
            if code not in self.languages:
                raise ValueError(f"translation.targets: {code!r} is not in `languages` {sorted(self.languages)}")
        fed = {source.task for source in self.sources}
        empty = [task for task, spec in self.tasks.items() if (spec.share is None or spec.share > 0) and task not in fed]
        if empty:
            raise ValueError(f"tasks {empty} have a share but no source")
        return self

    def _check_weighting(self, names: list[str]) -> None:
        """Task shares adding up to 1, or per-source repeat times (then no shares, no weights)."""
        repeat_time = self.mixture.repeat_time
        if repeat_time is None:
            missing = sorted(task for task, spec in self.tasks.items() if spec.share is None)
            if missing:
                raise ValueError(f"tasks {missing} need a share (or weight the mixture by mixture.repeat_time)")
            total = sum(spec.share for spec in self.tasks.values())
            if abs(total - 1.0) > 1e-3:
                raise ValueError(f"task shares must add up to 1, they add up to {total:.4f}")
            return
        variants = {f"{s.name}-{code}" for s in self.sources for code in s.translate_to}  # tasks.build's names
        problems = [f"mixture.repeat_time.{name}: no source (or translated variant <source>-<language>) of that name"
                    for name in repeat_time if name not in names and name not in variants]
        problems += [f"mixture.repeat_time.{name}: got {value}, expected a finite number >= 0"
                     for name, value in repeat_time.items() if not math.isfinite(value) or value < 0]
        problems += [f"tasks.{task}.share: shares do not apply with mixture.repeat_time"
                     for task, spec in self.tasks.items() if spec.share is not None]
        problems += [f"sources ({source.name}).weight: weights do not apply with mixture.repeat_time"
                     for source in self.sources if source.weight != 1.0]
        if problems:
            raise ValueError("\n  - ".join(problems))

    def source(self, name: str) -> Source:
        for source in self.sources:
            if source.name == name:
                return source
        raise KeyError(f"no source named {name!r}; sources are {[s.name for s in self.sources]}")

    def prompt_pool(self, purpose: str, language: str) -> list[str]:
        """Instructions for ``purpose`` in ``language``.

        The language's own pool from the registry, else vlmix's built-in one (en, zh), else the
        English pool asking for an answer in that language: adding a target language needs no
        prompts, and native ones, when given, replace that fallback.
        """
        from ocr.prompts import GROUNDED, TRANSCRIBE
        from tasks.prompts import PROMPTS

        built_in = {**PROMPTS, "transcribe": TRANSCRIBE, "grounded": GROUNDED}.get(purpose, {})
        entry = self.languages.get(language)
        own = (entry.prompts.get(purpose) if entry else None) or built_in.get(language)
        if own:
            return list(own)
        if entry is None:
            return []
        return [f"{prompt} Answer in {entry.name}." for prompt in built_in.get("en", [])]

    def task_prompts(self) -> dict[str, dict[str, list[str]]]:
        """Every registry language's instruction pools, as the task builder's `prompts` setting; the OCR
        pools too, for English and Chinese whether listed or not (published scene-text sets read in both)."""
        from ocr.prompts import GROUNDED, TRANSCRIBE
        from tasks.prompts import PROMPTS

        pools = self._pools((*PROMPTS, "transcribe", "grounded"))
        for purpose, built_in in (("transcribe", TRANSCRIBE), ("grounded", GROUNDED)):
            for code, prompts in built_in.items():
                pools[purpose].setdefault(code, list(prompts))
        return pools

    def ocr_prompts(self) -> dict[str, dict[str, list[str]]]:
        """Every registry language's OCR instruction pools (transcribe, grounded), for OcrTaskSettings."""
        return self._pools(("transcribe", "grounded"))

    def _pools(self, purposes) -> dict[str, dict[str, list[str]]]:
        return {purpose: {code: self.prompt_pool(purpose, code) for code in self.languages} for purpose in purposes}

    def task_shares(self) -> dict[str, float]:
        return {task: spec.share for task, spec in self.tasks.items() if spec.share is not None}

    def fingerprint(self) -> str:
        """sha256 of the canonical JSON of the config, its location fields left out (the storage root and
        options, the Ray section, the shard and demo folders, the train paths, where sources' files are)
        and its execution-only fields (``pipelines._model.EXECUTION_ONLY``: actors, threads, workers,
        requests in flight): the manifest's config hash, the same for a run moved to another root or
        spread over more nodes."""
        data = self.model_dump(mode="json", exclude={"storage": True, "ray": True, "paths": True,
                                                     "shards": {"directory"}, "demo": {"directory"},
                                                     "train": {"out", "shards"}})
        for source in data["sources"]:
            for name in ("locations", "image_root", "obtain"):
                source.pop(name, None)
        without_execution_fields(self, data)  # workers, actors, threads: not what the run makes
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read, override and validate a YAML config.

    ``overrides`` are ``dotted.path=YAML`` strings, e.g. ``download.timeout_s=5`` or
    ``translation.targets=[zh, ja]``; list items are addressed by index (``sources.0.weight=2``).
    Relative paths in ``storage.root``, ``demo.directory`` and source locations are taken relative
    to the config file's folder, so a config works from any working directory.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(str(path), ["file not found"]) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(str(path), [f"{where}not valid YAML ({getattr(err, 'problem', err)})"]) from None
    if not isinstance(raw, dict):
        raise ConfigError(str(path), [f"the top level must be a mapping, got {type(raw).__name__}"])
    for override in overrides:
        _apply_override(raw, override, str(path))
    _resolve_relative_paths(raw, path.parent)
    _interpolate(raw, str(path))
    return validate_config(raw, str(path))


def validate_config(raw: dict, source: str = "<dict>") -> Config:
    """Validate an already-parsed config mapping (see :func:`load_config`)."""
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        # A rule across sources reports one line per offending source field.
        lines = [line for error in err.errors() for line in _describe(error, raw).split("\n  - ")]
        raise ConfigError(source, lines) from None


def _describe(error: dict, raw: dict) -> str:
    location = _location(error["loc"], raw)
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "missing":
        return f"{location}: missing, {message.lower()}"
    value = error.get("input")
    if location == "<config>":
        return message
    if isinstance(value, dict):  # a rule across fields of one object: the object is no useful "value"
        return f"{location}: {message}"
    return f"{location}: got {_short(value)}, expected: {message}"


def _location(loc: tuple, raw: dict) -> str:
    """``('sources', 2, 'filters', 'max_punsafe')`` -> ``sources[2] (laion_en).filters.max_punsafe``."""
    parts: list[str] = []
    node: Any = raw
    for item in loc:
        if isinstance(item, int):
            name = node[item].get("name") if isinstance(node, list) and item < len(node) and isinstance(node[item], dict) else None
            parts[-1] += f"[{item}]" + (f" ({name})" if name else "")
        elif item.startswith(("function-", "is-instance", "lax-or-strict", "json-or-python")):
            continue  # pydantic's internal validator names, meaningless to a user
        else:
            parts.append(str(item))
        try:
            node = node[item]
        except (KeyError, IndexError, TypeError):
            node = None
    return ".".join(parts) or "<config>"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _apply_override(raw: dict, override: str, source: str) -> None:
    key, sep, text = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(source, [f"override {override!r}: expected dotted.path=value"])
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(source, [f"override {override!r}: value is not valid YAML ({err})"]) from None
    node: Any = raw
    parts = key.strip().split(".")
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(source, [f"override {override!r}: {part!r} is not an index of {'.'.join(parts[:depth])}"])
            part = int(part)
        elif not isinstance(node, dict):
            raise ConfigError(source, [f"override {override!r}: {'.'.join(parts[:depth])} is not a mapping"])
        if last:
            node[part] = value
        else:
            if isinstance(node, dict) and node.get(part) is None:
                node[part] = {}
            node = node[part]


_REFERENCE = re.compile(r"\$\{([a-z_][a-z0-9_.]*)\}")


def _interpolate(raw: dict, source: str) -> None:
    """Replace ``${dotted.path}`` in source locations by that config value (e.g. ``${demo.directory}``)."""

    def lookup(match: re.Match) -> str:
        node: Any = raw
        for part in match.group(1).split("."):
            if not isinstance(node, dict) or part not in node:
                raise ConfigError(source, [f"${{{match.group(1)}}}: no such setting to substitute"])
            node = node[part]
        return str(node)

    for entry in raw.get("sources") or []:
        if isinstance(entry, dict):
            if isinstance(entry.get("locations"), list):
                entry["locations"] = [_REFERENCE.sub(lookup, x) if isinstance(x, str) else x for x in entry["locations"]]
            if isinstance(entry.get("image_root"), str):
                entry["image_root"] = _REFERENCE.sub(lookup, entry["image_root"])
    decontaminate = raw.get("decontaminate")  # the evaluation sets' files, as a source's locations
    for entry in (decontaminate.get("evaluation_sets") or []) if isinstance(decontaminate, dict) else []:
        for key in ("path", "images", "questions"):
            if isinstance(entry, dict) and isinstance(entry.get(key), str):
                entry[key] = _REFERENCE.sub(lookup, entry[key])


def _is_local_relative(location: str) -> bool:
    return "://" not in location and not location.startswith("${") and not Path(location).is_absolute()


def _resolve_relative_paths(raw: dict, base: Path) -> None:
    def resolve(value: Any) -> Any:
        if isinstance(value, str) and _is_local_relative(value):
            return str((base / value).resolve())
        return value

    if isinstance(raw.get("storage"), dict):
        raw["storage"]["root"] = resolve(raw["storage"].get("root"))
    if isinstance(raw.get("demo"), dict):
        raw["demo"]["directory"] = resolve(raw["demo"].get("directory"))
    if isinstance(raw.get("train"), dict) and isinstance(raw["train"].get("out"), str):
        raw["train"]["out"] = resolve(raw["train"]["out"])
    translation = raw.get("translation")
    if isinstance(translation, dict) and isinstance(translation.get("model"), str) and translation["model"].startswith("."):
        translation["model"] = resolve(translation["model"])  # a local model folder, relative to the config
    stage = translation.get("stage") if isinstance(translation, dict) else None
    quality = stage.get("quality") if isinstance(stage, dict) else None
    if isinstance(quality, dict) and isinstance(quality.get("encoder"), str) and quality["encoder"].startswith("."):
        quality["encoder"] = resolve(quality["encoder"])  # the sentence encoder's folder, relative to the config
    for source in raw.get("sources") or []:
        if isinstance(source, dict):
            if isinstance(source.get("locations"), list):
                source["locations"] = [resolve(item) for item in source["locations"]]
            source["image_root"] = resolve(source.get("image_root"))
