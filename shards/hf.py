"""Reading the shards with Hugging Face ``datasets``.

``datasets.load_dataset("webdataset", ...)`` infers its columns from the first five samples. A
mixture whose first samples are all JPEG would then lose the PNG images further on, so pass the
full schema of our samples instead:

>>> import datasets
>>> from shards.hf import features
>>> ds = datasets.load_dataset("webdataset", data_files={"train": tars}, split="train", features=features())  # doctest: +SKIP

Each row has ``jpg``, ``png`` or ``webp`` set for its first image (the others ``None``; further
images of a multi-image sample are not columns here), ``json`` as a dict, ``__key__``.
"""

from __future__ import annotations

from pipelines._imports import require


def features():
    """The ``datasets.Features`` of a vlmix shard sample (see :mod:`shards.schema`)."""
    datasets = require("datasets", "mix")
    text = datasets.Value("string")
    integer = datasets.Value("int64")
    record = {
        "id": text,
        "source": text,
        "task": text,
        "language": text,
        "width": integer,
        "height": integer,
        "conversations": datasets.List({"from": text, "value": text}),
        "meta": {
            "source_key": text,
            "url": text,
            "image_sha256": text,
            "images": datasets.List({"member": text, "width": integer, "height": integer, "sha256": text}),
            "repeat": integer,
            "original_language": text,
            "original_text": text,
        },
    }
    return datasets.Features(
        {"jpg": datasets.Image(), "png": datasets.Image(), "webp": datasets.Image(), "json": record,
         "__key__": text, "__url__": text}
    )
