"""Tiny copies of the Table 1a annotation datasets in the layout their publishers ship, awkward cases included.

``write(name, data_dir, n, seed)`` writes one dataset under ``data_dir`` where ``configs/pretrain.yaml``
looks for it (file names, nesting, field names and JSON shapes as released) and returns a
:class:`Written`: ``locations`` and ``image_root`` as the config names them, the annotation of each
image by key (what a test checks a sample against) and what is there to be dropped. The awkward cases:
Chinese text, illegible regions (``###``, ``illegibility``, ``ignore``, COCO-Text's missing string,
TextOCR's ``.``), a malformed polygon, curved polygons, several differing answers, several questions on
one image, an empty answer, a record whose image is missing, a split that is not kept, embedded images.

Texts are drawn on the images where they say they are (``ocr_synth``'s renderer), so the polygons are
the lines' real boxes.
"""

from __future__ import annotations

import io
import json
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ocr"))
from ocr_synth import EN_LINES, ZH_LINES, render_page  # noqa: E402

CAPTIONS = ["A {c} square on a plain background.", "Simple drawing of a {c} square.", "One {c} square in the middle.",
            "A flat {c} shape, a square.", "Square, {c}, centred."]
COLOURS = {"red": (220, 40, 40), "green": (40, 170, 70), "blue": (40, 80, 210), "orange": (245, 140, 30)}


@dataclass
class Written:
    locations: list[str]
    image_root: str | None
    truth: dict[str, dict] = field(default_factory=dict)  # key -> what the sample must say
    records: int = 0  # annotation records written (images, or questions for QA sets)


def _save(image: Image.Image, path: Path, fmt: str = "JPEG") -> Image.Image:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=fmt)
    return image


def _page(lines: list[str], language: str, seed: int):
    page = render_page(lines, language, seed=seed, condition="clean", width=360)
    return page.image, [list(box) for box in page.boxes]


def _quad(box) -> list[list[int]]:
    x1, y1, x2, y2 = box
    return [[x1, y1], [x2, y1], [x2, y2], [x1, y2]]


def _square(colour: str, size=(200, 160)) -> Image.Image:
    image = Image.new("RGB", size, (245, 245, 245))
    ImageDraw.Draw(image).rectangle((60, 40, 140, 120), fill=COLOURS[colour])
    return image


def _lines(rng: random.Random, language: str, count: int = 2) -> list[str]:
    return rng.sample(ZH_LINES if language == "zh" else EN_LINES, count)


