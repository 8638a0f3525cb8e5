"""The InternLM2-chat template: image spans, labels on assistant turns only, safe truncation."""

import pytest

from trainer.tokenization import IGNORE_INDEX, ChatTokenizer, SampleDropped, load_tokenizer, train_tokenizer

CONVERSATION = [
    {"from": "human", "value": "<image>\nWhat colour is it?"},
    {"from": "gpt", "value": "It is red."},
    {"from": "human", "value": "And the shape?"},
    {"from": "gpt", "value": "A square."},
]


@pytest.fixture(scope="module")
def tokenizer(tokenizer_dir):
    return load_tokenizer(tokenizer_dir)


def chat(tokenizer, per_tile=256, context=4096, system=""):
    return ChatTokenizer(tokenizer, per_tile, context_length=context, system_message=system)


def test_image_expands_to_img_context_span(tokenizer):
    sample = chat(tokenizer)(CONVERSATION, n_tiles=7)
    vocab = tokenizer.get_vocab()
    ids = sample.input_ids
    start = ids.index(vocab["<img>"])
    assert ids[start + 1 : start + 1 + 256 * 7] == [vocab["<IMG_CONTEXT>"]] * (256 * 7)
    assert ids[start + 1 + 256 * 7] == vocab["</img>"]
    assert ids.count(vocab["<IMG_CONTEXT>"]) == 256 * 7 and sample.n_tiles == 7


def test_chatml_layout_and_labels_only_on_assistant_turns(tokenizer):
    sample = chat(tokenizer, per_tile=1, system="Be brief.")(CONVERSATION, n_tiles=1)
    text = tokenizer.decode(sample.input_ids)
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\n<img><IMG_CONTEXT></img>\nWhat colour is it?<|im_end|>\n"
        "<|im_start|>assistant\nIt is red.<|im_end|>\n"
        "<|im_start|>user\nAnd the shape?<|im_end|>\n"
        "<|im_start|>assistant\nA square.<|im_end|>\n"
    )
    assert len(sample.labels) == len(sample.input_ids)
    trained = [i for i, label in enumerate(sample.labels) if label != IGNORE_INDEX]
    assert all(sample.labels[i] == sample.input_ids[i] for i in trained)
    # The labelled tokens, run by run, are exactly the two answers with their <|im_end|>.
    runs, current = [], []
    for label in sample.labels:
        if label != IGNORE_INDEX:
            current.append(label)
        elif current:
            runs.append(tokenizer.decode(current))
            current = []
    assert runs == ["It is red.<|im_end|>", "A square.<|im_end|>"]


def test_missing_placeholder_puts_the_image_before_the_first_question(tokenizer):
    conversation = [{"from": "human", "value": "Describe."}, {"from": "gpt", "value": "A cat."}]
    text = tokenizer.decode(chat(tokenizer, per_tile=1)(conversation, n_tiles=1).input_ids)
    assert "<|im_start|>user\n<img><IMG_CONTEXT></img>\nDescribe.<|im_end|>" in text


def test_truncation_never_cuts_inside_the_image_span(tokenizer):
    vocab = tokenizer.get_vocab()
    conversation = [
        {"from": "human", "value": "Question one?"},
        {"from": "gpt", "value": "Answer one."},
        {"from": "human", "value": "<image>\nQuestion two?"},
        {"from": "gpt", "value": "Answer two."},
    ]
    full = chat(tokenizer, per_tile=64)(conversation, n_tiles=2)
    start = full.input_ids.index(vocab["<img>"])
    for context in (start + 1, start + 50, start + 2 * 64 + 1):  # each would cut inside the span
        sample = chat(tokenizer, per_tile=64, context=context)(conversation, n_tiles=2)
        assert len(sample.input_ids) == start and sample.n_tiles == 0
        assert vocab["<IMG_CONTEXT>"] not in sample.input_ids and vocab["<img>"] not in sample.input_ids
    after = chat(tokenizer, per_tile=64, context=start + 2 * 64 + 3)(conversation, n_tiles=2)
    assert after.n_tiles == 2 and after.input_ids.count(vocab["<IMG_CONTEXT>"]) == 128
    # An image first and a context too short for it leaves nothing to learn: dropped with a reason.
    with pytest.raises(SampleDropped) as err:
        chat(tokenizer, per_tile=64, context=100)(CONVERSATION, n_tiles=2)
    assert err.value.reason == "no_trainable_tokens"


@pytest.mark.parametrize(
    "conversation, reason",
    [
        ([], "bad_conversation"),
        ([{"from": "robot", "value": "hi"}], "bad_conversation"),
        (
            [{"from": "human", "value": "<image><image>"}, {"from": "gpt", "value": "x"}],
            "image_placeholder_mismatch",
        ),
        ([{"from": "human", "value": "<image>\nonly a question"}], "no_trainable_tokens"),
    ],
)
def test_bad_conversations_are_dropped_with_a_reason(tokenizer, conversation, reason):
    with pytest.raises(SampleDropped) as err:
        chat(tokenizer)(conversation, n_tiles=1)
    assert err.value.reason == reason


def test_load_tokenizer_adds_missing_special_tokens(tmp_path):
    import tokenizers
    import transformers

    bpe = tokenizers.Tokenizer(tokenizers.models.BPE(unk_token="[UNK]"))
    bpe.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    bpe.train_from_iterator(
        ["plain words only"] * 5, tokenizers.trainers.BpeTrainer(special_tokens=["[UNK]"])
    )
    transformers.PreTrainedTokenizerFast(tokenizer_object=bpe).save_pretrained(str(tmp_path / "plain"))
    tokenizer = load_tokenizer(tmp_path / "plain")
    for token in ("<img>", "</img>", "<IMG_CONTEXT>", "<|im_start|>", "<|im_end|>", "<box>", "<quad>"):
        assert len(tokenizer.encode(token, add_special_tokens=False)) == 1
    with pytest.raises(FileNotFoundError):
        load_tokenizer(tmp_path / "nowhere")


def test_train_tokenizer_is_atomic_and_reusable(tmp_path):
    path = train_tokenizer(["hello world"] * 10, tmp_path / "tok", vocab_size=300)
    assert (path / "tokenizer.json").exists() and not (tmp_path / "tok.tmp").exists()
    train_tokenizer(["again"] * 10, path, vocab_size=300)  # overwrite in place
    assert load_tokenizer(path).convert_tokens_to_ids("<IMG_CONTEXT>") is not None
