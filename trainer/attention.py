"""``sdpa_packed``: packed sequences under PyTorch's sdpa without a whole-sequence mask.

``transformers`` runs a packed sequence under ``sdpa`` with a block-causal mask over the whole
pack: exact, but it computes (and stores) the square of the pack's length, most of it masked
out, and a masked sdpa cannot use the flash kernels. Varlen flash attention, which skips the
work across samples, needs the ``flash-attn`` package and a GPU; FlexAttention has no backward
on CPU. ``sdpa_packed`` is the piece none of them covers: the LLM's attention runs as one
causal sdpa call per sample of the pack (``transformers``' own ``sdpa_attention_forward`` on
each slice, so on a GPU each call can take sdpa's flash kernel), and no mask is built. Batches
without sample lengths (padded rows, InternViT) go to plain sdpa unchanged.

The sample lengths arrive as ``segment_lengths``, a keyword the model passes down to the
attention (``trainer.packing.model_inputs``); the per-sample loop is kept out of
``torch.compile`` graphs, so the compiled layers do not recompile for every new pack layout.
"""

import torch

NAME = "sdpa_packed"


@torch.compiler.disable
def packed_sdpa_attention(module, query, key, value, attention_mask, segment_lengths=None, **kwargs):
    """One causal sdpa per sample: ``query``/``key``/``value`` are ``(1, heads, length, dim)``."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if segment_lengths is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    if query.shape[0] != 1:
        raise ValueError(f"{NAME} takes one packed row, not {query.shape[0]}")
    outputs, start = [], 0
    for length in segment_lengths:
        end = start + length
        piece, _ = sdpa_attention_forward(
            module, query[:, :, start:end], key[:, :, start:end], value[:, :, start:end], None, **kwargs
        )
        outputs.append(piece)
        start = end
    return torch.cat(outputs, dim=1), None


def _packed_mask(**kwargs):
    """No mask for a packed row (each sample is causal by itself); sdpa's mask for padded rows."""
    from transformers.masking_utils import sdpa_mask

    if kwargs.get("attention_mask") is None:
        return None
    return sdpa_mask(**kwargs)


def register() -> None:
    """Make ``sdpa_packed`` an attention implementation ``transformers`` models accept (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(NAME, packed_sdpa_attention)
    AttentionMaskInterface.register(NAME, _packed_mask)
