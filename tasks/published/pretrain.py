"""Presets of the pre-training mixture (report, Table 1a): captions, All-Seeing and the OCR-small sets.

Each preset reads the files its publisher releases, as they unpack; ``about`` says where the schema
was checked (the publisher's release notes or loader, or a widely used converter of the files).
``files`` names what a source's ``locations`` and ``image_root`` point at (README, "what to put where").
"""

from __future__ import annotations

from typing import Any

from tasks.published.presets import Preset, register_preset

_QA = {"build": "vqa", "reader": "json"}


def _ctw(record: Any, extras: dict) -> tuple[Any, dict] | None:
    """CTW lines are lists of characters (``text``, ``polygon``): a line's text is their texts joined, its
    polygon the points of all of them; ``ignore`` regions are illegible."""
    if not isinstance(record, dict) or not isinstance(record.get("annotations"), list):
        return None
    lines = []
    for sentence in record["annotations"]:
        chars = sentence if isinstance(sentence, list) else []
        points = [p for c in chars if isinstance(c, dict) for p in (c.get("polygon") or [])]
        lines.append({"text": "".join(str(c.get("text", "")) for c in chars if isinstance(c, dict)), "points": points})
    for region in record.get("ignore") or []:
        lines.append({"text": "", "points": region.get("polygon") if isinstance(region, dict) else None,
                      "illegible": True})
    return {**record, "lines": lines}, extras


