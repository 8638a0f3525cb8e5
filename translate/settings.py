"""Settings of the translation stage beyond ``flows.config.Translation`` (endpoints, model, concurrency,
timeout, retries, temperature): the token budget, backoff, cache, validation, and launching vLLM."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from pipelines._model import EXECUTION_ONLY, ConfigModel
from translate.encoder import check_folder

# Openings of a model's refusal instead of a translation (case-insensitive regular expressions, searched
# at the start of the output). Chinese and Japanese ones too: the model answers in the target language.
DEFAULT_REFUSALS = [
    r"(i'?m|i am) sorry",
    r"i (cannot|can't|can not|am unable to|won't)",
    r"as an ai",
    r"sorry,? (but )?i",
    r"抱歉",
    r"对不起",
    r"很抱歉",
    r"作为(一个)?(人工智能|ai)",
    r"申し訳",
    r"죄송",
]


# What a request takes besides its text: the Figure-5 system message and the chat template (about 200
# tokens for common tokenizers), with room to spare; and characters per token of the text, counted
# low (English prose is about 4; code, numbers and placeholders fewer).
PROMPT_OVERHEAD_TOKENS = 256
CHARS_PER_PROMPT_TOKEN = 2.0


class ClientSettings(ConfigModel):
    """How the chat client talks to the endpoints: what a mixture config sets under ``translation``."""

    model: str | None = Field(None, description="model name or local path served by vLLM; None: the endpoint's first")
    concurrency: int = Field(16, ge=1, description="requests in flight per endpoint", json_schema_extra=EXECUTION_ONLY)
    timeout_s: float = Field(60.0, gt=0, description="seconds per request")
    max_retries: int = Field(5, ge=0)
    temperature: float = Field(0.0, ge=0)
    api_key_env: str | dict[str, str] | None = Field(
        None, description="the environment variable holding the endpoints' API key (sent as a bearer token), "
        "or endpoint URL -> variable where they differ; read where requests are sent, never stored",
    )
    max_tokens_per_minute: int | None = Field(
        None, gt=0, description="a hosted API's token budget: no minute of the run sends requests holding more "
        "(prompt counted high, plus each answer's max_tokens, settled to the server's usage), across all its "
        "workers and endpoints; None = no limit",
    )
    max_requests_per_minute: int | None = Field(
        None, gt=0, description="a hosted API's request budget, kept like max_tokens_per_minute; None = no limit",
    )


class ValidationSettings(ConfigModel):
    """When a model's answer is not accepted as a translation (the row is kept, flagged with the reason)."""

    min_script_share: float = Field(
        0.5, ge=0, le=1, description="fraction of letter units that must be in the target's scripts"
    )
    max_length_ratio: float = Field(
        4.0, gt=0, description="output characters per source character above which the answer ran away"
    )
    length_slack_chars: int = Field(
        24, ge=0, description="characters allowed beyond max_length_ratio, so very short sources pass"
    )
    check_numbers: bool = Field(
        True, description="flag `number_mismatch` when a number written in digits in the source is not in the "
        "translation (full-width digits and separators normalised; translate/digits.py)",
    )
    refusal_patterns: list[str] = Field(
        default_factory=lambda: list(DEFAULT_REFUSALS),
        description="regular expressions (case-insensitive) matched at the start of the output",
    )


