"""Conversations to token ids and labels, with the InternLM2-chat (ChatML) template.

A sample's conversation (the InternVL annotation format) becomes::

    <|im_start|>system\\n{system}<|im_end|>\\n
    <|im_start|>user\\n<img><IMG_CONTEXT>*(tokens_per_tile*n)</img>\\n{question}<|im_end|>\\n
    <|im_start|>assistant\\n{answer}<|im_end|>\\n

Labels are the input ids on every assistant answer of a multi-turn conversation (each with its
closing ``<|im_end|>``) and -100 on the system and user turns and the role headers, so the loss
falls on what the assistant says only. A sample may have several images (one ``<image>`` each,
matched in order, each its own span of tiles) or none (text only). Sequences longer than the
context are cut, but never inside an image span: the cut moves before the span and that image
and the ones after it are left out (and a sample left with nothing to learn is dropped, with its
reason).
"""

import shutil
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field

from pipelines._imports import require
from pipelines._model import ConfigModel

IMAGE_PLACEHOLDER = "<image>"
IMG_START, IMG_END, IMG_CONTEXT = "<img>", "</img>", "<IMG_CONTEXT>"
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
#: Tokens the model must see as one piece: the image span, ChatML, and the box/quad markup.
SPECIAL_TOKENS = (
    IM_START,
    IM_END,
    IMG_START,
    IMG_END,
    IMG_CONTEXT,
    "<quad>",
    "</quad>",
    "<ref>",
    "</ref>",
    "<box>",
    "</box>",
)
IGNORE_INDEX = -100
#: The system message InternVL-Chat-V1-5 was trained with.
INTERNVL_SYSTEM_MESSAGE = "你是由上海人工智能实验室联合商汤科技开发的书生多模态大模型，英文名叫InternVL, 是一个有用无害的人工智能助手。"
ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


class TokenizeConfig(ConfigModel):
    """How conversations become token sequences."""

    tokenizer: str = Field(description="local directory of a Hugging Face tokenizer (tokenizer.json ...)")
    context_length: int = Field(4096, ge=16, description="longest sequence in tokens (SPEC §4: 4096)")
    system_message: str = Field(INTERNVL_SYSTEM_MESSAGE, description="system turn; '' leaves it out")


@dataclass(frozen=True)
class TokenizedSample:
    """One sample ready for batching: ids, labels, and how many image tiles its tokens stand for."""

    input_ids: list[int]
    labels: list[int]
    n_tiles: int  # tiles of the images kept (0: text only, or every image cut off by truncation)
    n_images: int = 0  # images kept: the sample's first n_images (truncation leaves out the rest)


