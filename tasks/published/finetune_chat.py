"""Presets of Table 1b's conversation and text-only groups: LLaVA-style files, ShareGPT, OpenHermes,
Alpaca-GPT4 and COIG-CQIA.

All become ``chat`` conversations (:mod:`tasks.published.finetune_builders`): the publisher's turns
kept whole, speaker names mapped onto InternVL's (``human``/``user``, ``gpt``/``assistant``/
``chatgpt``/``bing``, ``system``), the turns before the first question left out (ShareGPT has
conversations that open with the assistant), a system prompt put in front of the first question,
and a conversation that cannot be repaired dropped by its reason (``bad_conversation``,
``empty_conversation``, ``empty_question``, ``empty_answer``). A record without an image is a
text-only sample; ``<image>`` anywhere in the first question is moved before it, as InternVL's
loader expects. Alpaca-style records (``instruction``/``input``/``output``) become one exchange, the
input below the instruction.
"""

from __future__ import annotations

from typing import Any

from tasks.published.finetune_rules import register_all
from tasks.published.presets import Preset


def _llava(record: Any, extras: dict) -> tuple[Any, dict] | None:
    """LLaVA records: ``image`` absent on text-only ones; ``id`` absent on some (the ordinal then)."""
    if not isinstance(record, dict):
        return None
    return {**record, "image": record.get("image") or None, "id": str(record.get("id") or extras["$key"])}, extras


def _instruction(record: Any, extras: dict) -> tuple[Any, dict] | None:
    """``instruction``, ``input``, ``output`` as a question and its answer (empty ones counted by ``chat``)."""
    if not isinstance(record, dict):
        return None
    instruction = str(record.get("instruction") or "").strip()
    given = str(record.get("input") or "").strip()
    question = f"{instruction}\n\n{given}" if instruction and given else instruction
    turns = [{"from": "human", "value": question}, {"from": "gpt", "value": str(record.get("output") or "")}]
    return {**record, "conversations": turns}, extras


def _cauldron(record: Any, extras: dict) -> tuple[Any, dict] | None:
    """The Cauldron: ``texts`` [{user, assistant}] as turns about the row's one embedded image."""
    if not isinstance(record, dict) or not isinstance(record.get("texts"), list):
        return None
    images = record.get("images") or []
    if len(images) != 1:
        return None  # rows of several images (nlvr2, ...) are not read
    turns = []
    for text in record["texts"]:
        if isinstance(text, dict):
            turns += [{"from": "human", "value": str(text.get("user") or "")},
                      {"from": "gpt", "value": str(text.get("assistant") or "")}]
    return {**record, "image": images[0], "conversations": turns}, extras


def _cauldron_preset(name: str, subset: str, about: str) -> Preset:
    return Preset(name, {"reader": "parquet", "key": "$key", "image": "image", "conversations": "conversations",
                         "build": "chat"}, adapt=_cauldron, about=about + (
        f"; read from HuggingFaceM4/the_cauldron's {subset} subset ({subset}/train-*.parquet: images "
        "[{bytes, path}] embedded, texts [{user, assistant, source}]); rows with several images are "
        "counted unreadable_record"), files={f"the_cauldron/{subset}/train-*.parquet": "rows, images inside"})


DETAILED_OCR_PROMPT = "Describe the image in detail, and transcribe the text in it with where it is."


def _textocr_gpt4v(record: Any, extras: dict) -> tuple[Any, dict] | None:
    """TextOCR-GPT4V: GPT-4V's description of a TextOCR image (the full ``caption``) answers one request."""
    if not isinstance(record, dict):
        return None
    turns = [{"from": "human", "value": DETAILED_OCR_PROMPT}, {"from": "gpt", "value": str(record.get("caption") or "")}]
    return {**record, "conversations": turns}, extras


def _wikipedia(record: Any, extras: dict) -> tuple[Any, dict] | None:
    """A Wikipedia article's lead (its text up to the first blank line) answers a request about its title."""
    if not isinstance(record, dict):
        return None
    title, text = str(record.get("title") or "").strip(), str(record.get("text") or "").strip()
    lead = text.split("\n\n", 1)[0].strip()
    turns = [{"from": "human", "value": f"Tell me about {title}." if title else ""}, {"from": "gpt", "value": lead}]
    return {**record, "conversations": turns}, extras


_LLAVA_FORMAT = {"reader": "json", "key": "id", "image": "image", "conversations": "conversations", "build": "chat"}


def _llava_preset(name: str, file: str, about: str, images: str) -> Preset:
    return Preset(name, dict(_LLAVA_FORMAT), adapt=_llava, about=about,
                  files={f"{name}/{file}": "conversations", f"{name}/": f"`image_root`: {images}"})