class QualitySettings(ConfigModel):
    """A quality score per translated text: ``back_translation`` (translate/quality.py: the answer
    translated back into English by the same model, scored against the source with chrF, 0-100) or
    ``encoder`` (translate/encoder.py: cosine similarity, -1 to 1, of the source's and the answer's
    embeddings by a multilingual sentence encoder, LaBSE-class, from a local folder)."""

    method: Literal["back_translation", "encoder"] | None = Field(
        None, description="how each accepted translation is scored into the output's `quality` column "
        "(conversations by their pieces); None = not scored (or back_translation: true)",
    )
    back_translation: bool = Field(
        False, description="the same as method: back_translation (one more request per distinct answer)",
    )
    encoder: str | None = Field(
        None, description="method encoder: local folder of a sentence-transformers model (e.g. LaBSE saved "
        "with SentenceTransformer.save); loaded once per worker process, nothing is downloaded",
    )
    encoder_batch_size: int = Field(64, ge=1, description="texts per forward pass of the encoder",
                                    json_schema_extra=EXECUTION_ONLY)
    encoder_device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="where the encoder runs: auto = a GPU where the worker sees one", json_schema_extra=EXECUTION_ONLY,
    )
    min_quality: float | None = Field(
        None, description="score below which a translation is flagged `low_quality` (text null): chrF 0-100 "
        "for back_translation, cosine -1 to 1 for encoder; None = scores are stored, nothing is filtered",
    )

    @property
    def scoring(self) -> str | None:
        """The method in use: ``back_translation``, ``encoder`` or None."""
        return self.method or ("back_translation" if self.back_translation else None)

    @field_validator("encoder")
    @classmethod
    def _encoder_is_a_model(cls, value: str | None) -> str | None:
        return None if value is None else check_folder(value)

    @model_validator(mode="after")
    def _method_is_complete(self) -> QualitySettings:
        if self.back_translation and self.method == "encoder":
            raise ValueError("back_translation: true and method: encoder: choose one method")
        if self.scoring == "encoder" and not self.encoder:
            raise ValueError("method: encoder needs encoder: <local folder of a sentence-transformers model>")
        if self.encoder and self.scoring != "encoder":
            raise ValueError(f"encoder is set but method is {self.scoring}: set method: encoder to use it")
        if self.min_quality is not None:
            if self.scoring is None:
                raise ValueError("min_quality needs a score to filter on: method: back_translation "
                                 "(or back_translation: true) or method: encoder")
            low, high = (-1.0, 1.0) if self.scoring == "encoder" else (0.0, 100.0)
            if not low <= self.min_quality <= high:
                raise ValueError(f"min_quality {self.min_quality} is outside the {self.scoring} score's "
                                 f"range, {low:g} to {high:g}")
        return self


class ConversationSettings(ConfigModel):
    """How whole conversations (rows of field ``conversations``) are cut into requests and judged."""

    max_piece_chars: int = Field(
        1500, ge=32, description="characters of prose per request at most (placeholders included); "
        "longer prose is cut at paragraph, line, sentence, then word boundaries. Less where the model's "
        "context is known (vllm.max_model_len, or what the endpoint reports) and would not hold the "
        "prompt, the piece and its answer budget (TranslateSettings.piece_chars)",
    )
    short_piece_units: int = Field(
        3, ge=0, description="a piece with fewer letter units (words, CJK characters) may come back "
        "as it was or in Latin script (a name, a keyword); the whole sample's script is still checked",
    )


class VllmServers(ConfigModel):
    """How vlmix runs vLLM on the Ray cluster when no endpoint is configured: its offline engine in
    the translation actors (the default), or OpenAI-compatible servers the workers call."""

    engine: Literal["offline", "server"] = Field(
        "offline",
        description="offline = vllm.LLM inside each translation actor, a whole part per batch, no HTTP "
        "hop (bench/README.md: the hop cost 10-35% of tokens/s on CPU); server = vLLM's OpenAI server "
        "per engine, called over HTTP by request-sending workers",
    )
    python: str | None = Field(
        None,
        description="interpreter with vLLM installed, on every node; None = $VLMIX_VLLM_PYTHON, "
        "else ./.venv-vllm/bin/python, else this interpreter",
    )
    device: Literal["auto", "cuda", "cpu"] = Field(
        "auto", description="auto = GPUs when the cluster has any, otherwise one CPU server"
    )
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs per server (vLLM --tensor-parallel-size)")
    servers: int | None = Field(
        None, ge=1, description="servers to start; None = one per tensor-parallel group of the cluster's GPUs"
    )
    cpus_per_server: float = Field(1.0, ge=0, description="Ray CPUs each server's actor reserves")
    max_model_len: int | None = Field(None, ge=16, description="tokens of context (vLLM --max-model-len)")
    dtype: str = Field("auto", description="vLLM --dtype (auto, bfloat16, float16, float32)")
    gpu_memory_utilization: float | None = Field(
        None, gt=0, le=1, description="vLLM's fraction of GPU memory"
    )
    extra_args: list[str] = Field(
        default_factory=list, description="further vLLM server arguments (engine: server)"
    )
    engine_kwargs: dict = Field(
        default_factory=dict,
        description="further vllm.LLM keyword arguments (engine: offline), e.g. {max_num_seqs: 256}",
    )
    env: dict[str, str] = Field(default_factory=dict, description="environment of the server processes")
    startup_timeout_s: float = Field(
        1800.0, gt=0, description="seconds to wait for a server's /health or the engine's model to load"
    )

    @model_validator(mode="after")
    def _flags_match_the_engine(self) -> VllmServers:
        if self.engine == "offline" and self.extra_args:
            raise ValueError(
                f"extra_args {self.extra_args} are vLLM server flags, but engine is offline: give the "
                "offline engine vllm.LLM keywords in engine_kwargs (e.g. {enforce_eager: true}), or set "
                "engine: server"
            )
        if self.engine == "server" and self.engine_kwargs:
            raise ValueError("engine_kwargs are vllm.LLM keywords for engine: offline; the server takes "
                             "extra_args (command-line flags)")
        return self


