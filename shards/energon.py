"""Energon-ready shards: the ``.nv-meta/`` folder Megatron-Energon reads, written into a shard directory.

``export_energon(shard_dir)`` (``vlmix export-energon DIR``) indexes the shards the manifest lists
with Energon's own preparation code (so the index is the one the installed Energon reads) and
writes, in ``DIR/.nv-meta/``:

- ``.info.json`` (samples per shard), ``index.sqlite`` and ``index.uuid`` (the sample index),
  beside each shard its ``.tar.idx`` (byte offsets of its samples);
- ``split.yaml``: every shard in ``train``, or the last ``val_shards`` in ``val``;
- ``dataset.yaml`` and ``sample_loader.py``: each sample as a
  :class:`~shards.energon_sample.ConversationSample`, every turn and every image in order (every
  member is read, so a text-only sample loads as well as a two-image one, and nothing is dropped);
- ``crude.yaml``: the same samples as Energon's crude dicts (subflavor ``vlmix: conversation``),
  for a task encoder that cooks them (:func:`shards.energon_sample.cook_conversation`, or its own).

Nothing is asked interactively and no field map is needed: ``energon info DIR`` and
``get_train_dataset(DIR, ...)`` work on the folder as written (vlmix installed beside Energon). The sample keys are the mixture's ids, unique across shards as Energon requires.

``blend_metadataset(path, {shard_dir: weight})`` writes an Energon metadataset (``__module__:
megatron.energon, __class__: MetadatasetV2``) blending several prepared vlmix mixtures by weight.

A mixture on S3 (``s3://bucket/run/shards``) is prepared in place: Energon reads it as
``msc://_s3-bucket/run/shards`` (:func:`energon_path`), the endpoint and credentials coming from the
environment (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``...); pass that path to its loaders.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml

from pipelines._imports import require
from shards.manifest import read_manifest

SUBFLAVOR = {"vlmix": "conversation"}
META = ".nv-meta"


def energon_path(shard_dir: str | Path) -> str:
    """The path Energon opens for a shard directory: a local folder as it is, ``s3://bucket/key`` as
    ``msc://_s3-bucket/key`` (the Multi-Storage Client's implicit S3 profile: endpoint and credentials
    from the environment, ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``...)."""
    text = str(shard_dir)
    if "://" not in text:
        return str(Path(text).resolve())
    protocol, _, rest = text.partition("://")
    bucket, _, key = rest.partition("/")
    if protocol != "s3" or not bucket:
        raise ValueError(f"{text}: export-energon reads a local folder or s3://bucket/..., not {protocol}://")
    return f"msc://_s3-{bucket}/{key.strip('/')}"


def export_energon(shard_dir: str | Path, val_shards: int = 0, workers: int = 2) -> str:
    """Write ``.nv-meta/`` into ``shard_dir`` (a local folder or ``s3://...``); returns the ``dataset.yaml`` path."""
    names = [entry["name"] for entry in read_manifest(str(shard_dir))["shards"]]
    if not 0 <= val_shards < len(names):
        raise ValueError(f"val_shards must be between 0 and {len(names) - 1} (the mixture has {len(names)} shards), "
                         f"got {val_shards}")
    webdataset = require("megatron.energon.flavors.webdataset", "energon")
    epath = require("megatron.energon.epathlib", "energon").EPath
    directory = epath(energon_path(shard_dir))
    train, val = names[: len(names) - val_shards], names[len(names) - val_shards :]
    splits = [("train", _exactly(train))] + ([("val", _exactly(val))] if val else [])
    webdataset.BaseWebdatasetFactory.prepare_dataset(
        directory, names, split_parts_patterns=splits, shuffle_seed=None, workers=max(1, workers)
    )
    meta = directory / META
    _write_text(meta / "sample_loader.py", _SAMPLE_LOADER)
    dataset = {"sample_type": {"__module__": "shards.energon_sample", "__class__": "ConversationSample"},
               "sample_loader": "sample_loader.py:sample_loader", "part_filter": "sample_loader.py:part_filter"}
    _write_text(meta / "dataset.yaml", "# vlmix shards: every turn and every image of each sample\n"
                + yaml.safe_dump(dataset, sort_keys=False))
    crude = {"__module__": "megatron.energon", "__class__": "CrudeWebdataset", "subflavors": dict(SUBFLAVOR)}
    _write_text(meta / "crude.yaml", "# vlmix shards as crude samples: cook with shards.energon_sample.cook_conversation\n"
                + yaml.safe_dump(crude, sort_keys=False))
    return str(meta / "dataset.yaml")


_SAMPLE_LOADER = """\
# Written by vlmix export-energon: loads every turn and every image of a vlmix sample
# (vlmix must be installed where Energon runs: pip install 'vlmix[energon]').
from shards.energon_sample import load_fields as sample_loader, part_filter  # noqa: F401
"""


def blend_metadataset(path: str | Path, weights: dict[str, float], split_part: str = "train") -> Path:
    """An Energon metadataset at ``path`` blending prepared shard folders by weight (folders relative to it)."""
    if not weights or any(not w > 0 for w in weights.values()):
        raise ValueError(f"weights must name at least one shard folder, each above 0: {weights}")
    path = Path(path).resolve()
    blend = []
    for folder, weight in weights.items():
        folder = Path(folder).resolve()
        if not (folder / META / "dataset.yaml").is_file():
            raise FileNotFoundError(f"{folder}: no {META}/dataset.yaml; run vlmix export-energon on it first")
        blend.append({"weight": weight, "path": os.path.relpath(folder, path.parent)})
    meta = {"__module__": "megatron.energon", "__class__": "MetadatasetV2",
            "splits": {split_part: {"blend": blend}}}
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(yaml.safe_dump(meta, sort_keys=False), encoding="utf-8")
    os.replace(temporary, path)
    return path


def _exactly(names: list[str]) -> str:
    """A split pattern (a regular expression Energon matches against shard names) naming just these."""
    return "^(?:" + "|".join(re.escape(name) for name in names) + ")$"


def _write_text(path, text: str) -> None:
    """Write a small file whole: under a temporary name on local disk, one PUT on object storage."""
    if not path.is_local():
        with path.open("w") as f:
            f.write(text)
        return
    local = path.local_path()
    temporary = local.with_name(f".{local.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, local)
