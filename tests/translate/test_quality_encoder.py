"""Quality scores by a sentence encoder (``quality.method: encoder``, translate/encoder.py): the plumbing.

The encoder is a tiny BERT with random weights and mean pooling, built and saved as a
sentence-transformers folder here (nothing is downloaded). Its similarities say nothing about
translation quality, so nothing here asserts that right translations outscore wrong ones: what is
tested is that the score stored per row is the cosine of the two texts' embeddings as
sentence-transformers computes it, that conversations, stats, ``min_quality`` and ``vlmix validate``
treat it as they treat chrF, that the model is loaded once per process, and that it runs in the Ray
workers that translate. How well a real encoder separates right from wrong is bench/translate/quality.py's
to measure, with real weights.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import statistics
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flows.cli import main as vlmix
from flows.config import load_config, validate_config
from flows.translation import run_translation
from pipelines.languages import Language
from pipelines.storage import Storage
from tests.translate.test_quality import CONVERSATION, REFERENCE
from tests.translate.translator_double import TranslatorDouble
from translate import encoder
from translate.client import ChatClient
from translate.settings import TranslateSettings
from translate.translator import Translator

CAPTIONS = list(REFERENCE)
DEMO_CONFIG = str(Path(__file__).resolve().parents[2] / "configs" / "demo.yaml")


def build_tiny_encoder(folder):
    """A 1-layer BERT (hidden size 32, random weights) with a WordPiece vocabulary of the reference
    set's English words and Chinese characters, plus mean pooling, saved with SentenceTransformer.save."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    words = sorted({w.strip(".?,").lower() for s in REFERENCE for w in s.split()} - {""})
    chars = sorted({c for pair in REFERENCE.values() for (zh, _) in pair for c in zh})
    bert = folder / "bert"
    bert.mkdir(parents=True)
    (bert / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words, *chars]) + "\n")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=5 + len(words) + len(chars), hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    BertModel(config).save_pretrained(bert)
    BertTokenizerFast(vocab_file=str(bert / "vocab.txt")).save_pretrained(bert)
    transformer = Transformer(str(bert), max_seq_length=128)
    model = SentenceTransformer(modules=[transformer, Pooling(transformer.get_embedding_dimension(), "mean")],
                                device="cpu")
    model.save(str(folder / "st"))
    return folder / "st", bert


@pytest.fixture
def tiny_encoder(tmp_path):
    """A fresh folder per test, so that the model-loads count of this process starts from it."""
    return build_tiny_encoder(tmp_path / "encoder")