def _json(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")


# ---- scene text ------------------------------------------------------------------------------------


def _scene_text(rng, language: str, i: int):
    """(image, legible lines with boxes, an illegible box): two lines of text and a smudge."""
    lines = _lines(rng, language)
    image, boxes = _page(lines, language, rng.randrange(10**6))
    smudge = [10, image.height - 12, 60, image.height - 2]
    return image, list(zip(lines, boxes, strict=True)), smudge


def write_lsvt(data: Path, n: int, rng) -> Written:
    labels, truth = {}, {}
    for i in range(n):
        image, lines, smudge = _scene_text(rng, "zh", i)
        key = f"gt_{i}"
        if i < n - 1:  # the last one's image is missing from both archives
            _save(image, data / f"lsvt/train_full_images_{i % 2}/{key}.jpg")
        labels[key] = [{"transcription": t, "points": _quad(b), "illegibility": False} for t, b in lines]
        labels[key].insert(1, {"transcription": "###", "points": _quad(smudge), "illegibility": True})
        truth[key] = {"lines": lines, "size": image.size}
    labels["gt_0"].append({"transcription": "坏", "points": [[1, 2], [3, 4]], "illegibility": False})  # malformed
    _json(data / "lsvt/train_full_labels.json", labels)
    return Written(["lsvt/train_full_labels.json"], "lsvt", truth, n)


def write_art(data: Path, n: int, rng) -> Written:
    labels, truth = {}, {}
    for i in range(n):
        language = ("en", "zh")[i % 2]
        image, lines, smudge = _scene_text(rng, language, i)
        key = f"gt_{i}"
        _save(image, data / f"art/train_images/{key}.jpg")
        regions = []
        for text, (x1, y1, x2, y2) in lines:  # curved text: a polygon of 8 points along the box
            xm = (x1 + x2) // 2
            points = [[x1, y1], [xm, y1], [x2, y1], [x2, y2], [xm, y2], [x1, y2], [x1, (y1 + y2) // 2], [x1, y1 + 1]]
            regions.append({"transcription": text, "points": points, "language": "Chinese" if language == "zh" else "Latin",
                            "illegibility": False})
        regions.append({"transcription": "###", "points": _quad(smudge), "language": "None", "illegibility": True})
        labels[key] = regions
        truth[key] = {"lines": lines, "size": image.size, "language": language}
    _json(data / "art/train_labels.json", labels)
    return Written(["art/train_labels.json"], "art", truth, n)


def write_rects(data: Path, n: int, rng) -> Written:
    truth = {}
    for i in range(n):
        image, lines, smudge = _scene_text(rng, "zh", i)
        stem = f"train_ReCTS_{i + 1:06d}"
        _save(image, data / f"rects/train/img/{stem}.jpg")
        flat = [c for text, box in lines for c in [v for p in _quad(box) for v in p]]
        chars = [{"points": flat[:8], "transcription": lines[0][0][0], "ignore": 0}]
        gt = {"chars": chars, "lines": [{"points": [v for p in _quad(b) for v in p], "transcription": t, "ignore": 0}
                                        for t, b in lines]}
        gt["lines"].append({"points": [v for p in _quad(smudge) for v in p], "transcription": "", "ignore": 1})
        _json(data / f"rects/train/gt/{stem}.json", gt)
        truth[f"gt-{stem}"] = {"lines": lines, "size": image.size}
    return Written(["rects/train/gt/*.json"], "rects/train", truth, n)


def write_rctw17(data: Path, n: int, rng) -> Written:
    truth = {}
    for i in range(n):
        image, lines, smudge = _scene_text(rng, "zh", i)
        part = f"part{1 + i % 2}"
        _save(image, data / f"rctw-17/train/{part}/image_{i}.jpg")
        rows = []
        for j, (text, box) in enumerate(lines):
            if i == 0 and j == 1:
                text = text[:3] + "，" + text[3:] + ", 号"  # commas inside the quoted text
                lines[j] = (text, box)
            rows.append(",".join(str(v) for p in _quad(box) for v in p) + f',0,"{text}"')
        rows.append(",".join(str(v) for p in _quad(smudge) for v in p) + ',1,"###"')
        path = data / f"rctw-17/train/{part}/image_{i}.txt"
        path.write_bytes("\ufeff".encode() + "\r\n".join(rows).encode("utf-8"))
        truth[f"{part}-image_{i}"] = {"lines": lines, "size": image.size}
    return Written(["rctw-17/train/part*/image_*.txt"], "rctw-17/train", truth, n)


def write_ctw(data: Path, n: int, rng) -> Written:
    records, truth = [], {}
    for i in range(n):
        image, lines, smudge = _scene_text(rng, "zh", i)
        image_id = f"{2000000 + i:07d}"
        _save(image, data / f"ctw/images-trainval/{image_id}.jpg")
        sentences = []
        for text, (x1, y1, x2, y2) in lines:  # one polygon per character, side by side
            step = (x2 - x1) / len(text)
            sentences.append([{"text": ch, "polygon": [[x1 + k * step, y1], [x1 + (k + 1) * step, y1],
                                                        [x1 + (k + 1) * step, y2], [x1 + k * step, y2]],
                               "attributes": [], "is_chinese": True} for k, ch in enumerate(text)])
        records.append({"image_id": image_id, "file_name": f"{image_id}.jpg", "width": image.width,
                        "height": image.height, "annotations": sentences,
                        "ignore": [{"polygon": _quad(smudge), "bbox": [smudge[0], smudge[1], 50, 10]}]})
        truth[image_id] = {"lines": lines, "size": image.size}
    path = data / "ctw/train.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return Written(["ctw/train.jsonl"], "ctw/images-trainval", truth, n)


def write_coco_text(data: Path, n: int, rng) -> Written:
    imgs, anns, to_anns, truth = {}, {}, {}, {}
    for i in range(n + 1):
        image, lines, smudge = _scene_text(rng, "en", i)
        image_id = 900_000 + i
        name = f"COCO_train2014_{image_id:012d}.jpg"
        _save(image, data / f"coco/train2014/{name}")
        imgs[str(image_id)] = {"id": image_id, "set": "train" if i < n else "val", "width": image.width,
                               "height": image.height, "file_name": name}
        to_anns[str(image_id)] = []
        for text, (x1, y1, x2, y2) in lines:
            aid = len(anns) + 1000
            anns[str(aid)] = {"mask": [], "class": "machine printed", "bbox": [x1, y1, x2 - x1, y2 - y1],
                              "image_id": image_id, "id": aid, "language": "english", "area": 1.0,
                              "utf8_string": text, "legibility": "legible",
                              "polygon": [v for p in _quad((x1, y1, x2, y2)) for v in p]}
            to_anns[str(image_id)].append(aid)
        aid = len(anns) + 1000
        anns[str(aid)] = {"mask": [], "class": "others", "bbox": [smudge[0], smudge[1], 50, 10], "image_id": image_id,
                          "id": aid, "language": "na", "area": 1.0, "legibility": "illegible",
                          "polygon": [v for p in _quad(smudge) for v in p]}
        to_anns[str(image_id)].append(aid)
        if i < n:
            truth[str(image_id)] = {"lines": lines, "size": image.size}
    _json(data / "coco-text/cocotext.v2.json", {"cats": {}, "anns": anns, "imgs": imgs, "imgToAnns": to_anns,
                                                "info": {"version": "2.0"}})
    return Written(["coco-text/cocotext.v2.json"], "coco/train2014", truth, n)


def write_textocr(data: Path, n: int, rng) -> Written:
    imgs, anns, to_anns, truth = {}, {}, {}, {}
    for i in range(n):
        image, lines, smudge = _scene_text(rng, "en", i)
        image_id = f"{rng.getrandbits(64):016x}"
        _save(image, data / f"textocr/train_images/{image_id}.jpg")
        imgs[image_id] = {"id": image_id, "width": image.width, "height": image.height, "set": "train",
                          "file_name": f"train/{image_id}.jpg"}
        words = [*lines, (".", tuple(smudge))]
        to_anns[image_id] = []
        for j, (text, (x1, y1, x2, y2)) in enumerate(words):
            aid = f"{image_id}_{j + 1}"
            anns[aid] = {"id": aid, "image_id": image_id, "bbox": [x1, y1, x2 - x1, y2 - y1],
                         "points": [v for p in _quad((x1, y1, x2, y2)) for v in p], "utf8_string": text,
                         "area": float((x2 - x1) * (y2 - y1))}
            to_anns[image_id].append(aid)
        truth[image_id] = {"lines": lines, "size": image.size}
    _json(data / "textocr/TextOCR_0.1_train.json", {"imgs": imgs, "anns": anns, "img2Anns": to_anns})
    # file_name is train/<id>.jpg; TextVQA's archive unpacks as train_images/<id>.jpg (image_path_strip: 1)
    return Written(["textocr/TextOCR_0.1_train.json"], "textocr/train_images", truth, n)


# ---- documents, charts, questions ----------------------------------------------------------------


def write_synthdog(data: Path, n: int, rng) -> Written:
    truth, locations = {}, []
    for language in ("en", "zh"):
        rows = []
        for i in range(max(1, n // 2)):
            lines = _lines(rng, language, 3)
            image, _ = _page(lines, language, rng.randrange(10**6))
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=90)
            text = " ".join(lines)
            rows.append({"image": {"bytes": buffer.getvalue(), "path": None},
                         "ground_truth": json.dumps({"gt_parse": {"text_sequence": text}}, ensure_ascii=False)})
            truth[f"{language}:{i}"] = {"text": text, "language": language}
        digest = f"{rng.getrandbits(64):016x}"
        relative = f"synthdog/synthdog-{language}/data/train-00000-of-00001-{digest}.parquet"
        (data / relative).parent.mkdir(parents=True, exist_ok=True)
        image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
        table = pa.table({"image": pa.array([r["image"] for r in rows], image_type),
                          "ground_truth": [r["ground_truth"] for r in rows]})
        pq.write_table(table, data / relative)
        locations.append(f"synthdog/synthdog-{language}/data/train-*.parquet")
    return Written(locations, None, truth, 2 * max(1, n // 2))


def _qa_images(rng, n: int, folder: Path, name) -> list[tuple[str, list[str], Image.Image]]:
    out = []
    for i in range(n):
        lines = _lines(rng, "en", 2)
        image, _ = _page(lines, "en", rng.randrange(10**6))
        relative = name(i)
        if i < n - 1:  # the last image is missing
            _save(image, folder / relative, "PNG" if relative.endswith(".png") else "JPEG")
        out.append((relative, lines, image))
    return out


def _questions(lines: list[str]) -> list[tuple[str, list[str]]]:
    """Two questions on one image; the first with differing answers (the most frequent is the answer)."""
    first = lines[0]
    return [("What is written on the first line?", [first, first.lower(), "no idea", first]),
            ("How many lines of text are there?", ["2"])]


def _qa_truth(questions) -> dict:
    return {"qa": [(q, answers[0]) for q, answers in questions]}


def write_docvqa(data: Path, n: int, rng) -> Written:
    records, truth = [], {}
    for i, (relative, lines, _) in enumerate(_qa_images(rng, n, data / "docvqa/train", lambda i: f"documents/doc{i:04d}_p1.png")):
        questions = _questions(lines)
        for j, (question, answers) in enumerate(questions):
            records.append({"questionId": 1000 * i + j, "question": question, "image": relative, "docId": i,
                            "ucsf_document_id": f"doc{i:04d}", "ucsf_document_page_no": "1", "answers": answers,
                            "data_split": "train", "question_types": ["layout"]})
        truth[relative] = _qa_truth(questions)
    records.append({"questionId": 99, "question": "What is the title?", "image": "documents/doc0000_p1.png",
                    "answers": [], "data_split": "train"})  # an empty answer: left out of its conversation
    rng.shuffle(records)  # questions of one page are not contiguous in the file
    _json(data / "docvqa/train/train_v1.0.json", {"dataset_name": "docvqa", "dataset_split": "train",
                                                   "dataset_version": "1.0", "data": records})
    return Written(["docvqa/train/train_v1.0.json"], "docvqa/train", truth, len(records))


def write_infovqa(data: Path, n: int, rng) -> Written:
    records, truth = [], {}
    for i, (relative, lines, _) in enumerate(_qa_images(rng, n, data / "infovqa/infographicsvqa_images", lambda i: f"{30000 + i}.jpeg")):
        questions = _questions(lines)
        records += [{"questionId": 1000 * i + j, "question": q, "image_local_name": relative, "answers": a,
                     "answer_type": ["single span"]} for j, (q, a) in enumerate(questions)]
        truth[relative] = _qa_truth(questions)
    _json(data / "infovqa/infographicsVQA_train_v1.0.json", {"dataset_name": "infographicsVQA", "data": records})
    return Written(["infovqa/infographicsVQA_train_v1.0.json"], "infovqa/infographicsvqa_images", truth, len(records))


def write_st_vqa(data: Path, n: int, rng) -> Written:
    records, truth = [], {}
    names = lambda i: f"coco-text/COCO_train2014_{800_000 + i:012d}.jpg" if i % 2 else f"textVQA/{i:016x}.jpg"  # noqa: E731
    for i, (relative, lines, _) in enumerate(_qa_images(rng, n, data / "st-vqa/train_images", names)):
        questions = _questions(lines)
        records += [{"dataset": relative.split("/")[0], "file_name": relative.split("/")[1], "file_path": relative,
                     "question": q, "answers": a, "question_id": 1000 * i + j, "set_name": "train"}
                    for j, (q, a) in enumerate(questions)]
        truth[relative] = _qa_truth(questions)
    _json(data / "st-vqa/train_task_3.json", {"dataset": "ST-VQA", "task_name": "task_3", "data": records})
    return Written(["st-vqa/train_task_3.json"], "st-vqa/train_images", truth, len(records))


def _chart(rng) -> tuple[Image.Image, list[str], list[float]]:
    labels = rng.sample(["2019", "2020", "2021", "2022"], 3)
    values = rng.sample([12, 18, 25, 37, 42], 3)
    image = Image.new("RGB", (300, 220), "white")
    draw = ImageDraw.Draw(image)
    for k, value in enumerate(values):
        draw.rectangle((30 + 90 * k, 200 - 4 * value, 90 + 90 * k, 200), fill=(40, 80, 210))
        draw.text((40 + 90 * k, 202), labels[k], fill="black")
    return image, labels, values


def write_chartqa(data: Path, n: int, rng) -> Written:
    truth, locations, total = {}, [], 0
    for part in ("human", "augmented"):
        records = []
        for _ in range(max(1, n // 2)):
            image, labels, values = _chart(rng)
            name = f"{part[:3]}{rng.getrandbits(40):012d}.png"
            _save(image, data / f"chartqa/train/png/{name}", "PNG")
            best = labels[values.index(max(values))]
            questions = [("Which year has the highest value?", best), ("What is the highest value?", f"{max(values)}")]
            records += [{"imgname": name, "query": q, "label": a} for q, a in questions]
            truth[name] = {"qa": questions}
        _json(data / f"chartqa/train/train_{part}.json", records)
        locations.append(f"chartqa/train/train_{part}.json")
        total += len(records)
    return Written(locations, "chartqa/train", truth, total)


def write_plotqa(data: Path, n: int, rng) -> Written:
    pairs, truth = [], {}
    for i in range(n):
        image, labels, values = _chart(rng)
        _save(image, data / f"plotqa/train/png/{i}.png", "PNG")
        questions = [("What is the maximum value?", max(values)), ("How many bars are there?", 3)]
        pairs += [{"image_index": i, "question_string": q, "answer": a, "answer_bbox": [], "template": "data_retrieval",
                   "type": "structural", "question_id": 10 * i + j} for j, (q, a) in enumerate(questions)]
        truth[str(i)] = {"qa": [(q, str(a)) for q, a in questions]}
    _json(data / "plotqa/train/qa_pairs_V2.json", {"qa_pairs": pairs})
    return Written(["plotqa/train/qa_pairs_V2.json"], "plotqa/train", truth, len(pairs))


def write_mmc_inst(data: Path, n: int, rng) -> Written:
    lines, truth = [], {}
    for i in range(n):
        image, labels, values = _chart(rng)
        name = f"non-arxiv/chart_{i:05d}.png"
        _save(image, data / f"mmc-inst/images/{name}", "PNG")
        question = "Describe the trend shown in the chart."
        answer = f"The values go {' then '.join(str(v) for v in values)} over {', '.join(labels)}."
        lines.append({"image_id": name, "question": question, "answer": answer})
        truth[name] = {"qa": [(question, answer)]}
    path = data / "mmc-inst/mmc_instruction_non-arxiv_text.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    return Written(["mmc-inst/mmc_instruction_*_text.jsonl"], "mmc-inst/images", truth, n)


# ---- captions ----------------------------------------------------------------------------------------


def write_coco_karpathy(data: Path, n: int, rng) -> Written:
    images, truth = [], {}
    for i in range(n + 1):
        colour = rng.choice(tuple(COLOURS))
        folder = "train2014" if i % 2 == 0 else "val2014"
        name = f"COCO_{folder}_{100 + i:012d}.jpg"
        _save(_square(colour), data / f"coco/{folder}/{name}")
        split = "val" if i == n else ("train" if i % 2 == 0 else "restval")  # val: not kept
        sentences = [{"tokens": [], "raw": c.format(c=colour), "imgid": i, "sentid": 5 * i + k}
                     for k, c in enumerate(CAPTIONS)]
        images.append({"filepath": folder, "sentids": [s["sentid"] for s in sentences], "filename": name, "imgid": i,
                       "split": split, "sentences": sentences, "cocoid": 100 + i})
        if split != "val":
            truth[str(100 + i)] = {"captions": [s["raw"] for s in sentences]}
    _json(data / "coco/dataset_coco.json", {"images": images, "dataset": "coco"})
    return Written(["coco/dataset_coco.json"], "coco", truth, n + 1)


def write_textcaps(data: Path, n: int, rng) -> Written:
    records, truth = [], {}
    for i in range(n):
        lines = _lines(rng, "en", 1)
        image, _ = _page(lines, "en", rng.randrange(10**6))
        image_id = f"{rng.getrandbits(64):016x}"
        _save(image, data / f"textcaps/train_images/{image_id}.jpg")
        captions = [f'A sign that reads "{lines[0]}".', f"White sign with the words {lines[0]}."]
        for k, text in enumerate(captions):
            records.append({"image_id": image_id, "image_classes": ["Sign"], "flickr_original_url": "",
                            "flickr_300k_url": "", "image_width": image.width, "image_height": image.height,
                            "set_name": "train", "image_name": image_id, "image_path": f"train/{image_id}.jpg",
                            "caption_id": 10 * i + k, "caption_str": text, "caption_tokens": text.split(),
                            "reference_strs": captions, "reference_tokens": []})
        truth[image_id] = {"captions": captions}
    _json(data / "textcaps/TextCaps_0.1_train.json", {"dataset_type": "train", "dataset_name": "textcaps",
                                                     "dataset_version": "0.1", "data": records})
    return Written(["textcaps/TextCaps_0.1_train.json"], "textcaps/train_images", truth, len(records))


def write_all_seeing(data: Path, n: int, rng) -> Written:
    records, truth = [], {}
    for i in range(n):
        colour = rng.choice(tuple(COLOURS))
        name = f"sa_{223750 + i}.jpg"
        if i < n - 1:  # the last image is missing
            _save(_square(colour), data / f"all-seeing/images/{name}")
        box = "<box>[[300, 250, 700, 750]]</box>"
        turns = [{"from": "human", "value": f"<image>\nWhere is <ref>the {colour} square</ref>?"},
                 {"from": "gpt", "value": f"<ref>The {colour} square</ref>{box} is in the middle."}]
        if i % 2:  # multi-turn
            turns += [{"from": "human", "value": f"What is inside {box}?"}, {"from": "gpt", "value": f"A {colour} square."}]
        records.append({"id": f"as_{i}", "image": name, "conversations": turns})
        truth[f"as_{i}"] = {"conversations": turns}
    _json(data / "all-seeing/as_pretrain_10m.json", records)
    return Written(["all-seeing/as_pretrain_10m.json"], "all-seeing/images", truth, n)


WRITERS = {
    "all_seeing": write_all_seeing,
    "lsvt": write_lsvt, "art": write_art, "rects": write_rects, "rctw17": write_rctw17, "ctw": write_ctw,
    "coco_text": write_coco_text, "textocr": write_textocr, "synthdog": write_synthdog, "docvqa": write_docvqa,
    "infovqa": write_infovqa, "st_vqa": write_st_vqa, "chartqa": write_chartqa, "plotqa": write_plotqa,
    "mmc_inst": write_mmc_inst, "coco_karpathy": write_coco_karpathy, "textcaps": write_textcaps,
}


def write(name: str, data: Path, n: int = 4, seed: int = 0) -> Written:
    """Write the tiny copy of preset ``name`` under ``data``."""
    return WRITERS[name](Path(data), n, random.Random(f"{seed}:{name}"))
