"""The fine-tuning demo (configs/demo-finetune.yaml): generated sets of every shape, through the task,
mix and train stages of the flow, into stage-2 steps. Translation is left to the slow demo run (it
needs vLLM): here the conversation set keeps English only."""

from __future__ import annotations

import json
from pathlib import Path

from flows.config import load_config

DEMO = Path(__file__).resolve().parents[2] / "configs" / "demo-finetune.yaml"


def test_the_finetune_demo_runs_every_shape_into_stage2(tmp_path, local_ray):
    from flows.assemble import build_tasks_stage, mix_stage, train_stage
    from shards import verify

    config = load_config(DEMO, overrides=[
        f"storage.root={tmp_path / 'root'}", f"demo.directory={tmp_path / 'sources'}", "demo.scale=0.25",
        "sources.1.translate_to=[]", f"train.out={tmp_path / 'train'}", "train.steps=1", "train.global_batch=4", "train.checkpoint_every=0",
    ])
    tasks = build_tasks_stage(config)
    assert {name: entry["samples"] for name, entry in tasks.items()} == {
        "demo_vqa": 10, "demo_chat": 6, "demo_multi": 4, "demo_text": 5}
    mixed = mix_stage(config)
    manifest = json.loads(Path(mixed["manifest"]).read_text())
    # The repeat times: 0.5, 1 (unlisted), 2 and 1.5 of each set's samples.
    assert {name: s["samples"] for name, s in manifest["sources"].items()} == {
        "demo_vqa": 5, "demo_chat": 6, "demo_multi": 8, "demo_text": 7}
    checked = verify(mixed["directory"])
    assert checked.ok and checked.shapes == {"single_image": 11, "multi_image": 8, "text_only": 7, "multi_turn": 6}
    trained = train_stage(config)
    assert trained["steps"] == 1 and trained["first_loss"] > 0


def test_the_translation_memory_answers_every_request_of_the_conversation_set(tmp_path):
    from flows.demo.finetune import finetune_translations, generate_finetune
    from translate.conversation import ConversationPlan

    root = generate_finetune(tmp_path, scale=0.25)
    memory = finetune_translations(tmp_path, "zh")
    requests = [text for line in (root / "chat" / "chat.jsonl").read_text().splitlines()
                for text in ConversationPlan.parse(json.dumps(json.loads(line)["conversations"]), 512).texts]
    assert requests and [text for text in requests if text not in memory] == []
    assert all(any("\u4e00" <= ch <= "\u9fff" for ch in memory[text]) for text in requests)
