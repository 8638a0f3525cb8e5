"""Presets of Table 1b's question-answer sets: general QA, science, chart, mathematics, OCR QA, knowledge.

Each reads the files its publisher releases, as they unpack (``files``: what ``locations`` and
``image_root`` name), and ``about`` says where the schema was checked. The rules they share are in
:mod:`tasks.published.finetune_rules`: of several answers, the most frequent (ties: the first
given); multiple choice as lettered options answered by the letter. Open questions that want a word
or phrase carry LLaVA-1.5's instruction "Answer the question using a single word or phrase."; an
image's questions are one multi-turn conversation (``per_question: true`` in a source's
``format:`` gives one per question). A question without an answer is left out of its conversation
(``object:empty_answer``), a missing image drops the image's questions (``image_missing``), a
record the adapt step cannot read is ``unreadable_record``.
"""

from __future__ import annotations

import re
from typing import Any

from tasks.published.finetune_rules import SHORT_ANSWER, Dropped, letter, lettered, register_all
from tasks.published.presets import Preset

_SHORT = "\n" + SHORT_ANSWER


def _coco_name(image_id: Any) -> str:
    return f"{int(image_id):012d}"


def _vqa_join(answer_field: str):
    """VQA v2 / OK-VQA: a question record with its joined annotation's answers (ten annotators')."""

    def adapt(record: Any, extras: dict) -> tuple[Any, dict] | None:
        if not isinstance(record, dict) or "image_id" not in record:
            return None
        answers = []
        for annotation in extras.get("$annotations") or []:
            for entry in annotation.get("answers") or []:
                if isinstance(entry, dict):
                    answers.append(entry.get(answer_field, entry.get("answer")))
        return {**record, "coco_id": _coco_name(record["image_id"]), "answers": answers}, extras

    return adapt


def _choice(question_field: str, choices_field: str, answer_index: str):
    """Multiple choice with the answer as an index: the lettered question and the letter (or no answer)."""

    def adapt(record: Any, extras: dict) -> tuple[Any, dict] | None:
        if not isinstance(record, dict):
            return None
        choices = record.get(choices_field)
        try:
            question = lettered(str(record.get(question_field) or ""), choices, str(record.get("hint") or ""))
            answer = letter(choices, record.get(answer_index))
        except Dropped:
            question, answer = str(record.get(question_field) or ""), ""  # counted as object:empty_answer
        extra = {"coco_id": _coco_name(record["image_id"])} if "image_id" in record else {}
        return {**record, **extra, "mc_question": question, "mc_answer": answer}, extras

    return adapt


def _scienceqa(record: Any, extras: dict) -> tuple[Any, dict] | None:
    adapted = _choice("question", "choices", "answer")(record, extras)
    if adapted is None:
        return None
    record, extras = adapted
    image = record.get("image")
    # Images unpack as <split>/<problem id>/image.png; a problem without one is text-only.
    record["image_file"] = f"{record.get('split')}/{extras['$key']}/{image}" if image else None
    return record, extras


def _ai2d(record: Any, extras: dict) -> tuple[Any, dict] | None:
    """AI2D's questions are an object keyed by the question text: a list of lettered questions."""
    if not isinstance(record, dict) or not isinstance(record.get("questions"), dict):
        return None
    qa = []
    for text, entry in sorted(record["questions"].items(), key=lambda kv: str(kv[1].get("questionId", ""))):
        try:
            qa.append({"question": lettered(text, entry.get("answerTexts")),
                       "answer": letter(entry.get("answerTexts"), entry.get("correctAnswer"))})
        except Dropped:
            qa.append({"question": text, "answer": ""})  # counted as object:empty_answer
    return {**record, "qa": qa}, extras


def _ocrvqa(record: Any, extras: dict) -> tuple[Any, dict] | None:
    """OCR-VQA keeps each book's questions and answers as two parallel lists."""
    questions, answers = record.get("questions"), record.get("answers")
    if not isinstance(questions, list) or not isinstance(answers, list) or len(questions) != len(answers):
        return None
    url = str(record.get("imageURL") or "")
    extension = url.rsplit(".", 1)[-1].lower() if "." in url.rsplit("/", 1)[-1] else "jpg"
    qa = [{"question": q, "answer": a} for q, a in zip(questions, answers, strict=True)]
    return {**record, "qa": qa, "image_file": f"{extras['$key']}.{extension}"}, extras