class TranslateSettings(ConfigModel):
    """The translation stage's own settings."""

    max_tokens_per_char: float = Field(
        1.0,
        gt=0,
        description="output token budget per source character (an English caption in CJK "
        "needs about a third of that)",
    )
    min_max_tokens: int = Field(32, ge=1, description="the token budget of the shortest texts")
    max_max_tokens: int = Field(2048, ge=1, description="the token budget of the longest texts")
    retry_backoff_s: float = Field(0.5, gt=0, description="seconds before the first retry; doubles each time")
    max_backoff_s: float = Field(20.0, gt=0, description="seconds; the longest wait between two retries")
    parts_in_flight: int = Field(2, ge=1, description="input parts translated at once (keeps servers busy)")
    workers: int = Field(
        1, ge=1, description="input parts translated at once when Ray is up, each a Ray task with "
        "translation.concurrency / workers requests in flight per endpoint; identical texts are asked once "
        "per part, and the persistent cache carries answers between parts",
    )
    cpus_per_worker: float = Field(0.5, ge=0, description="Ray CPUs one request-sending worker reserves")
    cache: bool = Field(True, description="reuse translations from earlier runs (and write new ones)")
    cache_root: str | None = Field(
        None, description="where the cache lives; None = <storage root>/translate/_cache (local or s3://)"
    )
    validation: ValidationSettings = Field(default_factory=ValidationSettings)
    conversations: ConversationSettings = Field(default_factory=ConversationSettings)
    quality: QualitySettings = Field(default_factory=QualitySettings)
    vllm: VllmServers = Field(default_factory=VllmServers)

    @field_validator("max_max_tokens")
    @classmethod
    def _budget_order(cls, value: int, info) -> int:
        low = info.data.get("min_max_tokens")
        if low is not None and value < low:
            raise ValueError(f"must be at least min_max_tokens ({low})")
        return value

    def max_tokens(self, text: str) -> int:
        """The output token budget for ``text``: proportional to its length, within the bounds."""
        return self._budget(len(text))

    def _budget(self, chars: int) -> int:
        return max(self.min_max_tokens, min(self.max_max_tokens, round(self.max_tokens_per_char * chars)))

    def piece_chars(self, max_model_len: int | None) -> int:
        """The longest prose one request of a conversation carries: ``conversations.max_piece_chars``, or
        less where a context of ``max_model_len`` tokens could not hold the prompt, such a piece (counted
        at :data:`CHARS_PER_PROMPT_TOKEN`) and its answer budget (:meth:`max_tokens`)."""
        limit = self.conversations.max_piece_chars
        if not max_model_len:
            return limit

        def fits(chars: int) -> bool:
            needed = PROMPT_OVERHEAD_TOKENS + chars / CHARS_PER_PROMPT_TOKEN + self._budget(chars)
            return needed <= max_model_len

        low, high = 32, limit  # the largest that fits (32 if none does: the server refuses those)
        while low < high:
            middle = (low + high + 1) // 2
            low, high = (middle, high) if fits(middle) else (low, middle - 1)
        return low
