"""A tiny chat model built locally (no download): what the tests and the demo serve with vLLM.

Random weights (its answers are noise) and a BPE tokenizer trained here on a little English text,
so whatever it says is in Latin script. It exercises the real serving and translation path; it
translates nothing.
"""

from __future__ import annotations

from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_CORPUS = [
    "A dog runs on the beach at sunset.",
    "Two people riding bicycles down a city street.",
    "A red bus parked next to a tall building.",
    "A plate of food with rice, vegetables and chicken.",
    "A cat sleeping on a wooden table near the window.",
    "Text for translation: a man holding an umbrella in the rain.",
    "You are a translator proficient in English and Chinese. Your task is to translate the following "
    "English text into Chinese, focusing on a natural and fluent result that avoids translationese. "
    "Please consider these points: Keep proper nouns, brands, and geographical names in English. "
    "Retain technical terms or jargon in English, but feel free to explain if necessary. Use idiomatic "
    "expressions for English idioms or proverbs to ensure cultural relevance. Ensure quotes or direct "
    "speech sound natural, maintaining the original tone. For acronyms, provide the full form with the "
    "English acronym in parentheses.",
]


def build_tiny_model(directory: str | Path) -> Path:
    """Save a 2-layer Qwen2 (hidden 128, random weights) and its tokenizer to ``directory``."""
    directory = Path(directory)
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    specials = ["<unk>", "<|im_start|>", "<|im_end|>"]
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials, show_progress=False)
    tokenizer.train_from_iterator(_CORPUS * 20, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="<unk>", eos_token="<|im_end|>", pad_token="<|im_end|>"
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(directory)
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(fast),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        eos_token_id=fast.eos_token_id,
        bos_token_id=fast.convert_tokens_to_ids("<|im_start|>"),
        tie_word_embeddings=False,
        torch_dtype="float32",
    )
    Qwen2ForCausalLM(config).save_pretrained(directory)
    return directory