PRESETS = [
    # ---- conversation (LLaVA JSON: [{id, image, conversations: [{from, value}]}]) ----
    _llava_preset("llava_150k", "llava_instruct_150k.json",
                  "LLaVA-Instruct-150K (liuhaotian/LLaVA-Instruct-150K on the Hub): llava_instruct_150k.json, an "
                  "array of {id, image (COCO train2017 file name), conversations [{from: human|gpt, value}]}, "
                  "<image> in the first question", "the COCO train2017 folder (the records name its files)"),
    _llava_preset("sharegpt4v", "sharegpt4v_instruct_gpt4-vision_cap100k.json",
                  "ShareGPT4V (Lin-Chen/ShareGPT4V on the Hub): sharegpt4v_instruct_gpt4-vision_cap100k.json and "
                  "share-captioner_coco_lcs_sam_1246k_1107.json, LLaVA-format arrays whose image paths name the "
                  "image collections' folders (coco/train2017/..., sam/images/..., llava/llava_pretrain/...); "
                  "<image> sometimes after the question", "the folder holding coco/, sam/, llava/, ..."),
    _llava_preset("allava", "ALLaVA-Instruct-LAION-4V.json",
                  "ALLaVA-4V (FreedomIntelligence/ALLaVA-4V on the Hub): ALLaVA-Caption-*-4V.json and "
                  "ALLaVA-Instruct-*-4V.json, LLaVA-format arrays, images as allava_laion/images/... and "
                  "allava_vflan/images/...; the text-only Evol-Instruct file reads the same way",
                  "the folder holding allava_laion/, allava_vflan/"),
    _llava_preset("svit", "svit_v1_mix_665K.json",
                  "SVIT (BAAI/SVIT on the Hub, BAAI-DCAI/Visual-Instruction-Tuning): its LLaVA-v1.5-format "
                  "release (the README: 'SVIT-mix-665K is in the format of LLaVA-v1.5'), an array of {id, image, "
                  "conversations}; image paths below the image collections' folders (Visual Genome, COCO, ...)",
                  "the folder holding the collections the image paths name"),
    _llava_preset("lvis_instruct4v", "lvis_instruct4v_220k.json",
                  "LVIS-Instruct4V (X2FD/LVIS-Instruct4V on the Hub): lvis_instruct4v_220k.json, a LLaVA-format "
                  "array over COCO 2017 images (coco/train2017/..., coco/val2017/...)", "the folder holding coco/"),
    Preset("textocr_gpt4v", {"reader": "jsonl", "key": "filename", "image": "filename",
                             "conversations": "conversations", "build": "chat"},
           adapt=_textocr_gpt4v, about="TextOCR-GPT4V (jimmycarter/textocr-gpt4v on the Hub): train.jsonl of "
           "{filename (a TextOCR train image), caption (GPT-4V's DESCRIPTION and TEXT sections), caption_condensed}; "
           f"the caption answers \"{DETAILED_OCR_PROMPT}\"; images are TextOCR's train_images/",
           files={"textocr_gpt4v/train.jsonl": "captions", "textocr/train_images/": "TextOCR train images"}),
    # ---- The Cauldron (Hub Parquet) where the publisher's own files do not fit one record per image ----
    _cauldron_preset("the_cauldron", "<subset>", "Any subset of The Cauldron (set `locations` to its files)"),
    _cauldron_preset("clevr_math", "clevr_math", "CLEVR-Math (dali-does/clevr-math ships a loading script over "
                     "zipped CLEVR scenes, no files to read as they are)"),
    _cauldron_preset("tqa", "tqa", "TQA (allenai.org/data/tqa: tqa_v1_train.json holds lessons whose diagram "
                     "questions each name their own image, several images a record)"),
    # ---- text-only ----
    Preset("sharegpt", {"reader": "json", "key": "id", "conversations": "conversations", "build": "chat"},
           adapt=_llava, about="ShareGPT as released for Vicuna (anon8231489123/ShareGPT_Vicuna_unfiltered on the Hub): "
           "ShareGPT_V3_unfiltered_cleaned_split.json, an array of {id, conversations [{from: human|gpt|...}]}; "
           "some open with the assistant, some name it bing/chatgpt",
           files={"sharegpt/ShareGPT_V3_unfiltered_cleaned_split.json": "conversations"}),
    Preset("openhermes", {"reader": "json", "key": "id", "conversations": "conversations", "build": "chat"},
           adapt=_llava, about="OpenHermes 2.5 (teknium/OpenHermes-2.5 on the Hub): openhermes2_5.json, an array "
           "of {conversations [{from: system|human|gpt, value, weight}], source, category, id?, ...}; the "
           "system prompt goes in front of the first question; records without an id keyed by ordinal",
           files={"openhermes/openhermes2_5.json": "conversations"}),
    Preset("wikipedia", {"reader": "parquet", "key": "id", "conversations": "conversations", "build": "chat"},
           adapt=_wikipedia, about="Wikipedia as the Wikimedia Foundation's Hub dumps (wikimedia/wikipedia, one "
           "subset per dump and language: 20231101.en/train-*.parquet, 20231101.zh/...) of {id, url, title, text}; "
           "text-only: an article's lead paragraph answers 'Tell me about <title>.'",
           files={"wikipedia/20231101.en/train-*.parquet": "articles"}),
    Preset("alpaca_gpt4", {"reader": "json", "key": "$key", "conversations": "conversations", "build": "chat"},
           adapt=_instruction, about="Alpaca-GPT4 (Instruction-Tuning-with-GPT-4/GPT-4-LLM): data/alpaca_gpt4_data.json "
           "(and alpaca_gpt4_data_zh.json), an array of {instruction, input, output}",
           files={"alpaca_gpt4/data/alpaca_gpt4_data.json": "instructions"}),
    Preset("coig_cqia", {"reader": "jsonl", "key": "$key", "conversations": "conversations", "build": "chat"},
           adapt=_instruction, about="COIG-CQIA (m-a-p/COIG-CQIA on the Hub): one JSON Lines file per subset "
           "(zhihu/*.jsonl, wiki/*.jsonl, ...; COIG-CQIA-full.jsonl holds them all) of {instruction, input, "
           "output, task_type {major, minor}, domain, answer_from, human_verified, copyright}; Chinese",
           files={"coig_cqia/COIG-CQIA-full.jsonl": "instructions (or one subset's file; one source per file keeps "
                  "keys unique)"}),
]

register_all(PRESETS)
