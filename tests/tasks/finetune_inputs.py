"""Tiny copies of Table 1b's datasets in the layout their publishers ship, with the awkward cases.

Each ``write_<dataset>(root)`` writes one dataset under ``root/<dataset>/`` exactly as its archive
unpacks (file names, nesting, field names, JSON shapes) and returns a :class:`Published`: the
annotation files (what a source's ``locations`` name) and the image folder (its ``image_root``).
Every copy carries the cases the real files have: several differing answers, several questions on
one image, a missing image, an empty answer or a broken record, Chinese text, text-only records,
system turns. ``WRITERS`` maps each preset to its writer (the conversation and text-only ones are in
:mod:`tests.tasks.finetune_inputs_chat`); ``write_all(root)`` writes every one, by preset name.

The images are small generated pictures of distinct sizes (so box coordinates scaled to the 0..1000
grid can be checked); none is a copy of a real dataset's.
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from tests.tasks.finetune_inputs_base import Published, _image, _json, _jsonl
from tests.tasks.finetune_inputs_chat import CHAT_WRITERS
from tests.tasks.finetune_inputs_more import MORE_WRITERS

# ---------------------------------------------------------------- general QA (VQA-style)

def _vqa_pair(base: Path, questions_name: str, annotations_name: str, with_raw: bool) -> Published:
    """VQA v2 / OK-VQA: questions and annotations files joined by question_id; COCO train2014 images."""
    images = base / "train2014"
    for image_id, size in ((9, (64, 48)), (25, (80, 40))):
        _image(images / f"COCO_train2014_{image_id:012d}.jpg", size, image_id)
    questions = [
        {"image_id": 9, "question": "What color is the bus?", "question_id": 9000},
        {"image_id": 9, "question": "How many people are there?", "question_id": 9001},
        {"image_id": 25, "question": "Is it raining?", "question_id": 25000},
        {"image_id": 25, "question": "What is unanswered?", "question_id": 25001},  # all answers empty
        {"image_id": 77, "question": "What animal is this?", "question_id": 77000},  # image missing
    ]

    def answers(words):
        return [{"answer": w, "answer_confidence": "yes", "answer_id": i + 1, **({"raw_answer": w} if with_raw else {})}
                for i, w in enumerate(words)]

    annotations = [
        {"question_id": 9000, "image_id": 9, "question_type": "what color is the", "answer_type": "other",
         "multiple_choice_answer": "red",
         "answers": answers(["red", "red", "dark red", "red", "maroon", "red", "red", "dark red", "red", "red"])},
        {"question_id": 9001, "image_id": 9, "question_type": "how many", "answer_type": "number",
         "multiple_choice_answer": "2", "answers": answers(["2", "3", "2", "2", "two", "2", "3", "2", "2", "2"])},
        {"question_id": 25000, "image_id": 25, "question_type": "is it", "answer_type": "yes/no",
         "multiple_choice_answer": "no", "answers": answers(["no"] * 6 + ["yes"] * 4)},
        {"question_id": 25001, "image_id": 25, "question_type": "what is", "answer_type": "other",
         "multiple_choice_answer": "", "answers": answers([""] * 10)},
        {"question_id": 77000, "image_id": 77, "question_type": "what animal is", "answer_type": "other",
         "multiple_choice_answer": "dog", "answers": answers(["dog"] * 10)},
    ]
    header = {"info": {}, "license": {}, "data_subtype": "train2014", "task_type": "Open-Ended", "data_type": "mscoco"}
    q = _json(base / questions_name, {**header, "questions": questions})
    a = _json(base / annotations_name, {**header, "annotations": annotations})
    return Published(base, [q], images, missing_images=["COCO_train2014_000000000077.jpg"], beside=[a])


def write_vqav2(root: Path) -> Published:
    return _vqa_pair(root / "vqav2", "v2_OpenEnded_mscoco_train2014_questions.json",
                     "v2_mscoco_train2014_annotations.json", with_raw=False)


def write_okvqa(root: Path) -> Published:
    return _vqa_pair(root / "okvqa", "OpenEnded_mscoco_train2014_questions.json",
                     "mscoco_train2014_annotations.json", with_raw=True)


def write_gqa(root: Path) -> Published:
    """GQA balanced questions: one JSON object keyed by question id; images/<imageId>.jpg."""
    base = root / "gqa"
    _image(base / "images" / "2354786.jpg", (72, 54), 11)
    _image(base / "images" / "n161313.jpg", (40, 60), 12)
    questions = {
        "02930152": {"imageId": "2354786", "question": "Is the sky dark?", "answer": "yes",
                     "fullAnswer": "Yes, the sky is dark.", "isBalanced": True, "types": {"structural": "verify"}},
        "07333408": {"imageId": "2354786", "question": "What is on the white wall?", "answer": "pipe",
                     "fullAnswer": "The pipe is on the wall.", "isBalanced": True, "types": {"structural": "query"}},
        "05451384": {"imageId": "n161313", "question": "Who is wearing the shirt?", "answer": "man",
                     "fullAnswer": "The man is wearing a shirt.", "isBalanced": True, "types": {"structural": "query"}},
        "201307251": {"imageId": "missing404", "question": "What is this?", "answer": "cat",
                      "fullAnswer": "It is a cat.", "isBalanced": True, "types": {}},
        "201640614": {"imageId": "n161313", "question": "Broken record without an answer?", "isBalanced": True},
    }
    return Published(base, [_json(base / "questions" / "train_balanced_questions.json", questions)],
                     base / "images", missing_images=["missing404.jpg"])


def write_textvqa(root: Path) -> Published:
    """TextVQA 0.5.1: {"data": [...]} with ten answers per question; train_images/<image_id>.jpg."""
    base = root / "textvqa"
    _image(base / "train_images" / "0054c91397f2fe05.jpg", (60, 60), 21)
    records = [
        {"question": "what is the brand of phone?", "image_id": "0054c91397f2fe05", "question_id": 0,
         "answers": ["nokia"] * 7 + ["nokia phone", "nokia", "toshiba"], "image_width": 1024, "image_height": 1024,
         "set_name": "train", "image_classes": ["Mobile phone"], "flickr_original_url": "", "flickr_300k_url": ""},
        {"question": "what does the small white text say?", "image_id": "0054c91397f2fe05", "question_id": 1,
         "answers": ["copenhagen"] * 4 + ["copenhagen denmark"] * 5 + ["denmark"], "image_width": 1024,
         "image_height": 1024, "set_name": "train", "image_classes": [], "flickr_original_url": "", "flickr_300k_url": ""},
        {"question": "whose picture is missing?", "image_id": "ffff000000000000", "question_id": 2,
         "answers": ["none"] * 10, "set_name": "train"},
    ]
    payload = {"dataset_type": "train", "dataset_name": "textvqa", "dataset_version": "0.5.1", "data": records}
    return Published(base, [_json(base / "TextVQA_0.5.1_train.json", payload)], base / "train_images",
                     missing_images=["ffff000000000000.jpg"])


def write_a_okvqa(root: Path) -> Published:
    """A-OKVQA v1.0: a JSON array; COCO 2017 images train2017/<image_id:012d>.jpg."""
    base = root / "a_okvqa"
    _image(base / "train2017" / "000000299207.jpg", (64, 64), 31)
    records = [
        {"split": "train", "image_id": 299207, "question_id": "22MexNkBPpdZGX6sxbxVBH",
         "question": "What is the man by the bags awaiting?", "choices": ["skateboarder", "train", "delivery", "cab"],
         "correct_choice_idx": 3, "direct_answers": ["ride", "ride", "bus", "taxi", "travelling", "traffic",
                                                     "taxi", "cab", "cab", "his ride"],
         "difficult_direct_answer": False, "rationales": ["A train would not be on the street."]},
        {"split": "train", "image_id": 299207, "question_id": "2Rk8QKuoCvMVyjBmdW3m9N",
         "question": "Where will the man go?", "choices": ["home", "airport", "school", "gym"],
         "correct_choice_idx": 7, "direct_answers": ["airport"] * 10, "difficult_direct_answer": False,
         "rationales": []},  # index out of range: broken
    ]
    return Published(base, [_json(base / "aokvqa_v1p0_train.json", records)], base / "train2017")


def write_vsr(root: Path) -> Published:
    """VSR: JSON Lines of {image, image_link, caption, label, relation, ...}; COCO 2017 images by name."""
    base = root / "vsr"
    _image(base / "images" / "000000296471.jpg", (64, 48), 141)
    records = [
        {"image": "000000296471.jpg", "image_link": "http://images.cocodataset.org/train2017/000000296471.jpg",
         "caption": "The cat is inside the refrigerator.", "label": 0, "relation": "inside", "annotator_id": 27,
         "vote_true_validator_id": "[]", "vote_false_validator_id": "[1, 2, 20]", "reference_frame": None},
        {"image": "000000296471.jpg", "image_link": "http://images.cocodataset.org/train2017/000000296471.jpg",
         "caption": "The cat is near the bowl.", "label": 1, "relation": "near", "annotator_id": 2,
         "vote_true_validator_id": "[2]", "vote_false_validator_id": "[]", "reference_frame": None},
        {"image": "000000363875.jpg", "image_link": "http://images.cocodataset.org/val2017/000000363875.jpg",
         "caption": "The motorcycle is far away from the bus.", "label": 0, "relation": "far away from"},
    ]
    return Published(base, [_jsonl(base / "train.jsonl", records)], base / "images",
                     missing_images=["000000363875.jpg"])


def write_lrv_instruction(root: Path) -> Published:
    """LRV-Instruction's chart part: chart_release_update.json, an array of {image_id, question, answer}."""
    base = root / "lrv_instruction"
    _image(base / "chart_image" / "statistic_id1001.png", (80, 60), 151)
    records = [
        {"image_id": "statistic_id1001.png", "question": "What was the revenue in 2019?",
         "answer": "The revenue in 2019 was 3.2 billion U.S. dollars."},
        {"image_id": "statistic_id1001.png", "question": "What does the pie chart say about 1850?",
         "answer": "The chart is a bar chart and shows no data for 1850."},
        {"image_id": "statistic_id1001.png", "question": "Empty answer?", "answer": ""},
    ]
    return Published(base, [_json(base / "chart_release_update.json", records)], base / "chart_image")