def reference_cosine(folder, source: str, translation: str) -> float:
    """The cosine as sentence-transformers itself computes it (its own similarity, its own model object)."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
    a, b = model.encode([source, translation], convert_to_tensor=True)
    return float(model.similarity(a, b)[0][0])


def write_input(storage, source, parts):
    paths = []
    for number, texts in enumerate(parts):
        fields = ["conversations" if t.startswith("[") else "caption" for t in texts]
        path = storage.path("translate", source, "_input", f"{number:05d}.parquet")
        storage.write_parquet(path, pa.table({"key": [f"{number}-{i}" for i in range(len(texts))], "field": fields,
                                              "text": texts}))
        paths.append(path)
    return paths


def double_for_reference() -> TranslatorDouble:
    table = {source: right for source, ((right, _), _) in REFERENCE.items()}
    return TranslatorDouble(answer=table.__getitem__, model="right")


def translate(root, double, settings, parts):
    storage = Storage(str(root))
    paths = write_input(storage, "coyo", parts)

    async def go():
        async with ChatClient([double.url], model=double.model) as client:
            translator = Translator(storage, client, {"zh": Language(name="Chinese", scripts=["Han"])}, settings)
            return await translator.translate_source("coyo", paths, ["zh"])

    report = asyncio.run(go())["zh"]
    rows = [row for n in range(len(parts))
            for row in pq.read_table(root / "translate" / "coyo" / "zh" / f"part-{n:05d}.parquet").to_pylist()]
    return report, rows


def test_the_stored_score_is_the_encoders_cosine_loaded_once_and_asks_the_model_nothing_more(tmp_path, tiny_encoder):
    folder, _ = tiny_encoder
    settings = TranslateSettings(quality={"method": "encoder", "encoder": str(folder), "encoder_batch_size": 4})
    double = double_for_reference()
    loads = encoder.loads
    conversation = json.dumps(CONVERSATION)
    try:  # two parts, in flight at once: one model load for the process
        report, rows = translate(tmp_path, double, settings, [CAPTIONS[:5], [*CAPTIONS[5:], conversation]])
    finally:
        double.close()
    assert encoder.loads - loads == 1

    assert not any("into English" in p for p in double.system_prompts)  # no back-translation asked
    assert sum(double.asked.values()) == len(REFERENCE)  # the conversation's pieces are captions already asked
    captions = [r for r in rows if r["field"] == "caption"]
    assert all(r["error"] is None and r["back_translation"] is None for r in rows)
    for row in captions:
        assert -1 <= row["quality"] <= 1
        assert row["quality"] == pytest.approx(reference_cosine(folder, row["source_text"], row["text"]), abs=2e-4)
    by_source = {r["source_text"]: r["quality"] for r in captions}
    assert len(set(by_source.values())) > 1  # not a constant

    chat = next(r for r in rows if r["field"] == "conversations")
    question, answer = (turn["value"].removeprefix("<image>\n") for turn in CONVERSATION)
    expected = (len(question) * by_source[question] + len(answer) * by_source[answer]) / (len(question) + len(answer))
    assert chat["quality"] == pytest.approx(expected, abs=1e-3)

    stats = json.loads((tmp_path / "translate" / "coyo" / "zh" / "stats.json").read_text())
    assert stats["quality_method"] == "encoder" and stats["scored"] == len(rows) == report.stats.scored
    assert stats["quality_mean"] == pytest.approx(statistics.mean(r["quality"] for r in rows), abs=1e-3)
    assert stats["back_requests"] == 0


def test_min_quality_flags_rows_below_the_cosine(tmp_path, tiny_encoder):
    folder, _ = tiny_encoder
    scored = TranslateSettings(quality={"method": "encoder", "encoder": str(folder)}, cache=False)
    double = double_for_reference()
    try:
        _, rows = translate(tmp_path / "a", double, scored, [CAPTIONS])
        floor = statistics.median(r["quality"] for r in rows)
        report, filtered = translate(tmp_path / "b", double,
                                     scored.model_copy(update={"quality": scored.quality.model_copy(
                                         update={"min_quality": floor})}), [CAPTIONS])
    finally:
        double.close()
    below = {r["source_text"] for r in rows if r["quality"] < floor}
    assert below and len(below) < len(rows)
    for row in filtered:
        if row["source_text"] in below:
            assert row["error"] == "low_quality" and row["text"] is None and row["quality"] < floor
        else:
            assert row["error"] is None and row["text"] is not None
    assert report.stats.flagged == {"low_quality": len(below)}


def test_the_encoder_runs_in_the_ray_workers_that_translate(tmp_path, tiny_encoder, local_ray):
    folder, _ = tiny_encoder
    double = double_for_reference()
    storage = Storage(str(tmp_path))
    write_input(storage, "coyo", [CAPTIONS[:5], CAPTIONS[5:]])
    quality = {"method": "encoder", "encoder": str(folder)}
    config = validate_config({
        "storage": {"root": str(tmp_path)}, "tasks": {"captioning": {"share": 1.0}},
        "languages": {"zh": {"name": "Chinese", "scripts": ["Han"]}},
        "translation": {"endpoints": [double.url], "model": "right", "concurrency": 2, "max_retries": 0,
                        "stage": {"quality": quality}},
        "sources": [{"name": "coyo", "kind": "url_list", "task": "captioning", "language": "en",
                     "translate_to": ["zh"], "locations": ["urls.parquet"]}]})
    loads = encoder.loads
    try:
        reports = run_translation(config, config.translation.stage.model_copy(update={"workers": 2}))
    finally:
        double.close()
    report = reports["coyo"]["zh"]
    assert report.parts_written == 2 and not report.failed
    assert report.stats.scored == len(CAPTIONS) and report.stats.quality_method == "encoder"
    assert encoder.loads == loads  # scored in the workers: this process loaded no model
    rows = [r for n in range(2) for r in pq.read_table(tmp_path / "translate" / "coyo" / "zh"
                                                        / f"part-{n:05d}.parquet").to_pylist()]
    for row in rows[:3]:
        assert row["quality"] == pytest.approx(reference_cosine(folder, row["source_text"], row["text"]), abs=2e-4)


def validate(tmp_path, capsys, *overrides):
    args = ["validate", DEMO_CONFIG, "--set", "translation.stage.quality.method=encoder"]
    for override in overrides:
        args += ["--set", override]
    code = vlmix(args)
    return code, capsys.readouterr()


def test_vlmix_validate_names_the_field_when_the_encoder_is_not_a_model(tmp_path, capsys, tiny_encoder):
    folder, plain_bert = tiny_encoder
    code, out = validate(tmp_path, capsys, f"translation.stage.quality.encoder={tmp_path / 'nowhere'}")
    assert code == 2 and "translation.stage.quality.encoder" in out.err and "no such folder" in out.err

    # A transformers model without the sentence-transformers modules (pooling): refused, saying why.
    code, out = validate(tmp_path, capsys, f"translation.stage.quality.encoder={plain_bert}")
    assert code == 2 and "translation.stage.quality.encoder" in out.err
    assert "not a sentence-transformers model: no modules.json" in out.err

    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    shutil.rmtree(broken / "1_Pooling")
    code, out = validate(tmp_path, capsys, f"translation.stage.quality.encoder={broken}")
    assert code == 2 and "['1_Pooling'] that modules.json names are missing" in out.err

    code, out = validate(tmp_path, capsys)  # method encoder, no folder
    assert code == 2 and "translation.stage.quality: method: encoder needs encoder" in out.err

    code, out = validate(tmp_path, capsys, f"translation.stage.quality.encoder={folder}",
                         "translation.stage.quality.min_quality=60")  # a chrF floor for a cosine
    assert code == 2 and "min_quality 60.0 is outside the encoder score's range, -1 to 1" in out.err

    code, out = validate(tmp_path, capsys, f"translation.stage.quality.encoder={folder}",
                         "translation.stage.quality.min_quality=0.5")
    assert code == 0, out.err


def test_a_relative_encoder_folder_is_taken_from_the_configs_folder(tmp_path, tiny_encoder):
    folder, _ = tiny_encoder  # tmp_path/encoder/st
    (tmp_path / "config.yaml").write_text(json.dumps({
        "storage": {"root": "data"}, "tasks": {"captioning": {"share": 1.0}},
        "translation": {"stage": {"quality": {"method": "encoder", "encoder": "./encoder/st"}}},
        "sources": [{"name": "coyo", "kind": "url_list", "task": "captioning", "language": "en",
                     "locations": ["urls.parquet"]}]}))
    assert load_config(tmp_path / "config.yaml").translation.stage.quality.encoder == str(folder.resolve())


def test_the_method_settings_hold_together(tiny_encoder):
    folder, _ = tiny_encoder
    assert TranslateSettings(quality={"back_translation": True}).quality.scoring == "back_translation"
    assert TranslateSettings(quality={"method": "encoder", "encoder": str(folder)}).quality.scoring == "encoder"
    with pytest.raises(ValueError, match="choose one method"):
        TranslateSettings(quality={"back_translation": True, "method": "encoder", "encoder": str(folder)})
    with pytest.raises(ValueError, match="encoder is set but method is back_translation"):
        TranslateSettings(quality={"method": "back_translation", "encoder": str(folder)})
    with pytest.raises(ValueError, match="range, 0 to 100"):
        TranslateSettings(quality={"back_translation": True, "min_quality": 101})
