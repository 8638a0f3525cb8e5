"""Samples that arrive as conversations: InternVL JSONL, WebDataset shards, and the OCR stage's.

**InternVL JSONL / WebDataset.** Records in the public InternVL format (``conversations`` of
alternating ``human``/``gpt`` turns, ``image`` a path, a list of paths, or absent for a text-only
record) are kept whole: every turn, every image, in order. A single image without a placeholder gets
``<image>\\n`` in front of the first turn, as InternVL's loader does; a placeholder count that does
not match the images is counted out (``image_placeholder_mismatch``). Each record becomes a
:class:`~tasks.draft.Draft` with one text, ``conversations``: its turns as JSON, which the
translation stage translates whole (every turn; code, formulas, URLs, markup and numbers kept; one
verdict per sample). A translated variant is the conversation that came back, once it has the
source's speakers, turns and markup (:func:`tasks.markup.conversation_change`).

(The OCR stage's conversations are joined with their raw images by :mod:`pipelines.layout.conversations`.)
"""

from __future__ import annotations

import json
import posixpath
import re
import tarfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator

from pipelines.layout.images import UnitImages
from pipelines.layout.raw import OTHER_IMAGE_EXTENSIONS
from pipelines.layout.task_table import IMAGE_FORMATS, PLACEHOLDER, ImageRef, Picture, conversation_problem
from pipelines.storage import Storage
from tasks.draft import Draft
from tasks.local import local_image
from tasks.markup import CONVERSATIONS

_IMAGE_MEMBER = re.compile(r"^(?:(\d+)\.)?([a-z0-9]+)$")


def normalised_turns(turns, images: int, drops: Counter) -> list[dict[str, str]] | None:
    """``{from, value}`` turns with the placeholders InternVL expects, or None (counted)."""
    if not isinstance(turns, list) or not all(isinstance(t, dict) for t in turns):
        drops["bad_conversation"] += 1
        return None
    turns = [{"from": t.get("from"), "value": t.get("value")} for t in turns]
    if turns and all(isinstance(t["value"], str) for t in turns):
        placeholders = sum(t["value"].count(PLACEHOLDER) for t in turns)
        if images and placeholders == 0:  # InternVL's loader puts the images before the first turn
            turns[0]["value"] = PLACEHOLDER + "\n" + "".join(f"{PLACEHOLDER}\n" for _ in range(images - 1)) + turns[0]["value"]
        elif images == 1 and placeholders == 1 and not turns[0]["value"].startswith(PLACEHOLDER + "\n"):
            first = turns[0]["value"]
            if PLACEHOLDER in first:
                turns[0]["value"] = f"{PLACEHOLDER}\n" + first.replace(PLACEHOLDER + "\n", "").replace(PLACEHOLDER, "").strip()
    problem = conversation_problem(turns, images)
    if problem:
        drops[problem] += 1
        return None
    return turns


def render_conversation(texts: dict[str, str], language, prompts, identity) -> list[dict[str, str]]:
    """The turns of ``texts["conversations"]`` (JSON), as they are (prompts play no part)."""
    return [{"from": turn["from"], "value": turn["value"]} for turn in json.loads(texts[CONVERSATIONS])]


def conversation_draft(key: str, turns: list[dict], pictures: list[Picture], language: str, url: str = "") -> Draft:
    """The sample's conversation as one text, translated whole (:mod:`tasks.translated`)."""
    texts = {CONVERSATIONS: json.dumps(turns, ensure_ascii=False)}
    return Draft(key, pictures, texts, render_conversation, url, language)


def _language(turns: list[dict], language: str, detect: Callable[[str], str] | None) -> str:
    if language != "auto" or detect is None:
        return language
    return detect(" ".join(turn["value"] for turn in turns if turn["from"] == "gpt"))


def internvl_drafts(
    storage: Storage, image_root: str | None, records: Iterable[tuple[int, dict]], language: str,
    images: UnitImages, drops: Counter, detect: Callable[[str], str] | None = None, strip: int = 0,
) -> Iterator[Draft]:
    """Drafts from InternVL JSONL records (``(byte offset, record)``), every image read below ``image_root``."""
    seen: set[str] = set()
    for offset, record in records:
        names = record.get("image")
        names = [] if names is None else [names] if isinstance(names, str) else names
        if not isinstance(names, list):
            drops["bad_image_field"] += 1
            continue
        if names and image_root is None:
            drops["image_root_missing"] += 1
            continue
        pictures = [local_image(storage, image_root, name, images, drops, strip) for name in names]
        if any(picture is None for picture in pictures):
            continue
        turns = normalised_turns(record.get("conversations"), len(pictures), drops)
        if turns is None:
            continue
        key = str(record["id"]) if record.get("id") not in (None, "") else f"o{offset}"
        key = key if key not in seen else f"{key}-o{offset}"
        seen.add(key)
        yield conversation_draft(key, turns, pictures, _language(turns, language, detect))


def webdataset_drafts(
    storage: Storage, tar_path: str, language: str, images: UnitImages, drops: Counter,
    detect: Callable[[str], str] | None = None,
) -> Iterator[Draft]:
    """Drafts from one WebDataset tar of ``<key>.json`` (InternVL's ``conversations``) and images
    (``<key>.jpg``, then ``<key>.1.jpg``, ``<key>.2.png``, ... in that order)."""
    def finish(key: str, parts: dict) -> Iterator[Draft]:
        if "json" not in parts:
            drops["missing_json"] += 1
            return
        try:
            record = json.loads(parts["json"])
        except (json.JSONDecodeError, UnicodeDecodeError):
            drops["invalid_json"] += 1
            return
        pictures = []
        for _, ref, data in sorted(parts["images"]):
            picture = images.picture(ref, data, drops)
            if picture is None:
                return
            pictures.append(picture)
        turns = normalised_turns(record.get("conversations") if isinstance(record, dict) else None,
                                 len(pictures), drops)
        if turns is not None:
            url = str(record.get("url") or "")
            yield conversation_draft(key, turns, pictures, _language(turns, language, detect), url)

    with storage.fs.open(tar_path, "rb") as f, tarfile.open(fileobj=f, mode="r|") as tar:
        key, parts = None, {"images": []}
        for member in tar:
            if not member.isfile():
                continue
            base = posixpath.basename(member.name)
            member_key, _, extension = base.partition(".")
            if key is not None and member_key != key:
                yield from finish(key, parts)
                parts = {"images": []}
            key = member_key
            match = _IMAGE_MEMBER.match(extension.lower())
            if extension == "json":
                parts["json"] = tar.extractfile(member).read()
            elif match and (match.group(2) in IMAGE_FORMATS or match.group(2) in OTHER_IMAGE_EXTENSIONS):
                order = int(match.group(1) or 0)
                ref = ImageRef(tar_path, member.offset_data, member.size)
                data = tar.extractfile(member).read() if images.reads_images else b""
                parts["images"].append((order, ref, data))
        if key is not None:
            yield from finish(key, parts)
