"""Where a run's weights start: fresh, a checkpoint of ours (stage 1 for stage 2), or a released InternVL.

``init_from`` names one of:

- a checkpoint of this trainer: a ``step_XXXXXXXX`` directory, a checkpoint location (its newest
  step) or a run's ``--out`` folder (its ``checkpoints/``), local or on object storage. Only the
  model's weights are read (DCP reshards them to any world size); optimizer, scheduler and data
  position start afresh, as a new stage does. Its ``config.json`` names the model preset, which
  must be this run's, and the tokenizer, which this run reuses when it is given none;
- a local directory of ``*.safetensors`` in the released InternVL-Chat-V1-5 layout, converted on
  load by :mod:`trainer.convert` (build with the release's tokenizer).

A run that resumes from its own checkpoint ignores ``init_from``: its weights are further along.
"""

from dataclasses import dataclass
from pathlib import Path

from . import checkpoint


@dataclass(frozen=True)
class InitSource:
    kind: str  # "checkpoint" or "internvl"
    path: str

    def config(self) -> dict:
        """The run configuration a checkpoint of ours was written with ({} for a release)."""
        return checkpoint.read_config(self.path) if self.kind == "checkpoint" else {}


def resolve(location: str) -> InitSource:
    """What ``location`` holds; an error naming it when it is neither kind."""
    fs, root = checkpoint._fs(location)
    if fs.exists(checkpoint._join(root, checkpoint.METADATA)):
        return InitSource("checkpoint", location)
    for candidate in (location, checkpoint._join(location, "checkpoints")):
        newest = checkpoint.latest(candidate)
        if newest is not None:
            return InitSource("checkpoint", newest)
    if "://" not in location and list(Path(location).glob("*.safetensors")):
        return InitSource("internvl", location)
    raise FileNotFoundError(
        f"init_from {location!r}: neither a checkpoint of this trainer (a step_* directory with .metadata, "
        "a checkpoint location or a run folder holding one) nor a folder of InternVL-Chat-V1-5 *.safetensors"
    )


def tokenizer_of(source: InitSource) -> str | None:
    """The tokenizer a checkpoint of ours was trained with, when it is still there."""
    path = (source.config().get("tokenize") or {}).get("tokenizer")
    return path if path and Path(path).exists() else None


def load_weights(model, source: InitSource, preset: str) -> None:
    """Put the source's weights into ``model`` (built, not yet sharded, from ``preset``)."""
    if source.kind == "internvl":
        from .convert import load_internvl_chat

        load_internvl_chat(model, source.path)
        return
    written = (source.config().get("model") or {}).get("preset")
    if written not in (None, preset):
        raise ValueError(f"init_from {source.path}: a {written!r} checkpoint cannot start a {preset!r} model")
    checkpoint.load_model_weights(source.path, model)