def _tabmwp(record: Any, extras: dict) -> tuple[Any, dict] | None:
    """TabMWP: free-text questions (with their unit) or multiple choice over ``choices``."""
    if not isinstance(record, dict):
        return None
    question, answer, choices = str(record.get("question") or ""), record.get("answer"), record.get("choices")
    if choices:
        try:
            question, answer = lettered(question, choices), letter(choices, choices.index(answer))
        except (Dropped, ValueError):
            answer = ""
    else:
        unit = record.get("unit")
        question = f"{question} (Unit: {unit})" if unit else question
        answer = "" if answer is None else str(answer)
    return {**record, "mc_question": question, "mc_answer": answer, "image_file": f"{extras['$key']}.png"}, extras


def _geometry3k(record: Any, extras: dict) -> tuple[Any, dict] | None:
    """Geometry3K gives its answer as a letter already."""
    if not isinstance(record, dict):
        return None
    choices, answer = record.get("choices"), str(record.get("answer") or "").strip()
    try:
        question = lettered(str(record.get("problem_text") or ""), choices)
        answer = answer if answer and "A" <= answer <= "Z" and ord(answer) - 65 < len(choices) else ""
    except Dropped:
        question, answer = str(record.get("problem_text") or ""), ""
    return {**record, "mc_question": question, "mc_answer": answer}, extras


def _vsr(record: Any, extras: dict) -> tuple[Any, dict] | None:
    """VSR: a spatial statement and whether annotators found it true of the image (label 1) or not (0)."""
    if not isinstance(record, dict):
        return None
    label = record.get("label")
    answer = "Yes" if label == 1 else "No" if label == 0 else ""  # another label: counted object:empty_answer
    question = f'Is this statement about the image true: "{str(record.get("caption") or "").strip()}"? ' \
               "Answer yes or no."
    return {**record, "vsr_question": question, "vsr_answer": answer}, extras


_OPTION = re.compile(r"(?:^|,)\s*([a-e])\s*\)\s*")


def _mathqa(record: Any, extras: dict) -> tuple[Any, dict] | None:
    """MathQA: options as one string ``a ) 38 , b ) 27.675 , ...``; ``correct`` a letter; text only."""
    if not isinstance(record, dict) or not isinstance(record.get("options"), str):
        return None
    parts = _OPTION.split(record["options"])[1:]  # letter, text, letter, text, ...
    choices = [text.strip() for text in parts[1::2]]
    correct = str(record.get("correct") or "").strip().lower()
    try:
        question = lettered(str(record.get("Problem") or ""), choices)
        answer = letter(choices, parts[0::2].index(correct)) if correct in parts[0::2] else ""
    except Dropped:
        question, answer = str(record.get("Problem") or ""), ""
    return {**record, "mc_question": question, "mc_answer": answer}, extras


def _vqa_preset(name: str, questions: str, annotations: str, answer_field: str, about: str) -> Preset:
    return Preset(name, {
        "reader": "json", "records": "questions", "annotations": "annotations", "annotations_file": annotations,
        "link": "question_id", "record_id": "question_id", "group_by": "image_id", "key": "image_id",
        "image": "COCO_train2014_{coco_id}.jpg", "question": "question", "answers": "answers",
        "build": "vqa", "question_suffix": _SHORT,
    }, adapt=_vqa_join(answer_field), about=about,
        files={f"{name}/{questions}": "questions (the source's `locations`)",
               f"{name}/{annotations}": "annotations, beside the questions file",
               f"{name}/train2014/": "COCO 2014 train images (`image_root`)"})