# ---------------------------------------------------------------- science

def write_ai2d(root: Path) -> Published:
    """AI2D: one questions file per diagram, ai2d/questions/<N>.png.json; ai2d/images/<N>.png."""
    base = root / "ai2d"
    _image(base / "ai2d" / "images" / "0.png", (50, 70), 41)
    _image(base / "ai2d" / "images" / "1.png", (70, 50), 42)
    first = {"imageName": "0.png", "questions": {
        "What is A in the diagram?": {"abcLabel": True, "answerTexts": ["ears", "nose", "mouth", "face"],
                                      "correctAnswer": 3, "questionId": "0.png-0"},
        "Which part is used to smell?": {"abcLabel": False, "answerTexts": ["eyes", "nose", "chin", "ears"],
                                         "correctAnswer": 1, "questionId": "0.png-1"}}}
    second = {"imageName": "1.png", "questions": {
        "Which stage comes last?": {"abcLabel": False, "answerTexts": ["egg", "larva"], "correctAnswer": 9,
                                    "questionId": "1.png-0"}}}  # correctAnswer out of range: dropped
    third = {"imageName": "2.png", "questions": {"What eats grass?": {
        "abcLabel": False, "answerTexts": ["cow", "lion"], "correctAnswer": 0, "questionId": "2.png-0"}}}
    files = [_json(base / "ai2d" / "questions" / f"{name}.json", payload)
             for name, payload in (("0.png", first), ("1.png", second), ("2.png", third))]
    return Published(base, files, base / "ai2d" / "images", missing_images=["2.png"])


