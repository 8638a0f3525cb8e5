"""Presets of Table 1b's remaining question-answer sets: VisualDialog, KVQA and ViQuAE.

As in :mod:`tasks.published.finetune_vqa`, each reads its publisher's files as they unpack, an image's
questions become one multi-turn conversation (``per_question: true`` gives one per question), a
question without an answer is left out (``object:empty_answer``) and a missing image drops the
image's questions (``image_missing``).

Two rows of the table have no preset here, on purpose:

- **GeoQA+** (SCNU203/GeoQA-Plus) is released as Python pickles (``train.pk``), and vlmix does not
  unpickle downloaded files (loading one runs whatever code it names). Its publisher offers no JSON
  or Parquet release; the widely used copy is InternVL's own conversion, ``geoqa+.jsonl`` in
  OpenGVLab/InternVL-Chat-V1-2-SFT-Data on the Hub, InternVL JSONL that ``kind: internvl_jsonl``
  reads as it ships (configs/finetune.yaml does).
- **Laion-GPT4V** (laion/gpt4v-dataset on the Hub) is a URL list, Parquet of ``{link, caption,
  message_id, timestamp}`` per its card: a ``url_list`` source (``columns: {url: link, caption:
  caption}``) whose images the download stage fetches; the GPT-4V description is the caption.
"""

from __future__ import annotations

from typing import Any

from tasks.published.finetune_rules import SHORT_ANSWER, register_all
from tasks.published.presets import Preset

KVQA_TRAIN = 1  # dataset.json's `split` value for a training question (2: validation, 3: test)


def _question(text: Any) -> str:
    """VisualDialog's questions are lower case without their question mark: the mark is put back."""
    text = " ".join(str(text or "").split())
    return text + "?" if text and text[-1] not in "?.!" else text


def _visual_dialog(record: Any, extras: dict) -> tuple[Any, dict] | None:
    """A dialog whose rounds name their question and answer by index (resolved by ``lookups``)."""
    if not isinstance(record, dict) or "image_id" not in record or not isinstance(record.get("dialog"), list):
        return None
    rounds = [{"question": _question(r.get("question")), "answer": r.get("answer")}
              for r in record["dialog"] if isinstance(r, dict)]
    return {**record, "coco_id": f"{int(record['image_id']):012d}", "rounds": rounds}, extras


def _kvqa(split_index: int):
    """KVQA: parallel ``Questions``/``Answers`` lists per image; ``split`` gives each of the five
    published splits' part (1 train); a record is kept where split ``split_index`` says train."""

    def adapt(record: Any, extras: dict) -> tuple[Any, dict] | None:
        if not isinstance(record, dict):
            return None
        questions, answers, splits = record.get("Questions"), record.get("Answers"), record.get("split")
        if not isinstance(questions, list) or not isinstance(answers, list) or len(questions) != len(answers):
            return None
        part = splits[split_index] if isinstance(splits, list) and len(splits) > split_index else splits
        qa = [{"question": q, "answer": a} for q, a in zip(questions, answers, strict=True)]
        return {**record, "qa": qa, "train": part == KVQA_TRAIN}, extras

    return adapt


PRESETS = [
    Preset("visual_dialog", {
        "reader": "json", "records": "data.dialogs",
        "lookups": {"dialog.*.question": "data.questions", "dialog.*.answer": "data.answers"},
        "key": "image_id", "image": ["train2014/COCO_train2014_{coco_id}.jpg", "val2014/COCO_val2014_{coco_id}.jpg"],
        "qa": "rounds", "question": "question", "answers": "answer", "build": "vqa",
    }, adapt=_visual_dialog, about="VisualDialog v1.0 (visualdialog.org/data; the publisher's reader, VisDialJsonReader in "
       "batra-mlp-lab/visdial-challenge-starter-pytorch): visdial_1.0_train.json, {version, "
       "split, data: {dialogs: [{image_id, caption, dialog: [{question, answer, answer_options, gt_index}] x10}], "
       "questions: [...], answers: [...]}}, where each round's question and answer are indices into data.questions "
       "and data.answers (format `lookups`); the ten rounds are the conversation's turns, in order, each answered "
       "with its ground-truth answer; the v1.0 train images are COCO 2014's train and val images, looked up under "
       "train2014/ then val2014/",
       files={"visual_dialog/visdial_1.0_train.json": "dialogs (`locations`)",
              "visual_dialog/train2014/": "COCO 2014 train images (`image_root`: visual_dialog/)",
              "visual_dialog/val2014/": "COCO 2014 val images, beside them"}),
    Preset("kvqa", {
        "reader": "json", "where": {"train": [True]}, "key": "$key", "image": "imgPath", "qa": "qa",
        "question": "question", "answers": "answer", "build": "vqa", "question_suffix": "\n" + SHORT_ANSWER,
    }, adapt=_kvqa(0), about="KVQA (malllabiisc.github.io/resources/kvqa, the publisher's loading script "
       "read_dataset.py): dataset.json, an object keyed by image id of {imgPath ('KVQAimgs/<id>.jpg'), "
       "NamedEntities, Qids, wikiCap, Questions, ParaQuestions, Answers (parallel to Questions; some numbers), "
       "'Type of Question', split (five values, one per published split: 1 train, 2 val, 3 test)}; the "
       "questions of images the first split trains on, answered by their one answer (paraphrases left out)",
       files={"kvqa/dataset.json": "questions (`locations`)", "kvqa/KVQAimgs/": "images (`image_root`: kvqa/)"}),
    Preset("viquae", {
        "reader": "jsonl", "group_by": "image", "key": "image", "image": "image", "question": "input",
        "answers": "output.original_answer", "build": "vqa",
    }, about="ViQuAE (PaulLerner/ViQuAE; PaulLerner/viquae_dataset on the Hub): train.jsonl, KILT-like JSON "
       "Lines of {id, input (the question), output: {original_answer, answer, normalized_aliases, ...}, image "
       "(a file name), url, wikidata_id, kilt_id, meta, original_question}; answered with original_answer; "
       "the images from PaulLerner/viquae_images (images.tar.gz unpacks as images/<image>)",
       files={"viquae/train.jsonl": "questions (`locations`)", "viquae/images/": "images.tar.gz unpacked"}),
]

register_all(PRESETS)