PRESETS = [
    # ---- captioning ----
    Preset("coco_karpathy", {
        "reader": "json", "records": "images", "where": {"split": ["train", "restval"]}, "key": "cocoid",
        "image": "{filepath}/{filename}", "caption": "sentences.*.raw", "build": "caption",
    }, about="COCO 2014 captions in Karpathy's split, `dataset_coco.json` (images[].filepath/filename/"
       "sentences[].raw/split/cocoid, as in the Karpathy-split archive caption_datasets.zip); the train and "
       "restval images; one caption per image, chosen by a hash of the seed and the image",
       files={"coco/dataset_coco.json": "Karpathy split captions", "coco/train2014/, coco/val2014/": "COCO 2014 images"}),
    Preset("textcaps", {
        "reader": "json", "records": "data", "group_by": "image_id", "key": "image_id", "image": "{image_id}.jpg",
        "caption": "caption_str", "build": "caption",
    }, about="TextCaps 0.1 `TextCaps_0.1_train.json` ({data: [{image_id, image_path, caption_str, "
       "reference_strs, ...}]}, one record per caption; textvqa.org/textcaps); images are TextVQA's "
       "train_val_images.zip, unpacked as train_images/<image_id>.jpg",
       files={"textcaps/TextCaps_0.1_train.json": "captions", "textcaps/train_images/": "TextVQA train images"}),
    # ---- detection ----
    Preset("all_seeing", {
        "reader": "json", "key": "id", "image": "image", "conversations": "conversations", "build": "conversation",
    }, about="All-Seeing v2 `as_pretrain_10m.json` (OpenGVLab/AS-V2 on the Hub): a JSON array of LLaVA-style "
       "records {id, image, conversations} whose answers carry <ref>/<box> on 0..1000; images relative to "
       "image_root (AS-1B / SA-1B images)",
       files={"all-seeing/as_pretrain_10m.json": "grounded conversations", "all-seeing/images/": "their images"}),
    # ---- OCR, scene text ----
    Preset("lsvt", {
        "reader": "json", "image": ["train_full_images_0/{$key}.jpg", "train_full_images_1/{$key}.jpg"],
        "regions": "", "region_illegible": "illegibility", "build": "scene_text",
    }, about="ICDAR2019-LSVT `train_full_labels.json` ({\"gt_0\": [{transcription, points: [[x, y], ...], "
       "illegibility}], ...}; rrc.cvc.uab.es/?ch=16, as read by MindOCR's lsvt converter); images in "
       "train_full_images_0.tar.gz and train_full_images_1.tar.gz, unpacked side by side",
       files={"lsvt/train_full_labels.json": "polygons and texts per image",
              "lsvt/train_full_images_0/, lsvt/train_full_images_1/": "the two image archives, unpacked"}),
    Preset("art", {
        "reader": "json", "image": "train_images/{$key}.jpg", "regions": "", "region_illegible": "illegibility",
        "build": "scene_text",
    }, about="ICDAR2019-ArT `train_labels.json` ({\"gt_0\": [{transcription, points, language, illegibility}]}; "
       "rrc.cvc.uab.es/?ch=14, MindOCR's ic19_art converter); train_images.tar.gz unpacked as train_images/",
       files={"art/train_labels.json": "polygons and texts", "art/train_images/": "images"}),
    Preset("rects", {
        "reader": "per_file", "image": "img/{$stem}.jpg", "regions": "lines", "region_points": "points",
        "region_illegible": "ignore", "build": "scene_text",
    }, about="ICDAR2019-ReCTS train: one JSON per image, gt/<image>.json ({chars: [...], lines: [{points: "
       "[x1, y1, ..., x4, y4], transcription, ignore}]}; rrc.cvc.uab.es/?ch=12, MindOCR's rects converter); "
       "the lines are read, the character boxes are not",
       files={"rects/train/gt/*.json": "line quadrilaterals per image", "rects/train/img/": "images"}),
    Preset("rctw17", {
        "reader": "per_file", "image": "{$parent}/{$stem}.jpg", "regions": "rows", "region_points": "0:8",
        "region_illegible": "8", "region_text": "9", "build": "scene_text",
    }, about="ICDAR2017-RCTW train (rctw.vlrlab.net): per image a .txt beside the .jpg, each line "
       "`x1,y1,x2,y2,x3,y3,x4,y4,<difficult>,\"text\"` (UTF-8, BOM allowed); difficult 1 or text ### is "
       "illegible (MindOCR's rctw17 converter reads them the same way)",
       files={"rctw-17/train/part*/image_*.txt": "quadrilaterals per image", "rctw-17/train/part*/image_*.jpg": "images, beside them"}),
    Preset("ctw", {
        "reader": "jsonl", "key": "image_id", "image": "file_name", "width": "width", "height": "height",
        "regions": "lines", "region_text": "text", "region_illegible": "illegible", "build": "scene_text",
    }, adapt=_ctw, about="CTW (Chinese Text in the Wild, ctwdataset.github.io) `train.jsonl` of "
       "ctw-annotations.tar.gz: per image {image_id, file_name, width, height, annotations: [[{text, polygon, "
       "...} per character] per line], ignore: [{polygon, bbox}]}; a line's box covers its characters",
       files={"ctw/train.jsonl": "character polygons per line", "ctw/images-trainval/": "images"}),
    Preset("coco_text", {
        "reader": "json", "records": "imgs", "annotations": "anns", "link": "image_id", "record_id": "id",
        "where": {"set": ["train"]}, "key": "id", "image": "file_name", "width": "width", "height": "height",
        "regions": "$annotations", "region_text": "utf8_string", "region_points": "polygon", "region_box": "bbox",
        "region_illegible": "legibility", "build": "scene_text",
    }, about="COCO-Text v2 `cocotext.v2.json` ({imgs: {id: {file_name, width, height, set}}, anns: {id: "
       "{image_id, polygon, bbox, utf8_string, legibility}}}; bgshih.github.io/cocotext, MindOCR's cocotext "
       "converter); the train set; an illegible region has no utf8_string",
       files={"coco-text/cocotext.v2.json": "text regions", "coco/train2014/": "COCO 2014 train images"}),
    Preset("textocr", {
        "reader": "json", "records": "imgs", "annotations": "anns", "link": "image_id", "record_id": "id",
        "key": "id", "image": "file_name", "width": "width", "height": "height", "regions": "$annotations",
        "region_text": "utf8_string", "region_points": "points", "region_box": "bbox", "illegible_texts": [".", "###"],
        "build": "scene_text",
    }, about="TextOCR 0.1 `TextOCR_0.1_train.json` ({imgs: {id: {file_name: train/<id>.jpg, width, height}}, "
       "anns: {id: {image_id, points, bbox, utf8_string}}}; textvqa.org/textocr, MMOCR's and MindOCR's "
       "readers); a '.' transcription marks an illegible word; images from TextVQA's train_val_images.zip",
       files={"textocr/TextOCR_0.1_train.json": "word polygons", "textocr/train/ (or train_images/ renamed)": "images"}),
    # ---- OCR, documents and charts ----
    Preset("synthdog", {
        "reader": "parquet", "image": "image", "text": "ground_truth.$json.gt_parse.text_sequence",
        "build": "document",
    }, about="SynthDoG-en / -zh (naver-clova-ix/synthdog-en, synthdog-zh on the Hub): Parquet parts "
       "data/train-*.parquet with `image` ({bytes, path}, embedded) and `ground_truth` (a JSON string, "
       "gt_parse.text_sequence the page's text)",
       files={"synthdog/synthdog-en/data/train-*.parquet, synthdog/synthdog-zh/data/train-*.parquet": "pages with their text"}),
    Preset("docvqa", {
        **_QA, "records": "data", "group_by": "image", "key": "image", "image": "image", "question": "question",
        "answers": "answers",
    }, about="DocVQA (SP-DocVQA, rrc.cvc.uab.es/?ch=17) `train_v1.0.json`: {data: [{questionId, question, "
       "image: documents/<doc>.png, answers: [...]}]} in train.tar.gz; one conversation per page",
       files={"docvqa/train/train_v1.0.json": "questions", "docvqa/train/documents/": "page images"}),
    Preset("infovqa", {
        **_QA, "records": "data", "group_by": "image_local_name", "key": "image_local_name",
        "image": "{image_local_name}", "question": "question", "answers": "answers",
    }, about="InfographicVQA (rrc.cvc.uab.es/?ch=17) `infographicsVQA_train_v1.0.json`: {data: [{questionId, "
       "question, image_local_name, answers: [...]}]}; images in infographicsvqa_images/",
       files={"infovqa/infographicsVQA_train_v1.0.json": "questions", "infovqa/infographicsvqa_images/": "images"}),
    Preset("st_vqa", {
        **_QA, "records": "data", "group_by": "file_path", "key": "file_path", "image": "file_path",
        "question": "question", "answers": "answers",
    }, about="ST-VQA (rrc.cvc.uab.es/?ch=11) `train_task_3.json`: {data: [{question_id, file_path: "
       "<dataset>/<image>, question, answers: [...]}]}; train_images.tar.gz unpacked as train_images/",
       files={"st-vqa/train_task_3.json": "questions", "st-vqa/train_images/": "images, one folder per source dataset"}),
    Preset("chartqa", {
        **_QA, "group_by": "imgname", "key": "imgname", "image": "png/{imgname}", "question": "query",
        "answers": "label",
    }, about="ChartQA (vis-nlp/ChartQA) train/train_human.json and train/train_augmented.json: JSON arrays "
       "of {imgname, query, label}; images in train/png/",
       files={"chartqa/train/train_human.json, chartqa/train/train_augmented.json": "questions",
              "chartqa/train/png/": "charts"}),
    Preset("plotqa", {
        **_QA, "records": "qa_pairs", "group_by": "image_index", "key": "image_index", "image": "png/{image_index}.png",
        "question": "question_string", "answers": "answer",
    }, about="PlotQA (NiteshMethani/PlotQA) train/qa_pairs_V2.json: {qa_pairs: [{image_index, question_string, "
       "answer, ...}]}; images train/png/<image_index>.png",
       files={"plotqa/train/qa_pairs_V2.json": "questions", "plotqa/train/png/": "plots"}),
    Preset("mmc_inst", {
        "reader": "jsonl", "key": "$key", "image": "image_id", "question": "question", "answers": "answer",
        "build": "vqa", "per_question": True,
    }, about="MMC-Instruction (xywang1/MMC on the Hub): MMC-Instruction/mmc_instruction_*_text.jsonl with "
       "{image_id, question, answer} a line and the images in mmc_instruction_*_images.tar.gz. The field "
       "names follow the dataset card's viewer and were not checked against a downloaded file: override "
       "them with the source's `format:` if a release differs",
       files={"mmc-inst/mmc_instruction_*_text.jsonl": "instructions",
              "mmc-inst/images/": "the two image archives, unpacked"}),
]

for _preset in PRESETS:
    register_preset(_preset)