def write_scienceqa(root: Path) -> Published:
    """ScienceQA: problems.json keyed by problem id (image null for text-only); <split>/<pid>/image.png."""
    base = root / "scienceqa"
    _image(base / "train" / "5" / "image.png", (90, 45), 51)
    problems = {
        "5": {"question": "Which of these states is farthest north?", "choices": ["West Virginia", "Louisiana",
              "Arizona", "Oklahoma"], "answer": 0, "hint": "", "image": "image.png", "task": "closed choice",
              "grade": "grade2", "subject": "social science", "topic": "geography", "category": "Geography",
              "skill": "Read a map: cardinal directions", "lecture": "Maps have four cardinal directions.",
              "solution": "West Virginia is farthest north.", "split": "train"},
        "6": {"question": "Which word would you find on a dictionary page?", "choices": ["bake", "quiet"],
              "answer": 1, "hint": "Guide words: paste - rotten", "image": None, "task": "closed choice",
              "grade": "grade3", "subject": "language science", "topic": "reference-skills", "category": "",
              "skill": "", "lecture": "", "solution": "", "split": "train"},
        "7": {"question": "Which is a solid?", "choices": ["milk", "rock"], "answer": 1, "hint": "",
              "image": "image.png", "task": "closed choice", "grade": "grade1", "subject": "natural science",
              "topic": "physics", "category": "", "skill": "", "lecture": "", "solution": "", "split": "train"},
    }
    splits = {"train": ["5", "6", "7"], "val": [], "test": []}
    _json(base / "pid_splits.json", splits)  # shipped beside it; the problems carry their split too
    return Published(base, [_json(base / "problems.json", problems)], base, missing_images=["train/7/image.png"])


