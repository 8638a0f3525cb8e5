"""Tiny published copies of VisualDialog, KVQA and ViQuAE (:mod:`tests.tasks.finetune_inputs`)."""

from __future__ import annotations

from pathlib import Path

from tests.tasks.finetune_inputs_base import Published, _image, _json, _jsonl


def write_visual_dialog(root: Path) -> Published:
    """visdial_1.0_train.json: dialogs whose rounds index data.questions / data.answers; COCO 2014 images
    under train2014/ and val2014/ (v1.0 train uses both)."""
    base = root / "visual_dialog"
    _image(base / "train2014" / "COCO_train2014_000000378466.jpg", (64, 48), 41)
    _image(base / "val2014" / "COCO_val2014_000000000042.jpg", (56, 48), 43)
    questions = ["is the photo in color", "how many people are there", "are they outside",
                 "what color is the cat?", "is it sunny"]
    answers = ["yes", "2", "no, they are in a kitchen", "black and white", "i can't tell"]
    dialogs = [
        {"image_id": 378466, "caption": "two people cooking in a kitchen", "dialog": [
            {"question": 0, "answer": 0, "answer_options": [0, 1, 2], "gt_index": 0},
            {"question": 1, "answer": 1, "answer_options": [1, 3, 4], "gt_index": 0},
            {"question": 2, "answer": 2, "answer_options": [2, 0, 1], "gt_index": 0}]},
        {"image_id": 42, "caption": "a cat on a sofa", "dialog": [  # its image is in val2014/
            {"question": 3, "answer": 3, "answer_options": [3, 4], "gt_index": 0},
            {"question": 4, "answer": 99, "answer_options": [4], "gt_index": 0}]},  # index out of range
        {"image_id": 999999, "caption": "a missing picture", "dialog": [
            {"question": 0, "answer": 0, "answer_options": [0], "gt_index": 0}]},
    ]
    payload = {"version": "1.0", "split": "train",
               "data": {"dialogs": dialogs, "questions": questions, "answers": answers}}
    return Published(base, [_json(base / "visdial_1.0_train.json", payload)], base,
                     missing_images=["train2014/COCO_train2014_000000999999.jpg"])


def write_kvqa(root: Path) -> Published:
    """dataset.json keyed by image id; KVQAimgs/<id>.jpg; ``split`` one value per published split."""
    base = root / "kvqa"
    _image(base / "KVQAimgs" / "24742.jpg", (48, 64), 51)
    _image(base / "KVQAimgs" / "21717.jpg", (64, 64), 53)
    records = {
        "24742": {"imgPath": "KVQAimgs/24742.jpg", "NamedEntities": ["Hartmut Nassauer"], "Qids": ["Q301358"],
                  "wikiCap": "Hartmut Nassauer in 2010", "Questions": ["Who is the person in the image?",
                                                                      "In which year was this person born?"],
                  "ParaQuestions": ["Who is this?", "When was he born?"], "Answers": ["Hartmut Nassauer", 1942],
                  "Type of Question": [["spatial"], ["1-hop"]], "split": [1, 1, 2, 1, 3]},
        "21717": {"imgPath": "KVQAimgs/21717.jpg", "NamedEntities": ["Ada Lovelace"], "Qids": ["Q7259"],
                  "wikiCap": "", "Questions": ["Who is in the image?"], "ParaQuestions": [], "Answers": ["Ada Lovelace"],
                  "Type of Question": [["1-hop"]], "split": [3, 1, 1, 2, 1]},  # test in the first split
        "30000": {"imgPath": "KVQAimgs/30000.jpg", "NamedEntities": [], "Qids": [], "wikiCap": "",
                  "Questions": ["Who?"], "ParaQuestions": [], "Answers": ["Nobody"], "Type of Question": [[]],
                  "split": [1, 1, 1, 1, 1]},  # image missing
        "30001": {"imgPath": "KVQAimgs/24742.jpg", "Questions": ["Who?", "When?"], "Answers": ["Him"],
                  "split": [1, 1, 1, 1, 1]},  # lists of different lengths: unreadable
    }
    return Published(base, [_json(base / "dataset.json", records)], base, missing_images=["KVQAimgs/30000.jpg"])


def write_viquae(root: Path) -> Published:
    """train.jsonl (KILT-like), images/<file name>."""
    base = root / "viquae"
    _image(base / "images" / "512px-Jackie_Wilson.png", (64, 66), 61)

    def line(i: int, question: str, answer: str, image: str) -> dict:
        return {"id": f"q{i}", "input": question, "kilt_id": f"k{i}", "image": image,
                "url": f"http://upload.wikimedia.org/wikipedia/commons/{image}", "wikidata_id": "Q45188",
                "meta": {}, "original_question": question.replace("this singer", "Jackie Wilson"),
                "output": {"original_answer": answer, "answer": [answer, answer.lower()],
                           "normalized_aliases": [answer.lower()], "provenance": []}}

    records = [line(0, "this singer's re-issued song became the UK Christmas number one after helping to advertise "
                       "what brand?", "Levi's", "512px-Jackie_Wilson.png"),
               line(1, "in which city was this singer born?", "Detroit", "512px-Jackie_Wilson.png"),
               line(2, "what is this building called?", "", "512px-Jackie_Wilson.png"),  # empty answer
               line(3, "who is this?", "Nobody", "512px-Missing.jpg")]
    return Published(base, [_jsonl(base / "train.jsonl", records)], base / "images",
                     missing_images=["512px-Missing.jpg"])


MORE_WRITERS = {"visual_dialog": write_visual_dialog, "kvqa": write_kvqa, "viquae": write_viquae}


def write_laion_gpt4v(root: Path, storage_root: Path) -> Path:
    """laion/gpt4v-dataset's URL list (data/train-*.parquet: link, caption, message_id, timestamp) under
    ``root``, and under ``storage_root`` the raw shard the download stage leaves for its rows (no network
    here). Returns the URL list's path."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    from tests.tasks.test_tasks_build import write_raw_shard

    rows = {"link": ["https://example.org/a.jpg", "https://example.org/b.png", "https://example.org/c.jpg"],
            "caption": ["The image shows a red bicycle leaning on a brick wall.\n\nIn the background, a door.",
                        "A bowl of ramen with an egg.", ""],
            "message_id": ["m0", "m1", "m2"], "timestamp": ["2023-11-01T10:00:00", "2023-11-01T10:01:00", ""]}
    path = root / "laion_gpt4v" / "data" / "train-00000-of-00001.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(rows), path)

    def jpeg(colour: int) -> bytes:
        buffer = io.BytesIO()
        Image.new("RGB", (48, 40), (colour, 90, 60)).save(buffer, format="JPEG")
        return buffer.getvalue()

    write_raw_shard(storage_root, "laion_gpt4v", "00000", [
        {"key": f"00000{i:04d}", "image": jpeg(40 + 60 * i), "caption": rows["caption"][i], "width": 48,
         "height": 40, "original_width": 480, "original_height": 400} for i in range(2)])
    return path
