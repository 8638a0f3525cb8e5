"""vlmix samples as Megatron-Energon reads them: the sample type, its sample loader and cooker, a task encoder.

In a folder prepared by :func:`shards.energon.export_energon`, ``dataset.yaml`` loads each sample
as a :class:`ConversationSample` (every turn, every image in order, none for a text-only sample)
through :func:`load_fields`; ``crude.yaml`` gives the decoded members as a dict (``json``, ``jpg``,
``1.png``, ...) for a task encoder's cooker, :func:`cook_conversation` or your own:

>>> from megatron.energon import WorkerConfig, get_loader, get_train_dataset  # doctest: +SKIP
>>> from shards.energon_sample import ConversationTaskEncoder
>>> dataset = get_train_dataset("data/shards", batch_size=8, shuffle_buffer_size=100,
...     max_samples_per_sequence=100, worker_config=WorkerConfig.default_worker_config(),
...     task_encoder=ConversationTaskEncoder())  # doctest: +SKIP

Your own task encoder encodes :class:`ConversationSample` as its model needs; reading
``crude.yaml`` (``dataset_config="crude.yaml"``), it lists ``Cooker(cook_conversation,
has_subflavors=SUBFLAVOR)`` in its ``cookers``.
"""

from __future__ import annotations

from typing import Any

from megatron.energon import Cooker, DefaultTaskEncoder, Sample, basic_sample_keys, edataclass, stateless

from shards.energon import SUBFLAVOR


@edataclass
class ConversationSample(Sample):
    """One vlmix sample: every turn and every image, in the order the placeholders name them."""

    #: the mixture's sample id (``<dataset>-<key>``, ``-r<k>`` for a repeat)
    id: str
    #: dataset, task and language of the sample
    source: str
    task: str
    language: str
    #: ``[{"from": "human" | "gpt", "value": ...}, ...]``; one ``<image>`` per image
    conversations: list[dict[str, str]]
    #: the images, decoded as the loader's ``image_decode`` says (tensors by default); [] for text only
    images: list[Any]
    #: the rest of the sample's JSON (``meta``: source key, url, per-image sizes and hashes, repeat)
    meta: dict[str, Any]


def load_fields(raw: dict) -> dict[str, Any]:
    """The :class:`ConversationSample` fields of a decoded vlmix sample (``dataset.yaml``'s sample loader).

    A member the JSON names but the tar lacks raises an error naming the sample and the member."""
    record = raw.get("json")
    if not isinstance(record, dict):
        raise ValueError(f"sample {raw.get('__key__')!r}: no decoded 'json' member (members: {_members(raw)})")
    images = []
    for entry in record["meta"]["images"]:
        if entry["member"] not in raw:
            raise ValueError(f"sample {raw.get('__key__')!r}: image member {entry['member']!r} is missing "
                             f"(members: {_members(raw)})")
        images.append(raw[entry["member"]])
    return {"id": record["id"], "source": record["source"], "task": record["task"],
            "language": record["language"], "conversations": record["conversations"], "images": images,
            "meta": record["meta"]}


def part_filter(part: str) -> bool:
    """Every member of a sample is read: its JSON and all its images."""
    return True


@stateless
def cook_conversation(raw: dict) -> ConversationSample:
    """A crude vlmix sample (``crude.yaml``) to a :class:`ConversationSample`."""
    return ConversationSample(**basic_sample_keys(raw), **load_fields(raw))


class ConversationTaskEncoder(DefaultTaskEncoder):
    """Passes vlmix samples on as they are, batches as lists of samples; cooks them from ``crude.yaml``."""

    cookers = [Cooker(cook_conversation, has_subflavors=SUBFLAVOR)]

    def batch(self, samples: list[ConversationSample]) -> list[ConversationSample]:
        return samples


def _members(raw: dict) -> list[str]:
    return sorted(key for key in raw if not key.startswith("__"))


__all__ = ["SUBFLAVOR", "ConversationSample", "ConversationTaskEncoder", "cook_conversation", "load_fields",
           "part_filter"]
