"""Instruction pools for the OCR tasks, written in the language of the text to be read.

A sample's prompt is drawn from its language's pool with a generator seeded by the sample, so a
rebuild gives the same conversations. Adding a language is adding its pools here.
"""

from __future__ import annotations

TRANSCRIBE = {
    "en": [
        "What is the text in this image?",
        "Read all the text in the image.",
        "Transcribe the text shown in the picture, line by line.",
        "Please write down every word you can see in this image.",
        "Extract the text from this image.",
        "What does the text in the picture say?",
        "List the text lines in the image from top to bottom.",
    ],
    "zh": [
        "图中的文字是什么？",
        "请识别图片中的所有文字。",
        "请逐行写出图片中出现的文字。",
        "这张图片上写了什么？",
        "提取这张图片中的文字内容。",
        "请把图中的文字按从上到下的顺序抄写出来。",
        "图片里有哪些文字？",
    ],
}

GROUNDED = {
    "en": [
        "Read the text in the image and give the position of each line.",
        "Detect every line of text in the image and output it with its bounding box.",
        "Transcribe the text in the image, giving each line's location.",
        "Find all the text in this picture and mark where each line is.",
    ],
    "zh": [
        "识别图中的文字，并给出每一行的位置。",
        "检测图片中的每一行文字，并输出其边界框。",
        "请转写图中的文字，并标出每行文字的位置。",
        "找出这张图片中的所有文字，并标注每行所在的位置。",
    ],
}


def pool(kind: str, language: str) -> list[str]:
    """The prompts of ``kind`` ("transcribe" or "grounded") for ``language``; a clear error if none."""
    pools = {"transcribe": TRANSCRIBE, "grounded": GROUNDED}[kind]
    if language not in pools:
        raise ValueError(
            f"no OCR {kind} prompts for language {language!r}; languages with prompts: {sorted(pools)}"
        )
    return pools[language]
