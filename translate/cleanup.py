"""What models wrap around a translation, removed before validation, each kind counted.

Two kinds, each removed only when the English source does not have it itself:

- ``label``: a leading "Translation:", "Chinese translation:", "译文：", "翻译：" and the like;
- ``wrapper``: quotation marks or brackets around the whole answer (``"…"``, ``“…”``, ``「…」``,
  ``『…』``, ``(…)``, ``（…）``, ``【…】``...; not the title marks ``《…》``), when the answer holds no
  other closing mark of the pair (``"a" and "b"`` is two quotations, not one wrapped answer).

The model's answer as it came stays in the output's ``raw_output``; the cleaned one is validated and
becomes ``text``.

>>> clean("A dog on a beach.", "Translation: “海滩上的一只狗。”")
('海滩上的一只狗。', ['label', 'wrapper'])
>>> clean('"Stop," he said.', '"停下，"他说。')
('"停下，"他说。', [])
"""

from __future__ import annotations

import regex

_LABEL = regex.compile(
    r"^\s*(?:(?:here is the |the )?(?:\w+ )?translat(?:ion|ed text)(?: into \w+)?|译文|翻译|中文翻译|中文|訳文|翻訳)"
    r"\s*[:：]\s*",
    regex.IGNORECASE,
)
_PAIRS = {'"': '"', "“": "”", "'": "'", "‘": "’", "「": "」", "『": "』", "(": ")", "（": "）",
          "[": "]", "【": "】"}
# Not 《》: Chinese marks a title with them where English uses italics, so they are a translation's own.


def clean(source: str, answer: str) -> tuple[str, list[str]]:
    """(the answer without what the source does not have, the kinds removed, in order)."""
    kinds = []
    text = answer.strip()
    label = _LABEL.match(text)
    if label and not _LABEL.match(source.strip()) and text[label.end() :].strip():
        text = text[label.end() :].strip()
        kinds.append("label")
    if len(text) > 2 and _wrapped(text) and not _wrapped(source.strip()):
        text = text[1:-1].strip()
        kinds.append("wrapper")
    return text, kinds


def _wrapped(text: str) -> bool:
    closing = _PAIRS.get(text[:1])
    return bool(closing) and len(text) > 1 and text.endswith(closing) and closing not in text[1:-1] and (
        closing == text[0] or text[0] not in text[1:-1])