PRESETS = [
    # ---- general QA ----
    _vqa_preset("vqav2", "v2_OpenEnded_mscoco_train2014_questions.json", "v2_mscoco_train2014_annotations.json",
                "answer", about="VQA v2 (visualqa.org/download.html): v2_Questions_Train_mscoco.zip's "
                "{questions: [{image_id, question, question_id}]} and v2_Annotations_Train_mscoco.zip's "
                "{annotations: [{question_id, image_id, answers: [{answer, answer_confidence, answer_id}] x10, "
                "multiple_choice_answer}]}, joined by question_id (the official VQA API's layout); the answer "
                "is the most frequent of the ten; images COCO_train2014_<12-digit id>.jpg. For val2014 set "
                "format.annotations_file and format.image"),
    _vqa_preset("okvqa", "OpenEnded_mscoco_train2014_questions.json", "mscoco_train2014_annotations.json",
                "raw_answer", about="OK-VQA v1.1 (okvqa.allenai.org): the VQA layout (questions file + "
                "annotations file, joined by question_id); each answer has `raw_answer` (as typed, used here) "
                "and a processed `answer`; COCO train2014 images"),
    Preset("gqa", {
        "reader": "json", "group_by": "imageId", "key": "imageId", "image": "{imageId}.jpg",
        "question": "question", "answers": "answer", "build": "vqa", "question_suffix": _SHORT,
    }, about="GQA balanced questions (cs.stanford.edu/people/dorarad/gqa), questions1.2.zip's "
       "train_balanced_questions.json: an object keyed by question id of {imageId, question, answer, "
       "fullAnswer, types, ...}; the short `answer` (fullAnswer via format.answers); images.zip as images/<imageId>.jpg",
       files={"gqa/questions/train_balanced_questions.json": "questions", "gqa/images/": "images (`image_root`)"}),
    Preset("vsr", {
        "reader": "jsonl", "group_by": "image", "key": "image", "image": "image", "question": "vsr_question",
        "answers": "vsr_answer", "build": "vqa",
    }, adapt=_vsr, about="VSR (cambridgeltl/visual-spatial-reasoning): data/splits/random/train.jsonl (or zeroshot/), "
       "JSON Lines of {image, image_link, caption, label (1 true, 0 false), relation, ...}; asked as a yes/no "
       "question about the statement; COCO 2017 images by file name (the publisher merges train2017 and "
       "val2017 into one folder, trainval2017/, or ships them as vsr_images.zip's images/)",
       files={"vsr/train.jsonl": "statements", "vsr/images/": "their COCO 2017 images"}),
    # ---- OCR QA ----
    Preset("textvqa", {
        "reader": "json", "records": "data", "group_by": "image_id", "key": "image_id", "image": "{image_id}.jpg",
        "question": "question", "answers": "answers", "build": "vqa", "question_suffix": _SHORT,
    }, about="TextVQA 0.5.1 (textvqa.org/dataset): TextVQA_0.5.1_train.json, {data: [{question, image_id, "
       "answers (ten), question_id, ...}]}; the most frequent answer; train_val_images.zip as train_images/<image_id>.jpg",
       files={"textvqa/TextVQA_0.5.1_train.json": "questions and answers", "textvqa/train_images/": "images"}),
    Preset("ocrvqa", {
        "reader": "json", "where": {"split": [1]}, "key": "$key", "image": "image_file", "qa": "qa",
        "question": "question", "answers": "answer", "build": "vqa",
    }, adapt=_ocrvqa, about="OCR-VQA (ocr-vqa.github.io): dataset.json, an object keyed by book id of {imageURL, "
       "questions, answers (parallel lists), title, authorName, genre, split (1 train, 2 val, 3 test)}; the "
       "publisher's download script saves images as images/<id>.<extension of imageURL>; training split only",
       files={"ocrvqa/dataset.json": "questions and answers", "ocrvqa/images/": "downloaded covers"}),
    # ---- knowledge ----
    Preset("a_okvqa", {
        "reader": "json", "group_by": "image_id", "key": "image_id", "image": "{coco_id}.jpg",
        "question": "mc_question", "answers": "mc_answer", "build": "vqa",
    }, adapt=_choice("question", "choices", "correct_choice_idx"),
        about="A-OKVQA v1.0 (allenai/aokvqa): aokvqa_v1p0_train.json, an array of {image_id, question_id, question, "
        "choices, correct_choice_idx, direct_answers, rationales}; asked as multiple choice (lettered options, "
        "the letter of correct_choice_idx); COCO 2017 images <12-digit id>.jpg",
        files={"a_okvqa/aokvqa_v1p0_train.json": "questions", "a_okvqa/train2017/": "COCO 2017 train images"}),
    # ---- science ----
    Preset("ai2d", {
        "reader": "per_file", "key": "imageName", "image": "{imageName}", "qa": "qa", "question": "question",
        "answers": "answer", "build": "vqa",
    }, adapt=_ai2d, about="AI2D (allenai.org/data/diagrams, ai2d-all.zip): one file per diagram, "
       "ai2d/questions/<n>.png.json = {imageName, questions: {<text>: {answerTexts, correctAnswer, abcLabel, "
       "questionId}}}; lettered options, the letter of correctAnswer; images ai2d/images/<n>.png",
       files={"ai2d/ai2d/questions/*.json": "questions (`locations`: the glob)", "ai2d/ai2d/images/": "diagrams"}),
    Preset("scienceqa", {
        "reader": "json", "where": {"split": ["train"]}, "key": "$key", "image": "image_file",
        "question": "mc_question", "answers": "mc_answer", "build": "vqa",
    }, adapt=_scienceqa, about="ScienceQA (lupantech/ScienceQA, scienceqa.github.io): data/scienceqa/problems.json, "
       "an object keyed by problem id of {question, choices, answer (index), hint, image (\"image.png\" or null), "
       "split, lecture, solution, ...}; the hint leads the question, lettered options, the letter; images "
       "<split>/<id>/image.png; problems without an image are text-only samples",
       files={"scienceqa/problems.json": "problems", "scienceqa/train/": "images (`image_root`: scienceqa/)"}),
    # ---- chart ----
    Preset("dvqa", {
        "reader": "json", "group_by": "image", "key": "image", "image": "image", "question": "question",
        "answers": "answer", "build": "vqa", "question_suffix": _SHORT,
    }, about="DVQA (kushalkafle.com/projects/dvqa.html): qa/train_qa.json, an array of {image, question, answer, "
       "question_type, question_id, template_id, answer_bbox}; images/<image>",
       files={"dvqa/qa/train_qa.json": "questions", "dvqa/images/": "bar charts"}),
    Preset("lrv_instruction", {
        "reader": "json", "group_by": "image_id", "key": "image_id", "image": "image_id", "question": "question",
        "answers": "answer", "build": "vqa",
    }, about="LRV-Instruction's chart part (FuxiaoLiu/LRV-Instruction, download.txt): chart_release_update.json, an "
       "array of {image_id (the chart's file name), question, answer}, positive and negative (unanswerable) "
       "instructions with free-form answers; chart_image.zip unpacks as chart_image/<image_id>",
       files={"lrv_instruction/chart_release_update.json": "instructions", "lrv_instruction/chart_image/": "charts"}),
    Preset("lrv_instruction_vg", {
        "reader": "json", "group_by": "image_id", "key": "image_id", "image": "{image_id}.jpg",
        "question": "question", "answers": "answer", "build": "vqa",
    }, about="LRV-Instruction's Visual Genome part: filter_cap1.json and filter_cap_more1.json, arrays of {image_id, "
       "question, answer, ...}; the authors' image.tar.gz unpacks as image/<image_id>.jpg",
       files={"lrv_instruction/filter_cap1.json": "instructions", "lrv_instruction/image/": "their VG images"}),
    # ---- mathematics ----
    Preset("tabmwp", {
        "reader": "json", "key": "$key", "image": "image_file", "question": "mc_question", "answers": "mc_answer",
        "build": "vqa",
    }, adapt=_tabmwp, about="TabMWP (lupantech/PromptPG): data/tabmwp/problems_train.json, an object keyed by "
       "problem id of {question, choices (null: free text), answer, unit, table, solution, ques_type, ...}; "
       "the table image tables/<id>.png",
       files={"tabmwp/problems_train.json": "problems", "tabmwp/tables/": "table images"}),
    Preset("mathqa", {
        "reader": "json", "key": "$key", "question": "mc_question", "answers": "mc_answer", "build": "vqa",
    }, adapt=_mathqa, about="MathQA (math-qa.github.io, MathQA.zip): train.json, an array of {Problem, Rationale, "
       "options ('a ) 38 , b ) 27.675 , ...'), correct (a letter), annotated_formula, linear_formula, category}; "
       "word problems without images (text-only), lettered options answered by the letter",
       files={"mathqa/train.json": "problems"}),
    Preset("geometry3k", {
        "reader": "per_file", "key": "$parent", "image": "{$parent}/img_diagram.png", "question": "mc_question",
        "answers": "mc_answer", "build": "vqa",
    }, adapt=_geometry3k, about="Geometry3K (lupantech/InterGPS, geometry3k.zip): one folder per problem, "
       "train/<id>/data.json = {id, problem_text, choices, answer (a letter), ...} beside train/<id>/img_diagram.png",
       files={"geometry3k/train/*/data.json": "problems (`locations`: the glob)", "geometry3k/train/": "image_root"}),
]

register_all(PRESETS)
