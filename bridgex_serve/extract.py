"""The translation itself from an instruct model's answer: no preamble, label, quotes, fences or notes.

Asked in chat to translate, Qwen2.5-Coder-1.5B-Instruct began 41 of 60 Swahili→French answers with a line
such as "Voici la traduction en français :". What a bridge step or a translate request returns, and what the
evaluation scores, must be the translation only; `extract_translation` is that one pure step.
"""

from __future__ import annotations

import re

# Words that mark a line (or a prefix ending in a colon) as talk about the translation, not the translation.
_TALK = re.compile(
    r"translat|traduc|traduz|tradu[çc]|[üu]bersetz|tafsiri|tarjuma|ترجم|תרגו?ם|翻訳|翻译|翻譯|訳",
    re.IGNORECASE,
)
_PREAMBLE = re.compile(
    _TALK.pattern + r"|^\W*(?:here\s+is|here's|sure|certainly|of course|voici|voil[àa]"
    r"|aqu[íi]\s+(?:est[áa]|tienes)|claro|hier\s+ist|gerne|bien\s+s[ûu]r|ok(?:ay)?\b)",
    re.IGNORECASE,
)
# Closing remarks a model appends after the translation.
_NOTE = re.compile(
    r"^\W*(?:note|nota|remarque|hinweis|explanation|explication|this translation|cette traduction|"
    r"esta traducci[óo]n|diese [üu]bersetzung|i hope|j'esp[èe]re|let me know)\b",
    re.IGNORECASE,
)
_FENCE = re.compile(r"^\s*```")
_COLON = re.compile(r"[:：]\s*$")
_QUOTES = [('"', '"'), ("“", "”"), ("«", "»"), ("„", "“"), ("「", "」"), ("『", "』"), ("'", "'"), ("‘", "’")]
_MAX_PREAMBLE_WORDS = 12
_MAX_LABEL_WORDS = 8
_LABEL = re.compile(r"^(.*?)[:：]\s*(\S.*)$", re.DOTALL)


def _is_preamble(line: str, target_names: tuple[str, ...]) -> bool:
    """A short line that talks about translating ("Here is the translation:", "Sure, here's the
    translation."), or that is only a language label ("French:")."""
    if not _COLON.search(line):
        return len(line.split()) <= _MAX_PREAMBLE_WORDS and bool(_TALK.search(line)) and line[-1] in ".!"
    head = _COLON.sub("", line).strip().strip("*#").strip()
    if head.casefold() in target_names:
        return True
    return len(head.split()) <= _MAX_PREAMBLE_WORDS and bool(_PREAMBLE.search(head))


def _strip_label(line: str, target_names: tuple[str, ...]) -> str:
    """`Voici la traduction : X` → `X`; `French: X` → `X` (only for preamble words or the target's name)."""
    m = _LABEL.match(line)
    if m is None:
        return line
    label = m.group(1).strip().strip("*#").strip()
    words = label.split()
    if label.casefold() in target_names or (
        0 < len(words) <= _MAX_LABEL_WORDS and _PREAMBLE.search(label) is not None
    ):
        return m.group(2).strip()
    return line


def _unquote(text: str) -> str:
    text = text.strip().strip("*").strip()
    for left, right in _QUOTES:
        if len(text) >= 2 and text.startswith(left) and text.endswith(right) and text.count(left) <= 2:
            return text[len(left) : -len(right)].strip()
    return text


def extract_translation(answer: str, target_names: tuple[str, ...] | list[str] = ()) -> str:
    """The translation in `answer`: drops code fences, preamble lines ("Voici la traduction en français :",
    "Here is the translation:"), a leading label ("French: …"), closing notes ("Note: …") and the quotes
    around the whole. `target_names` are names of the target language ("French", "français") that count as
    labels. Lines of a multi-line translation are kept; an answer with nothing else is returned stripped.
    """
    names = tuple(n.casefold() for n in target_names)
    lines = [line.strip() for line in answer.strip().splitlines()]
    lines = [line for line in lines if line and not _FENCE.match(line)]
    while len(lines) > 1 and _is_preamble(lines[0], names):
        lines.pop(0)
    while len(lines) > 1 and _NOTE.match(lines[-1]):
        lines.pop()
    if not lines:
        return ""
    lines[0] = _strip_label(lines[0], names)
    return _unquote("\n".join(lines))
