"""The rules Table 1b's presets share: which answer, how choices are asked, which speaker is whom.

Pure functions over one record's values, so every preset states its rule once and the tests check
each against the annotation it came from.

- **Several answers** (VQA v2, OK-VQA, TextVQA, A-OKVQA's direct answers: ten annotators each):
  :func:`most_frequent`, the answer given most often after trimming and lower-casing; a tie goes to
  the answer given first. Empty answers do not count; all empty: no answer (the question is dropped).
- **Multiple choice** (AI2D, ScienceQA, A-OKVQA, Geometry3K, TabMWP): :func:`lettered` lists the
  options as ``A. ...`` lines under the question and asks for the letter; the answer is the letter.
- **Speakers** (ShareGPT, OpenHermes, LLaVA-style files): :func:`chat_turns` maps the publishers'
  names onto InternVL's ``system``/``human``/``gpt``, leaves out turns before the first human turn
  (ShareGPT has conversations that open with the assistant), and refuses a conversation whose
  speakers do not alternate or whose answer is empty.
"""

from __future__ import annotations

import functools
from collections import Counter
from string import ascii_uppercase

SHORT_ANSWER = "Answer the question using a single word or phrase."
LETTER_ANSWER = "Answer with the option's letter from the given choices directly."

HUMAN_NAMES = frozenset({"human", "user"})
GPT_NAMES = frozenset({"gpt", "assistant", "chatgpt", "bing", "bard", "model"})
SYSTEM_NAMES = frozenset({"system"})


class Dropped(ValueError):
    """A record that cannot become a conversation; ``reason`` is the drop counter's name."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def most_frequent(answers: list) -> str | None:
    """The answer most annotators gave (trimmed, lower-cased); ties go to the one given first.

    >>> most_frequent(["red", "Red ", "dark red", "maroon"])
    'red'
    >>> most_frequent(["", " "]) is None
    True
    """
    normalised = [" ".join(str(a).split()).lower() for a in answers if a is not None]
    counts = Counter(a for a in normalised if a)
    if not counts:
        return None
    best = max(counts.values())
    return next(a for a in normalised if counts.get(a) == best)


def lettered(question: str, choices: list, hint: str = "") -> str:
    """The question with its options as lettered lines, asking for the letter.

    >>> print(lettered("Which is a solid?", ["milk", "rock"]))
    Which is a solid?
    A. milk
    B. rock
    Answer with the option's letter from the given choices directly.
    """
    if not choices or len(choices) > len(ascii_uppercase):
        raise Dropped("bad_choices", f"{len(choices or [])} options")
    lines = [f"Hint: {hint.strip()}"] if hint and hint.strip() else []
    lines.append(question.strip())
    lines += [f"{ascii_uppercase[i]}. {' '.join(str(c).split())}" for i, c in enumerate(choices)]
    lines.append(LETTER_ANSWER)
    return "\n".join(lines)


def letter(choices: list, index) -> str:
    """The letter of option ``index`` (Dropped ``bad_answer`` when it names no option)."""
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(choices or []):
        raise Dropped("bad_answer", f"answer index {index!r} for {len(choices or [])} options")
    return ascii_uppercase[index]


def qa_turns(pairs: list[tuple[str, str]], image: bool = True) -> list[dict]:
    """Question/answer pairs as alternating turns, the image placeholder before the first question."""
    turns = []
    for question, answer in pairs:
        turns += [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]
    if image and turns:
        turns[0]["value"] = "<image>\n" + turns[0]["value"]
    return turns


def chat_turns(turns, keep_system: bool = True) -> list[dict]:
    """Publisher turns ``[{from, value}, ...]`` as InternVL turns (see the module docstring).

    A leading system turn is kept as ``{"from": "system"}`` (InternVL's loader reads it as the
    system prompt) or, with ``keep_system=False``, put in front of the first question. An empty
    system prompt is left out.
    """
    if not isinstance(turns, list) or not all(isinstance(t, dict) for t in turns):
        raise Dropped("bad_conversation", "conversations is not a list of turns")
    system, out = None, []
    for turn in turns:
        speaker, value = str(turn.get("from", "")).lower(), turn.get("value")
        if not isinstance(value, str):
            raise Dropped("bad_conversation", f"a {speaker!r} turn without text")
        if speaker in SYSTEM_NAMES:
            if out or system is not None:
                raise Dropped("bad_conversation", "a system turn after the conversation began")
            system = value.strip()
            continue
        role = "human" if speaker in HUMAN_NAMES else "gpt" if speaker in GPT_NAMES else None
        if role is None:
            raise Dropped("bad_conversation", f"unknown speaker {speaker!r}")
        if not out and role == "gpt":
            continue  # the assistant speaking first: nothing asked it, so nothing to learn
        out.append({"from": role, "value": value})
    if out and out[-1]["from"] == "human":
        out.pop()  # a question left without an answer
    if not out:
        raise Dropped("empty_conversation")
    for index, turn in enumerate(out):
        if turn["from"] != ("human", "gpt")[index % 2]:
            raise Dropped("bad_conversation", "speakers do not alternate")
        if not turn["value"].replace("<image>", "").strip():
            raise Dropped("empty_answer" if turn["from"] == "gpt" else "empty_question")
    if system:
        if keep_system:
            out.insert(0, {"from": "system", "value": system})
        else:
            out[0] = {"from": "human", "value": f"{system}\n\n{out[0]['value']}"}
    return out


def instruction_turns(instruction, input_text, output) -> list[dict]:
    """Alpaca-style ``instruction``/``input``/``output`` as one exchange (input below the instruction)."""
    instruction = (instruction or "").strip() if isinstance(instruction, str) else ""
    input_text = (input_text or "").strip() if isinstance(input_text, str) else ""
    output = output.strip() if isinstance(output, str) else ""
    if not instruction:
        raise Dropped("empty_question", "no instruction")
    if not output:
        raise Dropped("empty_answer")
    question = f"{instruction}\n\n{input_text}" if input_text else instruction
    return [{"from": "human", "value": question}, {"from": "gpt", "value": output}]


def tolerant(adapt):
    """``adapt`` with a record of an unexpected shape (a string where a number was, an object where a
    list was) dropped as unreadable (None) instead of failing its unit."""
    if adapt is None:
        return None

    @functools.wraps(adapt)
    def wrapped(record, extras):
        try:
            return adapt(record, extras)
        except (TypeError, ValueError, KeyError, AttributeError, IndexError):
            return None

    return wrapped


def register_all(presets) -> None:
    """Register each preset with its ``adapt`` made :func:`tolerant`."""
    from dataclasses import replace

    from tasks.published.presets import register_preset

    for preset in presets:
        register_preset(replace(preset, adapt=tolerant(preset.adapt)))