# ---------------------------------------------------------------- chart, mathematics, OCR

def write_dvqa(root: Path) -> Published:
    """DVQA: train_qa.json, a JSON array of {image, question, answer, ...}; images/<image>."""
    base = root / "dvqa"
    _image(base / "images" / "bar_train_00000000.png", (64, 64), 61)
    records = [
        {"image": "bar_train_00000000.png", "question": "What is the label of the first bar?", "answer": "glow",
         "question_type": "structure", "question_id": 0, "template_id": "label", "answer_bbox": [10, 50, 20, 8]},
        {"image": "bar_train_00000000.png", "question": "How many bars are there?", "answer": "3",
         "question_type": "structure", "question_id": 1, "template_id": "count", "answer_bbox": []},
    ]
    return Published(base, [_json(base / "qa" / "train_qa.json", records)], base / "images")


def write_ocrvqa(root: Path) -> Published:
    """OCR-VQA: dataset.json keyed by book id with parallel question/answer lists; images/<id>.jpg."""
    base = root / "ocrvqa"
    _image(base / "images" / "1935202119.jpg", (40, 64), 71)
    records = {
        "1935202119": {"imageURL": "http://ecx.images-amazon.com/images/I/51ZXkW8mvlL.jpg",
                       "questions": ["Who wrote this book?", "What is the title of this book?", "Is this a comedy book?"],
                       "answers": ["Dave Ramsey", "The Total Money Makeover", "No"], "title": "The Total Money Makeover",
                       "authorName": "Dave Ramsey", "genre": "Business & Money", "split": 1},
        "0000000000": {"imageURL": "http://example.invalid/x.jpg", "questions": ["Who wrote this book?"],
                       "answers": [], "title": "", "authorName": "", "genre": "", "split": 1},  # lists disagree
    }
    return Published(base, [_json(base / "dataset.json", records)], base / "images")


def write_tabmwp(root: Path) -> Published:
    """TabMWP: problems_train.json keyed by pid (free text or multiple choice); tables/<pid>.png."""
    base = root / "tabmwp"
    _image(base / "tables" / "1.png", (80, 40), 81)
    _image(base / "tables" / "2.png", (80, 40), 82)
    problems = {
        "1": {"question": "How much money does Tim need to buy a mug and a pen?", "choices": None, "answer": "7",
              "unit": "$", "table_title": None, "table": "mug | $5\npen | $2", "row_num": 2, "column_num": 2,
              "solution": "Add: $5 + $2 = $7.", "ques_type": "free_text", "ans_type": "integer_number",
              "grade": 3, "split": "train"},
        "2": {"question": "Which is cheaper?", "choices": ["mug", "pen"], "answer": "pen", "unit": None,
              "table_title": None, "table": "mug | $5\npen | $2", "row_num": 2, "column_num": 2,
              "solution": "The pen costs less.", "ques_type": "multi_choice", "ans_type": "extractive_text",
              "grade": 2, "split": "train"},
    }
    return Published(base, [_json(base / "problems_train.json", problems)], base / "tables")


