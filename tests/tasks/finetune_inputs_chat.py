"""Tiny published copies of Table 1b's conversation and text-only datasets (:mod:`tests.tasks.finetune_inputs`)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.tasks.finetune_inputs_base import Published, _image, _json, _jsonl

# ---------------------------------------------------------------- conversation (LLaVA JSON)

def _llava(base: Path, name: str, image_paths: list[str], image_dir: str = "") -> Published:
    """LLaVA JSON; image paths are relative to ``base/image_dir`` (the source's image_root)."""
    root = base / image_dir if image_dir else base
    for i, rel in enumerate(image_paths):
        _image(root / rel, (48 + 8 * i, 48), 120 + i)
    records = [
        {"id": "000000033471", "image": image_paths[0], "conversations": [
            {"from": "human", "value": "<image>\nWhat are the colors of the bus in the image?"},
            {"from": "gpt", "value": "The bus in the image is white and red."},
            {"from": "human", "value": "What feature can be seen on the back of the bus?"},
            {"from": "gpt", "value": "The back of the bus features an advertisement."}]},
        {"id": "000000052846", "image": image_paths[1], "conversations": [  # placeholder after the question
            {"from": "human", "value": "Describe this picture in detail.\n<image>"},
            {"from": "gpt", "value": "A cat sleeps on a sofa; the time reads 10:30."}]},
        {"id": "missing-image", "image": "nowhere/000000000000.jpg", "conversations": [
            {"from": "human", "value": "<image>\nWhat is shown?"}, {"from": "gpt", "value": "Nothing."}]},
        {"id": "text-only", "conversations": [
            {"from": "human", "value": "Write `print(1)` in Python."}, {"from": "gpt", "value": "```python\nprint(1)\n```"}]},
        {"id": "broken", "image": image_paths[0], "conversations": [{"from": "human", "value": "<image>\nHi"}]},
    ]
    return Published(base, [_json(base / name, records)], root, missing_images=["nowhere/000000000000.jpg"])


def write_llava_150k(root: Path) -> Published:
    return _llava(root / "llava_150k", "llava_instruct_150k.json", ["000000033471.jpg", "000000052846.jpg"],
                  image_dir="train2017")  # its records name COCO train2017 files by name alone


def write_sharegpt4v(root: Path) -> Published:
    return _llava(root / "sharegpt4v", "sharegpt4v_instruct_gpt4-vision_cap100k.json",
                  ["coco/train2017/000000033471.jpg", "sam/images/sa_545504.jpg"])


def write_allava(root: Path) -> Published:
    return _llava(root / "allava", "ALLaVA-Instruct-LAION-4V.json",
                  ["allava_laion/images/100277305.jpeg", "allava_laion/images/100277306.jpeg"])


def write_svit(root: Path) -> Published:
    return _llava(root / "svit", "svit_v1_mix_665K.json", ["vg/VG_100K/2354786.jpg", "coco/train2017/000000052846.jpg"])


def write_lvis_instruct4v(root: Path) -> Published:
    return _llava(root / "lvis_instruct4v", "lvis_instruct4v_220k.json",
                  ["coco/train2017/000000033471.jpg", "coco/val2017/000000052846.jpg"])


# ---------------------------------------------------------------- text-only

def write_sharegpt(root: Path) -> Published:
    """ShareGPT (anon8231489123/ShareGPT_Vicuna_unfiltered): a JSON array of {id, conversations}."""
    base = root / "sharegpt"
    records = [
        {"id": "QWJhYvA_0", "conversations": [
            {"from": "human", "value": "Summarize the main ideas of Jeff Walker's Product Launch Formula."},
            {"from": "gpt", "value": "1. Pre-launch: build anticipation.\n2. Launch: open the cart for 7 days."},
            {"from": "human", "value": "And in 2 sentences?"},
            {"from": "gpt", "value": "Build anticipation, then sell. It works in 2023 too."}]},
        {"id": "gpt-first_0", "conversations": [  # starts with the assistant: that turn is left out
            {"from": "gpt", "value": "Hello! How can I help?"},
            {"from": "human", "value": "What is 2+2?"}, {"from": "gpt", "value": "2+2 = 4."}]},
        {"id": "bing_1", "conversations": [
            {"from": "human", "value": "Who are you?"}, {"from": "bing", "value": "I am Bing."}]},
        {"id": "empty_0", "conversations": []},
        {"id": "twohumans_0", "conversations": [
            {"from": "human", "value": "A"}, {"from": "human", "value": "B"}, {"from": "gpt", "value": "C"}]},
    ]
    return Published(base, [_json(base / "ShareGPT_V3_unfiltered_cleaned_split.json", records)])


def write_openhermes(root: Path) -> Published:
    """OpenHermes 2.5 (teknium/OpenHermes-2.5): openhermes2_5.json, conversations with system turns."""
    base = root / "openhermes"
    records = [
        {"conversations": [
            {"from": "system", "value": "You are an AI assistant. Think step by step.", "weight": None},
            {"from": "human", "value": "Solve $x^2 = 4$ for x > 0.", "weight": 0.0},
            {"from": "gpt", "value": "Taking the positive root, $x = 2$.", "weight": 1.0}],
         "source": "airoboros2.2", "category": "orca", "skip_prompt_formatting": False},
        {"conversations": [
            {"from": "human", "value": "Write a haiku about rain.", "weight": None},
            {"from": "gpt", "value": "Soft rain on the roof\nwhispers of the evening sky\npuddles hold the moon", "weight": None}],
         "source": "CamelAI", "category": None, "id": "f6c2", "model": None},
        {"conversations": [{"from": "system", "value": "", "weight": None},
                           {"from": "human", "value": "Empty answer?", "weight": None},
                           {"from": "gpt", "value": "   ", "weight": None}], "source": "glaive-code-assist"},
    ]
    return Published(base, [_json(base / "openhermes2_5.json", records)])


def write_alpaca_gpt4(root: Path) -> Published:
    """Alpaca-GPT4 (Instruction-Tuning-with-GPT-4/GPT-4-LLM): alpaca_gpt4_data.json of instruction/input/output."""
    base = root / "alpaca_gpt4"
    records = [
        {"instruction": "Give three tips for staying healthy.", "input": "",
         "output": "1. Eat a balanced diet.\n2. Exercise regularly.\n3. Sleep 7-9 hours."},
        {"instruction": "Translate the sentence into French.", "input": "I like apples.",
         "output": "J'aime les pommes."},
        {"instruction": "", "input": "", "output": "An answer with no instruction."},
    ]
    return Published(base, [_json(base / "data" / "alpaca_gpt4_data.json", records)])


def write_coig_cqia(root: Path) -> Published:
    """COIG-CQIA (m-a-p/COIG-CQIA): one JSONL per subset, instruction/input/output with task metadata."""
    base = root / "coig_cqia"
    records = [
        {"instruction": "天空为什么是蓝色的？", "input": "", "output": "因为瑞利散射：短波长的蓝光散射得更多。",
         "task_type": {"major": ["问答"], "minor": ["百科问答"]}, "domain": ["通用"], "metadata": "",
         "answer_from": "human", "human_verified": True, "copyright": "CC BY-SA"},
        {"instruction": "把下面的句子翻译成英文。", "input": "我喜欢读书。", "output": "I like reading.",
         "task_type": {"major": ["翻译"], "minor": []}, "domain": ["通用"], "metadata": "",
         "answer_from": "llm", "human_verified": True, "copyright": ""},
    ]
    lines = [json.dumps(r, ensure_ascii=False) for r in records] + ["{not json"]
    path = base / "zhihu" / "zhihu_expansion.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return Published(base, [str(path)])


def write_textocr_gpt4v(root: Path) -> Published:
    """TextOCR-GPT4V: train.jsonl of {filename, caption, caption_condensed}; images are TextOCR's."""
    base = root / "textocr_gpt4v"
    _image(base / "train_images" / "a4ea732cd3d5948a.jpg", (64, 64), 161)
    records = [
        {"filename": "a4ea732cd3d5948a.jpg", "caption": "DESCRIPTION\nA shop front at night.\n\nTEXT\n"
         "The sign above the door says \"OPEN 24 HOURS\".", "caption_condensed": "A shop sign: OPEN 24 HOURS."},
        {"filename": "0000000000000000.jpg", "caption": "DESCRIPTION\nMissing.", "caption_condensed": ""},
    ]
    return Published(base, [_jsonl(base / "train.jsonl", records)], base / "train_images",
                     missing_images=["0000000000000000.jpg"])


def write_wikipedia(root: Path) -> Published:
    """Wikipedia (wikimedia/wikipedia): <dump>.<language>/train-*.parquet of {id, url, title, text}."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [
        {"id": "12", "url": "https://en.wikipedia.org/wiki/Anarchism", "title": "Anarchism",
         "text": "Anarchism is a political philosophy.\n\nHistory\n\nThe earliest forms..."},
        {"id": "25", "url": "https://en.wikipedia.org/wiki/Empty", "title": "Empty", "text": ""},
    ]
    path = root / "wikipedia" / "20231101.en" / "train-00000-of-00001.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return Published(path.parent, [str(path)])


CHAT_WRITERS = {
    "llava_150k": write_llava_150k, "sharegpt4v": write_sharegpt4v, "allava": write_allava, "svit": write_svit,
    "lvis_instruct4v": write_lvis_instruct4v, "sharegpt": write_sharegpt, "openhermes": write_openhermes,
    "alpaca_gpt4": write_alpaca_gpt4, "coig_cqia": write_coig_cqia, "textocr_gpt4v": write_textocr_gpt4v,
    "wikipedia": write_wikipedia,
}
