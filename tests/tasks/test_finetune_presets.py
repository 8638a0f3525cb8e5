"""Table 1b's presets on tiny published-format copies: each sample checked against the annotation it came from.

In-process (no Ray): a preset's source is split into units and built as the task stage does it; the
expected conversation is read from the copy's own files, and the awkward records are counted out.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipelines.layout.images import UnitImages
from pipelines.layout.task_table import conversation_problem
from pipelines.source import Source
from pipelines.storage import Storage
from tasks.build import TaskSettings, context
from tasks.kinds import kind_of
from tasks.prompts import PromptPools
from tests.tasks import finetune_inputs

SHORT = "\nAnswer the question using a single word or phrase."


def build(tmp_path: Path, preset: str, published, language: str = "en", **fields):
    """(samples by key, drops, drafts) of ``preset`` over a published copy, as the task stage builds them."""
    storage = Storage(str(tmp_path / "out"))
    source = Source(name=preset.replace("_", "-"), kind="published", preset=preset, task="t", language=language,
                    locations=published.locations,
                    image_root=str(published.image_root) if published.image_root else None, **fields)
    kind = kind_of(source)
    assert kind.problems(source, ["t"]) == []
    ctx, drops, drafts = context(storage, TaskSettings()), Counter(), []
    for unit in kind.units(source, ctx):
        drafts += kind.items(source, unit, ctx, UnitImages(storage, source.name, unit.name), drops)
    samples = {d.key: d.sample(source.name, "t", language, PromptPools(seed=0)) for d in drafts}
    for sample in samples.values():  # every sample fits the task tables' contract
        assert conversation_problem(sample.conversations, len(sample.images)) is None, sample.conversations
    return samples, drops, drafts


def pairs(sample) -> list[tuple[str, str]]:
    turns = sample.conversations
    return [(turns[i]["value"], turns[i + 1]["value"]) for i in range(0, len(turns), 2)]


def load(path: str):
    return json.loads(Path(path).read_text(encoding="utf-8"))


@pytest.mark.parametrize("preset", ["vqav2", "okvqa"])
def test_vqa_pairs_questions_with_the_most_frequent_of_their_annotated_answers(tmp_path, preset):
    published = finetune_inputs.WRITERS[preset](tmp_path)
    (questions_file,), (annotations_file,) = published.locations, published.beside
    samples, drops, _ = build(tmp_path, preset, published)
    answers = {a["question_id"]: [x["answer"] for x in a["answers"]] for a in load(annotations_file)["annotations"]}
    questions = [q for q in load(questions_file)["questions"] if q["image_id"] == 9]
    expected = [(q["question"] + SHORT, Counter(answers[q["question_id"]]).most_common(1)[0][0]) for q in questions]
    expected[0] = ("<image>\n" + expected[0][0], expected[0][1])
    assert pairs(samples["9"]) == expected  # both of image 9's questions, one conversation
    assert samples["9"].images[0].width == 64
    assert [q for q, _ in pairs(samples["25"])] == ["<image>\nIs it raining?" + SHORT]  # all-empty answers left out
    assert drops["image_missing"] == 1 and drops["object:empty_answer"] == 1
    # By config, one conversation per question instead.
    samples, _, _ = build(tmp_path / "per-question", preset, published, format={"per_question": True})
    assert sorted(len(pairs(s)) for s in samples.values()) == [1, 1, 1]


def test_gqa_and_textvqa_group_an_images_questions(tmp_path):
    gqa = finetune_inputs.write_gqa(tmp_path)
    samples, drops, _ = build(tmp_path / "g", "gqa", gqa)
    records = [r for r in load(gqa.locations[0]).values() if r["imageId"] == "2354786"]
    assert [(q.removeprefix("<image>\n"), a) for q, a in pairs(samples["2354786"])] == [
        (r["question"] + SHORT, r["answer"]) for r in records]
    assert drops["image_missing"] == 1 and drops["object:empty_answer"] == 1

    textvqa = finetune_inputs.write_textvqa(tmp_path)
    samples, drops, _ = build(tmp_path / "t", "textvqa", textvqa)
    data = load(textvqa.locations[0])["data"]
    assert [a for _, a in pairs(samples["0054c91397f2fe05"])] == [Counter(r["answers"]).most_common(1)[0][0]
                                                                 for r in data[:2]]
    assert drops["image_missing"] == 1


def test_multiple_choice_sets_answer_with_the_letter_of_the_annotated_choice(tmp_path):
    ai2d = finetune_inputs.write_ai2d(tmp_path)
    samples, drops, _ = build(tmp_path / "a", "ai2d", ai2d)
    annotation = load(next(p for p in ai2d.locations if p.endswith("0.png.json")))["questions"]
    entry = annotation["What is A in the diagram?"]
    question, answer = pairs(samples["0.png"])[0]
    assert question.splitlines()[2:-1] == [f"{'ABCD'[i]}. {t}" for i, t in enumerate(entry["answerTexts"])]
    assert answer == "ABCD"[entry["correctAnswer"]]
    assert len(pairs(samples["0.png"])) == 2
    assert drops["object:empty_answer"] == 1 and drops["no_questions"] == 1 and drops["image_missing"] == 1

    scienceqa = finetune_inputs.write_scienceqa(tmp_path)
    samples, drops, _ = build(tmp_path / "s", "scienceqa", scienceqa)
    problems = load(scienceqa.locations[0])
    assert pairs(samples["5"])[0][1] == "ABCD"[problems["5"]["answer"]]
    assert len(samples["5"].images) == 1
    text_only = samples["6"]  # no image: a text-only sample, its hint before the question
    assert text_only.images == [] and "<image>" not in text_only.conversations[0]["value"]
    assert text_only.conversations[0]["value"].startswith("Hint: " + problems["6"]["hint"])
    assert drops["image_missing"] == 1

    aokvqa = finetune_inputs.write_a_okvqa(tmp_path)
    samples, drops, _ = build(tmp_path / "k", "a_okvqa", aokvqa)
    record = load(aokvqa.locations[0])[0]
    assert pairs(samples["299207"]) == [(
        "<image>\n" + "\n".join([record["question"], *[f"{'ABCD'[i]}. {c}" for i, c in enumerate(record["choices"])],
                                 "Answer with the option's letter from the given choices directly."]),
        "ABCD"[record["correct_choice_idx"]])]
    assert drops["object:empty_answer"] == 1  # the second record's answer index names no choice

    geometry = finetune_inputs.write_geometry3k(tmp_path)
    samples, drops, _ = build(tmp_path / "m", "geometry3k", geometry)
    assert pairs(samples["0"])[0][1] == load(geometry.locations[0])["answer"]
    assert drops["image_missing"] == 1


def test_chart_math_and_book_cover_questions(tmp_path):
    dvqa = finetune_inputs.write_dvqa(tmp_path)
    samples, _, _ = build(tmp_path / "d", "dvqa", dvqa)
    assert [a for _, a in pairs(samples["bar_train_00000000.png"])] == [r["answer"] for r in load(dvqa.locations[0])]

    ocrvqa = finetune_inputs.write_ocrvqa(tmp_path)
    samples, drops, _ = build(tmp_path / "o", "ocrvqa", ocrvqa)
    book = load(ocrvqa.locations[0])["1935202119"]
    assert [(q.removeprefix("<image>\n"), a) for q, a in pairs(samples["1935202119"])] == list(
        zip(book["questions"], book["answers"], strict=True))
    assert drops["unreadable_record"] == 1  # its question and answer lists disagree

    tabmwp = finetune_inputs.write_tabmwp(tmp_path)
    samples, _, _ = build(tmp_path / "t", "tabmwp", tabmwp)
    problems = load(tabmwp.locations[0])
    assert pairs(samples["1"])[0] == (f"<image>\n{problems['1']['question']} (Unit: $)", problems["1"]["answer"])
    assert pairs(samples["2"])[0][1] == "AB"[problems["2"]["choices"].index(problems["2"]["answer"])]


def test_vsr_statements_become_yes_no_questions_and_lrv_keeps_free_answers(tmp_path):
    vsr = finetune_inputs.write_vsr(tmp_path)
    samples, drops, _ = build(tmp_path / "v", "vsr", vsr)
    lines = [json.loads(x) for x in Path(vsr.locations[0]).read_text(encoding="utf-8").splitlines()]
    turns = pairs(samples["000000296471.jpg"])
    assert [a for _, a in turns] == [("Yes" if r["label"] else "No") for r in lines[:2]]
    assert all(r["caption"] in q for (q, _), r in zip(turns, lines[:2], strict=True))
    assert drops["image_missing"] == 1

    lrv = finetune_inputs.write_lrv_instruction(tmp_path)
    samples, drops, _ = build(tmp_path / "l", "lrv_instruction", lrv)
    records = load(lrv.locations[0])
    assert [(q.removeprefix("<image>\n"), a) for q, a in pairs(samples["statistic_id1001.png"])] == [
        (r["question"], r["answer"]) for r in records[:2]]
    assert drops["object:empty_answer"] == 1


def test_mathqa_is_text_only_multiple_choice_and_the_cauldron_embeds_its_images(tmp_path):
    mathqa = finetune_inputs.write_mathqa(tmp_path)
    samples, drops, _ = build(tmp_path / "m", "mathqa", mathqa)
    record = load(mathqa.locations[0])[0]
    (sample,) = samples.values()
    question, answer = pairs(sample)[0]
    assert sample.images == [] and question.startswith(record["Problem"]) and answer == record["correct"].upper()
    assert "C. 20" in question.splitlines()
    assert drops["object:empty_answer"] == 1  # its `correct` names no option

    cauldron = finetune_inputs.write_cauldron(tmp_path)
    samples, drops, _ = build(tmp_path / "c", "clevr_math", cauldron)
    row = pq.read_table(cauldron.locations[0]).to_pylist()[0]
    (sample,) = samples.values()
    assert [(q.removeprefix("<image>\n"), a) for q, a in pairs(sample)] == [(t["user"], t["assistant"]) for t in row["texts"]]
    assert (sample.images[0].width, sample.images[0].height) == (48, 32)  # the embedded image
    assert drops["unreadable_record"] == 1 and drops["empty_answer"] == 1


def _scaled(box, width, height):
    x, y, w, h = box
    return [round(x / width * 1000), round(y / height * 1000), round((x + w) / width * 1000),
            round((y + h) / height * 1000)]


def test_refcoco_expressions_are_grounded_on_the_thousand_grid(tmp_path):
    published = finetune_inputs.write_refcoco(tmp_path)
    samples, drops, drafts = build(tmp_path, "refcoco", published)
    row = pq.read_table(published.locations[0]).to_pylist()[0]
    image = json.loads(row["raw_image_info"])
    box = _scaled(json.loads(row["raw_anns"])["bbox"], image["width"], image["height"])
    sample = samples[str(row["ref_id"])]
    assert [a for _, a in pairs(sample)] == [f"<ref>{s['raw']}</ref><box>[{box}]</box>" for s in row["sentences"]]
    assert all(f"<ref>{s['raw']}</ref>" in q for (q, _), s in zip(pairs(sample), row["sentences"], strict=True))
    assert drops["object:malformed_box"] == 1 and drops["no_regions"] == 1 and drops["image_missing"] == 1
    # Translated, the expressions change and the boxes stay.
    draft = next(d for d in drafts if d.key == str(row["ref_id"]))
    texts = {name: f"中文{i}" for i, name in enumerate(sorted(draft.texts))}
    translated = draft.translated("refcoco-zh", "t", "zh", "en", texts, PromptPools(seed=0))
    assert translated.conversations[1]["value"] == f"<ref>中文0</ref><box>[{box}]</box>"


def test_visual_genome_regions_are_grounded_in_the_image_they_are_found_in(tmp_path):
    published = finetune_inputs.write_visual_genome(tmp_path)
    samples, drops, _ = build(tmp_path, "visual_genome", published)
    for record in load(published.locations[0]):
        image = f"{tmp_path}/visual_genome/{'VG_100K' if record['id'] == 1 else 'VG_100K_2'}/{record['id']}.jpg"
        sample = samples[str(record["id"])]
        assert sample.images[0].ref.uri.endswith(image.split("/visual_genome/")[1])  # found in whichever of the two folders holds it
        width, height = sample.images[0].width, sample.images[0].height
        expected = [f"<ref>{' '.join(r['phrase'].split())}</ref><box>[{_scaled([r['x'], r['y'], r['width'], r['height']], width, height)}]</box>"
                    for r in record["regions"] if r["width"] > 0]
        assert [a for _, a in pairs(sample)] == expected
    assert drops["object:malformed_box"] == 1
    samples, _, _ = build(tmp_path / "per-region", "visual_genome", published, format={"per_question": True})
    assert len(samples) == 3 and all(len(pairs(s)) == 1 for s in samples.values())
