"""The decontamination stage's settings: the ``decontaminate`` section of a mixture config.

.. code-block:: yaml

    decontaminate:
      near_duplicates: {max_distance: 10, confirm_distance: 16}   # pHash distance, confirmed by dHash
      image_distance: 10                         # a training image this close to an evaluation image leaks it
      image_confirm_distance: 16                 # ... and its dHash this close
      ngram: 13                                  # 13 words, or 13 Chinese/Japanese characters
      evaluation_sets:
        - {name: docvqa_val, format: internvl_jsonl, path: /evals/docvqa/val.jsonl, images: /evals/docvqa}
        - {name: chartqa_test, format: parquet, path: "/evals/chartqa/test-*.parquet"}
        - {name: mmbench, format: folder, path: /evals/mmbench/images, questions: /evals/mmbench/q.jsonl}
        - {name: ocrbench, format: webdataset, path: "/evals/ocrbench/{0000..0003}.tar"}
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pipelines._model import ConfigModel

HASH_BITS = 64  # imagehash.phash with hash_size 8


class NearDuplicates(ConfigModel):
    """Near-duplicate images across every source of the mixture; one kept per cluster."""

    enabled: bool = True
    max_distance: int = Field(
        10, ge=0, le=31, description="Hamming distance between 64-bit pHashes at or below which two images are "
        "near-duplicates (measured: resizes and JPEG re-encodes <= 2, 5% crops <= 10 for 95%, distinct "
        "images >= 14)")
    confirm_distance: int | None = Field(
        16, ge=0, le=31, description="the dHash distance at or below which a pHash match stands (a false match "
        "must then happen in two hashes of different construction: at 10^8 images, estimated 1-14 false "
        "neighbours an image by pHash alone, under 0.01 with the dHash; transformed copies lost: 0.5%; "
        "decontam/README.md); null: the pHash alone")
    index: Literal["auto", "exact", "sampled"] = Field(
        "auto", description="which images are compared (decontam/keys.py): exact (distance + 1 disjoint bands, "
        "pigeonhole: no pair missed, comparisons grow as N^2), sampled (random bands, their width and number "
        "the least costly in decontam/keys.py's cost model that find `recall` of the pairs at the distance: "
        "cost ~N^1.2-1.35), auto: exact up to 30,000 images, sampled beyond")
    bands: int | None = Field(
        None, ge=1, le=HASH_BITS, description="exact index: cut the hash into this many bands instead of "
        "distance + 1 (fewer, longer bands compare fewer pairs and miss pairs farther than bands - 1 bits)")
    key_bits: int | None = Field(None, ge=8, le=32, description="sampled index: bits per band (None: the width "
                                 "of least modelled cost, decontam/keys.py: 8 bits at 10^4 images, 18 at 10^8)")
    partitions: int | None = Field(None, ge=1, le=64, description="sampled index: whole random orderings of the "
                                   "bits (None: the fewest bands that find `recall` of the pairs at the distance, "
                                   "the last ordering possibly cut short, at most 256)")
    recall: float = Field(0.8, gt=0, lt=1, description="sampled index: the share of pairs exactly at the "
                          "distance to find (closer pairs: more; measured recall in decontam/README.md)")
    window: int = Field(2048, ge=16, description="a key shared by more images than this (a crowd of similar "
                        "pictures: plain pages, one logo) compares each image with the `window` next to it in "
                        "hash order instead of with all, and the crowd is counted (`crowded_keys`)")
    scope: Literal["image_task_language", "image"] = Field(
        "image_task_language", description="near-duplicates must also share task and language (so a caption and an "
        "OCR sample of one picture, or a translated variant, both stay), or only be near in image")

    @model_validator(mode="after")
    def _layout(self) -> NearDuplicates:
        if self.bands is not None and self.index == "sampled":
            raise ValueError("bands: sets the exact index's bands; the sampled index takes key_bits and partitions")
        if self.index == "exact" and (self.key_bits is not None or self.partitions is not None):
            raise ValueError("key_bits, partitions: set the sampled index; the exact index takes bands")
        return self


class EvaluationSet(ConfigModel):
    """One evaluation set: its images and its questions and answers, in one of four layouts."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    format: Literal["internvl_jsonl", "webdataset", "parquet", "folder"] = Field(
        description="internvl_jsonl: `path` a JSONL file (`image`, `conversations` or `question`/`answer`), "
        "images under `images`; webdataset: `path` tar files (brace ranges and globs), an image and a .json or "
        ".txt per key; parquet: `path` Parquet files (globs), an image column of bytes and text columns; "
        "folder: `path` a folder of images, `questions` a JSONL or JSON file naming each item's image")
    path: str
    images: str | None = Field(None, description="internvl_jsonl: the folder image paths are relative to "
                               "(default: the JSONL's folder)")
    questions: str | None = Field(None, description="folder: the questions file (JSONL or a JSON list); "
                                  "none: the images only")
    image_column: str = Field("image", description="parquet: the image column (bytes, {bytes: ...}, or a list)")
    text_fields: list[str] = Field(
        default_factory=lambda: ["question", "answer", "answers", "conversations", "options", "hint"],
        description="fields holding the item's text (a string, a list of strings, or conversation turns); "
        "those an item lacks are skipped")
    id_field: str = Field("id", description="the field naming an item (else its position, or its image's name)")


class DecontamSettings(ConfigModel):
    """What the decontamination stage removes before mixing."""

    near_duplicates: NearDuplicates = Field(default_factory=NearDuplicates)
    evaluation_sets: list[EvaluationSet] = Field(default_factory=list)
    image_distance: int = Field(10, ge=0, le=31, description="a training image within this Hamming distance "
                                "of an evaluation image is contamination")
    image_confirm_distance: int | None = Field(16, ge=0, le=31, description="... and its dHash within this "
                                               "distance (null: the pHash alone), as near_duplicates.confirm_distance")
    ngram: int = Field(13, ge=3, description="a training text sharing this many consecutive words (Chinese, "
                       "Japanese: characters) with an evaluation question or answer is contamination")

    @model_validator(mode="after")
    def _names(self) -> DecontamSettings:
        names = [s.name for s in self.evaluation_sets]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"evaluation_sets: names must be unique; repeated: {repeated}")
        return self

    @property
    def distance(self) -> int:
        """The larger of the two distances the index must find."""
        return max(self.near_duplicates.max_distance if self.near_duplicates.enabled else 0,
                   self.image_distance if self.evaluation_sets else 0)

    def masks(self, images: int):
        """The index's bands (decontam/keys.py) for a run of about ``images`` images."""
        from decontam.keys import index_masks

        near = self.near_duplicates
        return index_masks(near.index, self.distance, images, near.bands, near.key_bits, near.partitions,
                           near.recall)
