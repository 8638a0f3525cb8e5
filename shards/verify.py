"""``vlmix verify DIR``: read every shard and check it against the schema and the manifest.

Checks, per shard: it exists, its size and sha256 are the manifest's, it reads to the end as a
tar, and it holds the manifest's number of samples. Per sample: exactly one ``.json`` and one
images as the JSON's ``meta.images`` lists them; the JSON passes :class:`shards.schema.SampleRecord` and its ``id`` is the key;
the image's sha256 is ``meta.image_sha256``; the image decodes and has the stated size. Then the
counts per task, source and language must equal the manifest's, and no unlisted tar may be there.
Every sample shape is checked so: one image, several (each ``<image>`` placeholder, in human turns
only, has its member), none (text only: no member but the JSON), and multi-turn conversations;
:attr:`VerifyResult.shapes` counts them.

The directory is a local folder or an fsspec URI (``s3://bucket/run/shards``); each shard is read
once, its sha256 computed while its samples are checked.
"""

from __future__ import annotations

import hashlib
import io
import posixpath
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image
from pydantic import ValidationError

from pipelines.storage import Storage
from shards.location import open_directory
from shards.manifest import read_manifest
from shards.reader import ShardReader
from shards.schema import check_sample


@dataclass
class VerifyResult:
    shards: int = 0
    samples: int = 0
    problems: list[str] = field(default_factory=list)
    shapes: Counter = field(default_factory=Counter)  # text_only / single_image / multi_image, multi_turn

    @property
    def ok(self) -> bool:
        return not self.problems


class _Enough(Exception):
    """Stop reading: the requested number of problems has been found."""


def verify(
    directory: str | Path | Storage,
    max_problems: int = 20,
    decode_images: bool = True,
    storage_options: dict[str, Any] | None = None,
) -> VerifyResult:
    """Check a shard directory; the result lists up to ``max_problems`` problems, first found first.

    ``storage_options`` are fsspec options for a URI (on S3 the endpoint and credentials otherwise
    come from the environment: ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``...).
    """
    storage = open_directory(directory, storage_options)
    result = VerifyResult()

    def problem(text: str) -> None:
        result.problems.append(text)
        if len(result.problems) >= max_problems:
            raise _Enough

    try:
        manifest = read_manifest(storage)
    except (OSError, ValueError) as err:
        result.problems.append(str(err))
        return result
    counts = {"tasks": Counter(), "sources": Counter(), "languages": Counter()}
    try:
        listed = {entry["name"] for entry in manifest["shards"]}
        present = {posixpath.basename(path) for path in storage.glob(storage.path("*.tar"))}
        for extra in sorted(present - listed):
            problem(f"{extra}: a shard not listed in the manifest")
        for entry in manifest["shards"]:
            present_entry = entry["name"] in present
            _verify_shard(storage, present_entry, entry, counts, decode_images, problem, result)
        for group, counter in counts.items():
            for name, stats in manifest[group].items():
                if counter[name] != stats["samples"]:
                    problem(
                        f"{group} {name!r}: manifest says {stats['samples']} samples, shards hold {counter[name]}"
                    )
            for name in sorted(set(counter) - set(manifest[group])):
                problem(f"{group} {name!r}: {counter[name]} samples in the shards, none in the manifest")
        if result.samples != manifest["total_samples"]:
            problem(f"manifest says {manifest['total_samples']} samples in all, shards hold {result.samples}")
    except _Enough:
        pass
    return result


def _verify_shard(
    storage: Storage, present: bool, entry: dict, counts, decode_images: bool, problem, result: VerifyResult
) -> None:
    name = entry["name"]
    if not present:
        problem(f"{name}: missing")
        return
    result.shards += 1
    path = storage.path(name)
    size = storage.fs.size(path)
    if size != entry["bytes"]:
        problem(f"{name}: {size} bytes, manifest says {entry['bytes']}")
    samples = 0
    with ShardReader(path, storage.fs) as reader:
        try:
            for key, members in reader:
                samples += 1
                result.samples += 1
                for text in _sample_problems(key, members, counts, decode_images, result.shapes):
                    problem(f"{name}: sample {key}: {text}")
            readable = True
        except _Enough:
            raise
        except Exception as err:  # a damaged tar: tarfile.ReadError, EOFError, ...
            problem(f"{name}: unreadable after {samples} samples ({type(err).__name__}: {err})")
            readable = False
        # Hashed during the same read; a size mismatch already says the file changed.
        if size == entry["bytes"] and reader.sha256() != entry["sha256"]:
            problem(f"{name}: sha256 differs from the manifest's (the file was changed)")
    if readable and samples != entry["samples"]:
        problem(f"{name}: {samples} samples, manifest says {entry['samples']}")


def _sample_problems(key: str, members: dict[str, bytes], counts, decode_images: bool, shapes: Counter) -> list[str]:
    if "json" not in members:
        return [f"members {sorted(members)}: no json"]
    try:
        record = check_sample(members["json"])
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "<record>"
        return [f"JSON fails the schema at {where}: {first['msg']}"]
    expected = {"json", *(image.member for image in record.meta.images)}
    if set(members) != expected:
        return [f"members {sorted(members)}: the JSON lists {sorted(expected)}"]
    counts["tasks"][record.task] += 1
    counts["sources"][record.source] += 1
    counts["languages"][record.language] += 1
    n_images = len(record.meta.images)
    shapes[("text_only", "single_image")[n_images] if n_images < 2 else "multi_image"] += 1
    if len(record.conversations) > 2:
        shapes["multi_turn"] += 1
    found = []
    if any("<image>" in turn.value for turn in record.conversations if turn.speaker == "gpt"):
        found.append("an <image> placeholder in a gpt turn (images belong to human turns)")
    if record.id != key:
        found.append(f"JSON id {record.id!r} is not the key")
    for index, entry in enumerate(record.meta.images):
        image = members[entry.member]
        if hashlib.sha256(image).hexdigest() != entry.sha256:
            found.append(f"image {entry.member} bytes differ from its sha256")
        if index == 0 and len(record.meta.images) == 1 and entry.sha256 != record.meta.image_sha256:
            found.append("meta.image_sha256 is not the image's sha256")
        if decode_images:
            found += _decode_problems(entry.member, image, (entry.width, entry.height))
    return found


def _decode_problems(member: str, image: bytes, stated: tuple[int, int]) -> list[str]:
    try:
        with Image.open(io.BytesIO(image)) as decoded:
            if decoded.size != stated:
                return [f"image {member} is {decoded.size[0]}x{decoded.size[1]}, JSON says {stated[0]}x{stated[1]}"]
            decoded.draft("RGB", (max(1, decoded.size[0] // 8), max(1, decoded.size[1] // 8)))
            decoded.load()
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError... on bad data
        return [f"image {member} does not decode ({type(err).__name__}: {err})"]
    return []