class SampleDropped(ValueError):
    """A sample cannot be trained on; ``reason`` is the counter it is tallied under."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def load_tokenizer(path: str | Path):
    """A tokenizer from a local directory, with the special tokens added when missing.

    Nothing is downloaded: a path that is not a tokenizer directory is an error.
    """
    transformers = require("transformers", "train")
    path = Path(path)
    if not (path / "tokenizer.json").exists() and not (path / "tokenizer_config.json").exists():
        raise FileNotFoundError(f"no tokenizer in {path} (expected tokenizer.json or tokenizer_config.json)")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    missing = [t for t in SPECIAL_TOKENS if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_special_tokens(
            {"additional_special_tokens": missing}, replace_extra_special_tokens=False
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = IM_END
    return tokenizer


class ChatTokenizer:
    """Turns InternVL conversations into :class:`TokenizedSample` objects.

    >>> chat = ChatTokenizer(tokenizer, tokens_per_tile=256, context_length=4096)  # doctest: +SKIP
    >>> sample = chat(conversations, n_tiles=7)  # doctest: +SKIP
    """

    def __init__(self, tokenizer, tokens_per_tile: int, context_length: int = 4096, system_message: str = ""):
        self.tokenizer = tokenizer
        self.tokens_per_tile = tokens_per_tile
        self.context_length = context_length
        self.system_message = system_message
        vocab = tokenizer.get_vocab()
        missing = [t for t in SPECIAL_TOKENS if t not in vocab]
        if missing:
            raise ValueError(f"tokenizer lacks special tokens {missing}; load it with load_tokenizer()")
        self.img_start, self.img_end, self.img_context = (vocab[t] for t in (IMG_START, IMG_END, IMG_CONTEXT))
        self.pad_id = tokenizer.pad_token_id

    def _text(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False) if text else []

    def _image_span(self, n_tiles: int) -> list[int]:
        return [self.img_start] + [self.img_context] * (self.tokens_per_tile * n_tiles) + [self.img_end]

    def blank_image_sample(self) -> TokenizedSample:
        """One tile's image span and nothing to learn: what keeps InternViT running in a text-only
        micro-batch (its tile is blank, its segment of its own, so it changes no loss or gradient)."""
        span = self._image_span(1)
        return TokenizedSample(span, [IGNORE_INDEX] * len(span), 1, 1)

    def __call__(self, conversations: list[dict], n_tiles: int | list[int]) -> TokenizedSample:
        """Tokenise a conversation whose images make ``n_tiles`` tiles each, in ``<image>`` order.

        An int is one image's tiles (0: text only); a list gives each image's (``[]``: text only).
        """
        tiles = ([n_tiles] if n_tiles else []) if isinstance(n_tiles, int) else list(n_tiles)
        turns = _check_turns(conversations, n_images=len(tiles))
        ids: list[int] = []
        labels: list[int] = []
        spans: list[int] = []  # where each image span starts in ids

        def add(tokens: list[int], trained: bool) -> None:
            ids.extend(tokens)
            labels.extend(tokens if trained else [IGNORE_INDEX] * len(tokens))

        if self.system_message:
            add(self._text(f"{IM_START}system\n{self.system_message}{IM_END}\n"), False)
        for role, value in turns:
            if role == "assistant":
                add(self._text(f"{IM_START}assistant\n"), False)
                add(self._text(f"{value}{IM_END}"), True)
                add(self._text("\n"), False)
                continue
            add(self._text(f"{IM_START}{role}\n"), False)
            pieces = value.split(IMAGE_PLACEHOLDER)
            for k, piece in enumerate(pieces):
                if k:
                    spans.append(len(ids))
                    add(self._image_span(tiles[len(spans) - 1]), False)
                add(self._text(piece + (f"{IM_END}\n" if k == len(pieces) - 1 else "")), False)
        return self._truncate(ids, labels, spans, tiles)

    def _truncate(self, ids, labels, spans: list[int], tiles: list[int]) -> TokenizedSample:
        cut, kept = self.context_length, len(tiles)
        if len(ids) > cut:
            for k, start in enumerate(spans):
                if cut < start + self.tokens_per_tile * tiles[k] + 2:
                    # Never cut inside a span: end the sequence before it, leave it and later images out.
                    cut, kept = start, k
                    break
        ids, labels = ids[:cut], labels[:cut]
        if all(label == IGNORE_INDEX for label in labels[1:]):
            raise SampleDropped(
                "no_trainable_tokens", f"nothing to learn within {self.context_length} tokens"
            )
        return TokenizedSample(ids, labels, sum(tiles[:kept]), kept)


def _check_turns(conversations: list[dict], n_images: int) -> list[tuple[str, str]]:
    """Validated ``(role, text)`` turns, one ``<image>`` per image; a single image with no
    placeholder gets one before the first question."""
    if not isinstance(conversations, list) or not conversations:
        raise SampleDropped("bad_conversation", "conversations must be a non-empty list")
    turns = []
    for turn in conversations:
        role = ROLES.get(turn.get("from")) if isinstance(turn, dict) else None
        if role is None or not isinstance(turn.get("value"), str):
            raise SampleDropped(
                "bad_conversation", f"turn {turn!r} needs 'from' in {sorted(ROLES)} and a 'value'"
            )
        turns.append((role, turn["value"]))
    if any(IMAGE_PLACEHOLDER in value for role, value in turns if role != "user"):
        raise SampleDropped("image_placeholder_mismatch", "<image> outside a user turn")
    placeholders = sum(value.count(IMAGE_PLACEHOLDER) for _, value in turns)
    if placeholders != n_images and not (n_images == 1 and placeholders == 0):
        raise SampleDropped(
            "image_placeholder_mismatch", f"{placeholders} <image> for {n_images} image(s)"
        )
    if n_images == 1 and placeholders == 0:
        first_user = next((i for i, (role, _) in enumerate(turns) if role == "user"), None)
        if first_user is None:
            raise SampleDropped("bad_conversation", "an image but no user turn")
        turns[first_user] = ("user", f"{IMAGE_PLACEHOLDER}\n{turns[first_user][1]}")
    if not any(role == "assistant" for role, _ in turns):
        raise SampleDropped("no_trainable_tokens", "no assistant turn")
    return turns


def train_tokenizer(texts, out_dir: str | Path, vocab_size: int = 2000) -> Path:
    """Train a small byte-level BPE tokenizer on ``texts`` and save it where :func:`load_tokenizer` reads.

    For demos and tests with the ``tiny`` model: the real model uses InternLM2's tokenizer.
    """
    tokenizers = require("tokenizers", "train")
    transformers = require("transformers", "train")
    bpe = tokenizers.Tokenizer(tokenizers.models.BPE())
    bpe.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token=IM_END, eos_token=IM_END)
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    fast.save_pretrained(str(tmp))
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)  # complete or absent, never half-written
    return out_dir