def write_geometry3k(root: Path) -> Published:
    """Geometry3K: one folder per problem, train/<id>/data.json beside train/<id>/img_diagram.png."""
    base = root / "geometry3k"
    _image(base / "train" / "0" / "img_diagram.png", (64, 64), 91)
    files = [
        _json(base / "train" / "0" / "data.json", {
            "id": 0, "problem_text": "Find x.", "choices": ["3", "5", "7", "9"], "answer": "B",
            "problem_type_graph": ["Triangle"], "problem_type_goal": ["Length"], "source": "Glencoe"}),
        _json(base / "train" / "1" / "data.json", {  # its diagram is missing
            "id": 1, "problem_text": "Find y.", "choices": ["1", "2", "3", "4"], "answer": "A"}),
    ]
    return Published(base, files, base / "train", missing_images=["1/img_diagram.png"])


def write_mathqa(root: Path) -> Published:
    """MathQA: train.json, an array of {Problem, Rationale, options (one string), correct, ...}; no images."""
    base = root / "mathqa"
    records = [
        {"Problem": "a train 120 m long passes a pole in 6 seconds . find its speed in m / s .",
         "Rationale": "\"speed = 120 / 6 = 20 m / s answer : c\"", "options": "a ) 10 , b ) 15 , c ) 20 , d ) 25 , e ) 30",
         "correct": "c", "annotated_formula": "divide(120, 6)", "linear_formula": "divide(n0,n1)|",
         "category": "physics"},
        {"Problem": "what is 1,000 + 200 ?", "Rationale": "", "options": "a ) 1,200 , b ) 1,100",
         "correct": "f", "annotated_formula": "", "linear_formula": "", "category": "general"},  # no option f
    ]
    return Published(base, [_json(base / "train.json", records)])


def write_cauldron(root: Path, subset: str = "clevr_math") -> Published:
    """The Cauldron (HuggingFaceM4/the_cauldron): <subset>/train-*.parquet, images embedded, texts as turns."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    def png(size):
        buffer = io.BytesIO()
        Image.new("RGB", size, (10, 200, 30)).save(buffer, format="PNG")
        return {"bytes": buffer.getvalue(), "path": None}

    rows = [
        {"images": [png((48, 32))], "texts": [
            {"user": "Subtract all red cubes. How many objects are left?", "assistant": "Answer: 3", "source": "clevr_math"},
            {"user": "Subtract all balls. How many objects are left?", "assistant": "Answer: 1", "source": "clevr_math"}]},
        {"images": [png((32, 32)), png((32, 32))], "texts": [  # two images: not read
            {"user": "Are they equal?", "assistant": "Yes.", "source": "clevr_math"}]},
        {"images": [png((40, 40))], "texts": [{"user": "How many?", "assistant": "", "source": "clevr_math"}]},
    ]
    path = root / "the_cauldron" / subset / "train-00000-of-00001.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return Published(path.parent, [str(path)])


# ---------------------------------------------------------------- grounding

def write_refcoco(root: Path, variant: str = "refcoco") -> Published:
    """RefCOCO/+/g as the Hub's Parquet (jxu124/<variant>): one row per referred object, COCO JSON inside."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    base = root / variant
    _image(base / "coco" / "train2014" / "COCO_train2014_000000581857.jpg", (200, 100), 101)

    def row(ref_id, ann_id, sentences, bbox, image_id=581857, width=200, height=100):
        file_name = f"COCO_train2014_{image_id:012d}.jpg"
        return {"sent_ids": [s[0] for s in sentences], "file_name": f"COCO_train2014_{image_id:012d}_{ann_id}.jpg",
                "ann_id": ann_id, "ref_id": ref_id, "image_id": image_id, "split": "train",
                "sentences": [{"raw": s[1], "sent": s[1].lower(), "sent_id": s[0], "tokens": s[1].lower().split()}
                              for s in sentences],
                "category_id": 1,
                "raw_anns": json.dumps({"segmentation": [[0, 0, 1, 1, 2, 2]], "area": 1.0, "iscrowd": 0,
                                        "image_id": image_id, "bbox": bbox, "category_id": 1, "id": ann_id}),
                "raw_image_info": json.dumps({"license": 1, "file_name": file_name, "height": height,
                                              "width": width, "id": image_id}),
                "raw_sentences": json.dumps([{"raw": s[1], "sent_id": s[0]} for s in sentences]),
                "image_path": f"coco/train2014/{file_name}", "bbox": bbox, "captions": [s[1] for s in sentences],
                "global_image_id": f"coco.{image_id}", "anns_id": str(ann_id)}

    rows = [
        row(0, 1719310, [(0, "The lady with the blue shirt"), (1, "lady w back to us")], [20.0, 10.0, 50.0, 80.0]),
        row(1, 1719311, [(2, "man on the right")], [150.0, 0.0, 50.0, 100.0]),
        row(2, 1719312, [(3, "broken box")], [10.0, 10.0, -5.0, 20.0]),  # negative width: dropped
        row(3, 9, [(4, "dog on a missing image")], [1.0, 1.0, 5.0, 5.0], image_id=404),
    ]
    path = base / "data" / "train-00000-of-00001.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return Published(base, [str(path)], base, missing_images=["coco/train2014/COCO_train2014_000000000404.jpg"])


