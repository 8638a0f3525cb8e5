"""Reading an evaluation set: each item's images (bytes) and texts, whatever layout the set comes in.

Four layouts (:class:`~decontam.settings.EvaluationSet`): InternVL's JSONL (``image`` relative to a
folder, ``conversations`` or ``question``/``answer``), WebDataset tars (members grouped by key: the
image, and a ``.json`` or ``.txt``), Hub Parquet (an image column of bytes, text columns), and a
folder of images with a questions file. Paths are local or fsspec URIs. A record that cannot be
read fails with its file and line; an image that does not decode is counted, not fatal.
"""

from __future__ import annotations

import json
import posixpath
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field

import fsspec
import pyarrow.parquet as pq
from braceexpand import braceexpand

from decontam.settings import EvaluationSet
from decontam.text import texts_of

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff")


@dataclass
class EvalItem:
    item: str  # the item's id within its set (what contamination.parquet names)
    images: list[bytes] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)


def read_items(spec: EvaluationSet) -> Iterator[EvalItem]:
    """Every item of the evaluation set ``spec``."""
    readers = {"internvl_jsonl": _internvl, "webdataset": _webdataset, "parquet": _parquet, "folder": _folder}
    return readers[spec.format](spec)


def versions(spec: EvaluationSet) -> list[tuple[str, int, str]]:
    """(path, size, modification time or ETag) of the files the set's items come from (the annotation
    files; a folder's images when it has no questions file): a rerun with edited files starts afresh."""
    paths = [spec.questions] if spec.questions else []
    if spec.format != "folder":
        paths += _files(spec.path)
    elif not spec.questions:
        fs, root = fsspec.core.url_to_fs(spec.path)
        paths += sorted(fs.find(root))
    out = []
    for path in paths:
        fs, stripped = fsspec.core.url_to_fs(path)
        info = fs.info(stripped)
        out.append((path, int(info.get("size") or 0), str(info.get("ETag") or info.get("mtime") or
                                                           info.get("LastModified") or "")))
    return out


def _files(pattern: str) -> list[str]:
    """Every file a path names: brace ranges expanded, globs matched; none is an error naming it."""
    found: list[str] = []
    for path in braceexpand(pattern):
        fs, stripped = fsspec.core.url_to_fs(path)
        matched = sorted(fs.glob(stripped)) if any(c in path for c in "*?[") else [stripped] * fs.exists(stripped)
        found += [fs.unstrip_protocol(p) if "://" in path else p for p in matched]
    if not found:
        raise FileNotFoundError(f"evaluation set: no file matches {pattern!r}")
    return found


def _read(path: str) -> bytes:
    with fsspec.open(path, "rb") as f:
        return f.read()


def _texts(record: dict, spec: EvaluationSet) -> list[str]:
    return [t for name in spec.text_fields for t in texts_of(record.get(name))]


def _records(path: str) -> Iterator[tuple[int, dict]]:
    """The records of a JSONL file, or of a JSON file holding a list of them, with their line or position."""
    data = _read(path).decode("utf-8")
    if path.endswith(".json"):
        records = json.loads(data)
        if not isinstance(records, list):
            raise ValueError(f"{path}: expected a JSON list of records, got {type(records).__name__}")
        yield from enumerate(records, 1)
        return
    for line_number, line in enumerate(data.splitlines(), 1):
        if line.strip():
            try:
                yield line_number, json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}, line {line_number}: not JSON ({err})") from None


def _image_names(value) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def _internvl(spec: EvaluationSet) -> Iterator[EvalItem]:
    for path in _files(spec.path):
        root = spec.images or posixpath.dirname(path)
        for line, record in _records(path):
            if not isinstance(record, dict):
                raise ValueError(f"{path}, line {line}: expected an object, got {type(record).__name__}")
            images = [_read(posixpath.join(root, name)) for name in _image_names(record.get("image"))]
            yield EvalItem(str(record.get(spec.id_field, record.get("question_id", line))), images,
                           _texts(record, spec))


def _folder(spec: EvaluationSet) -> Iterator[EvalItem]:
    if spec.questions is None:
        fs, root = fsspec.core.url_to_fs(spec.path)
        for path in sorted(fs.find(root)):
            if path.rsplit(".", 1)[-1].lower() in IMAGE_EXTENSIONS:
                yield EvalItem(posixpath.relpath(path, root), [fs.cat_file(path)])
        return
    for line, record in _records(spec.questions):
        if not isinstance(record, dict):
            raise ValueError(f"{spec.questions}, line {line}: expected an object, got {type(record).__name__}")
        names = _image_names(record.get("image"))
        images = [_read(posixpath.join(spec.path, name)) for name in names]
        default = names[0] if names else line
        yield EvalItem(str(record.get(spec.id_field, record.get("question_id", default))), images, _texts(record, spec))


def _webdataset(spec: EvaluationSet) -> Iterator[EvalItem]:
    for path in _files(spec.path):
        with fsspec.open(path, "rb") as f, tarfile.open(fileobj=f, mode="r|*") as tar:
            key, item = None, None
            for member in tar:
                if not member.isfile():
                    continue
                name = posixpath.basename(member.name)
                base, _, extension = name.partition(".")
                prefix = posixpath.join(posixpath.dirname(member.name), base)
                if prefix != key:
                    if item is not None and (item.images or item.texts):
                        yield item
                    key, item = prefix, EvalItem(prefix)
                data = tar.extractfile(member).read()
                extension = extension.lower()
                if extension.rsplit(".", 1)[-1] in IMAGE_EXTENSIONS:
                    item.images.append(data)
                elif extension == "json":
                    try:
                        record = json.loads(data)
                    except json.JSONDecodeError as err:
                        raise ValueError(f"{path}: member {member.name} is not JSON ({err})") from None
                    item.texts += _texts(record, spec) if isinstance(record, dict) else texts_of(record)
                elif extension in ("txt", "question", "answer"):
                    item.texts.append(data.decode("utf-8", "replace"))
            if item is not None and (item.images or item.texts):
                yield item


def _parquet(spec: EvaluationSet) -> Iterator[EvalItem]:
    for path in _files(spec.path):
        with fsspec.open(path, "rb") as f:
            parquet = pq.ParquetFile(f)
            names = parquet.schema_arrow.names
            if spec.image_column not in names:
                raise ValueError(f"{path}: no image column {spec.image_column!r} (columns: {names}); set image_column")
            columns = [c for c in [spec.image_column, spec.id_field, *spec.text_fields] if c in names]
            position = 0
            for batch in parquet.iter_batches(batch_size=256, columns=list(dict.fromkeys(columns))):
                for record in batch.to_pylist():
                    position += 1
                    name = record.get(spec.id_field)
                    item = f"{posixpath.basename(path)}:{position}" if name is None else str(name)
                    yield EvalItem(item, _image_bytes(record.get(spec.image_column)), _texts(record, spec))


def _image_bytes(value) -> list[bytes]:
    """Hub image columns: bytes, ``{"bytes": ..., "path": ...}``, or a list of either."""
    if value is None:
        return []
    if isinstance(value, bytes):
        return [value]
    if isinstance(value, dict):
        return [value["bytes"]] if value.get("bytes") else []
    if isinstance(value, list):
        return [data for v in value for data in _image_bytes(v)]
    raise ValueError(f"image column: expected bytes or {{bytes: ...}}, got {type(value).__name__}")