def write_visual_genome(root: Path) -> Published:
    """Visual Genome 1.2: region_descriptions.json (regions per image) + image_data.json; VG_100K(_2)/<id>.jpg."""
    base = root / "visual_genome"
    _image(base / "VG_100K" / "1.jpg", (100, 50), 111)
    _image(base / "VG_100K_2" / "2.jpg", (50, 100), 112)
    regions = [
        {"id": 1, "regions": [
            {"region_id": 1382, "width": 40, "height": 20, "image_id": 1, "phrase": "the clock is green in colour",
             "y": 10, "x": 50},
            {"region_id": 1383, "width": 100, "height": 50, "image_id": 1, "phrase": "shade is along the street ",
             "y": 0, "x": 0},
            {"region_id": 1384, "width": 0, "height": 5, "image_id": 1, "phrase": "a zero-width region", "y": 3, "x": 3},
        ]},
        {"id": 2, "regions": [
            {"region_id": 4091, "width": 25, "height": 50, "image_id": 2, "phrase": "walk sign is lit up",
             "y": 25, "x": 10}]},
    ]
    image_data = [
        {"image_id": 1, "url": "https://cs.stanford.edu/people/rak248/VG_100K/1.jpg", "width": 100, "height": 50,
         "coco_id": None, "flickr_id": None},
        {"image_id": 2, "url": "https://cs.stanford.edu/people/rak248/VG_100K_2/2.jpg", "width": 50, "height": 100,
         "coco_id": None, "flickr_id": None},
    ]
    _json(base / "image_data.json", image_data)  # shipped beside it (sizes, URLs); the regions need no join
    return Published(base, [_json(base / "region_descriptions.json", regions)], base)


WRITERS = {
    "vqav2": write_vqav2, "okvqa": write_okvqa, "gqa": write_gqa, "textvqa": write_textvqa, "a_okvqa": write_a_okvqa,
    "vsr": write_vsr, "lrv_instruction": write_lrv_instruction, "ai2d": write_ai2d, "scienceqa": write_scienceqa,
    "dvqa": write_dvqa, "ocrvqa": write_ocrvqa, "mathqa": write_mathqa, "tabmwp": write_tabmwp,
    "geometry3k": write_geometry3k, "clevr_math": write_cauldron, "tqa": lambda root: write_cauldron(root, "tqa"),
    "refcoco": write_refcoco, "refcoco_plus": lambda root: write_refcoco(root, "refcoco_plus"),
    "refcocog": lambda root: write_refcoco(root, "refcocog"), "visual_genome": write_visual_genome,
    **CHAT_WRITERS, **MORE_WRITERS,
}


def write_all(root: Path) -> dict[str, Published]:
    """Every tiny published copy under ``root``, by preset name."""
    return {name: writer(Path(root)) for name, writer in WRITERS.items()}
