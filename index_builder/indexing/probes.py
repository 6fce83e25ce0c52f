"""Probe prompts for one dictionary pair, and which tokens of a probe belong to which language.

Pure: no I/O, no torch, no tokenizer. A probe for the entry (w_a, w_b) reads

    {name_a}:"{w_a}"→{name_b}:"{w_b}"

and every entry gives two probes, this one and its mirror (b first). Each probe records the character spans
of its two words (without the quotes), so that the capture step can map tokens to languages through the
tokenizer's offset mapping (`token_languages`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # typing only: this module stays free of the dictionaries' file and babel imports
    from index_builder.indexing.dictionaries import Entry

ARROW = "\u2192"
MODES = ("teacher-forced", "generate")
_GENERATION_STOPS = ("\n", "\r", '"')

Span = tuple[str, int, int]  # (language, char_start, char_end), end exclusive


@dataclass(frozen=True)
class Probe:
    """One probe prompt.

    `pair` is the unordered dictionary pair (a < b); `direction` is (first language, second language) in the
    text; `spans` are the (language, char_start, char_end) of the words; `prompt_end` is set only in generate
    mode: the char index where the model's continuation starts.
    """

    text: str
    pair: tuple[str, str]
    direction: tuple[str, str]
    spans: tuple[Span, ...]
    prompt_end: int | None = None


def _probe(
    first: tuple[str, str, str], second: tuple[str, str, str], pair: tuple[str, str], generate: bool
) -> Probe:
    """`first` and `second` are (language, prompt name, word)."""
    lang_1, name_1, word_1 = first
    lang_2, name_2, word_2 = second
    head = f'{name_1}:"'
    start_1 = len(head)
    prompt = f'{head}{word_1}"{ARROW}{name_2}:"'
    span_1 = (lang_1, start_1, start_1 + len(word_1))
    if generate:
        return Probe(prompt, pair, (lang_1, lang_2), (span_1,), prompt_end=len(prompt))
    start_2 = len(prompt)
    span_2 = (lang_2, start_2, start_2 + len(word_2))
    return Probe(f'{prompt}{word_2}"', pair, (lang_1, lang_2), (span_1, span_2))


def build_probes(
    pair: tuple[str, str],
    entries: Iterable[Entry],
    names: Mapping[str, str],
    mode: str = "teacher-forced",
) -> list[Probe]:
    """Two probes (a first, then b first) for each entry of a dictionary oriented pair[0] → pair[1].

    `pair` is (source, target) of the entries; the probes' `pair` is its sorted form. `names` maps each
    language code to its prompt name. In `generate` mode each probe stops after `→{name_b}:"` and carries
    only the first word's span; finish it with `complete_generation`.
    """
    if mode not in MODES:
        raise ValueError(f"unknown probe mode {mode!r} (expected one of {', '.join(MODES)})")
    source, target = pair
    missing = [code for code in (source, target) if code not in names]
    if missing:
        raise ValueError(f"no prompt name for language(s) {', '.join(missing)}")
    unordered = (min(source, target), max(source, target))
    generate = mode == "generate"
    probes: list[Probe] = []
    for entry in entries:
        a = (source, names[source], entry.source_word)
        b = (target, names[target], entry.target_word)
        probes.append(_probe(a, b, unordered, generate))
        probes.append(_probe(b, a, unordered, generate))
    return probes


def complete_generation(probe: Probe, continuation: str) -> Probe:
    """The generate-mode probe with the model's continuation appended as the second word.

    The continuation is cut at the first newline or closing quote (the caller limits the token count), then
    appended with a closing `"`. The second span covers the cut continuation without surrounding whitespace;
    when nothing but whitespace is left, the probe keeps only its first span.
    """
    if probe.prompt_end is None or len(probe.spans) != 1:
        raise ValueError("complete_generation needs an uncompleted generate-mode probe")
    cut = min((i for i in (continuation.find(stop) for stop in _GENERATION_STOPS) if i >= 0), default=None)
    word = continuation[:cut]
    spans = probe.spans
    stripped = word.strip()
    if stripped:
        start = probe.prompt_end + word.index(stripped)
        spans = (*spans, (probe.direction[1], start, start + len(stripped)))
    return replace(probe, text=f'{probe.text}{word}"', spans=spans)


def _overlap(token: tuple[int, int], span: Span) -> int:
    return min(token[1], span[2]) - max(token[0], span[1])


def token_languages(
    offsets: Sequence[tuple[int, int]], spans: Sequence[Span], languages: Sequence[str]
) -> list[int]:
    """For each token's (char_start, char_end): the index in `languages` of the word it overlaps, else -1.

    Any overlap counts: a token that straddles a quote and the start of a word (Gemma's tokenizer has `:"`
    as one token, and may merge `"` with word characters) belongs to the word's language when it covers any
    of the word's characters. Empty ranges, such as special tokens' (0, 0), map to -1. A token overlapping
    both words (not possible with this template) goes to the larger overlap.
    """
    index = {code: i for i, code in enumerate(languages)}
    unknown = sorted({span[0] for span in spans} - index.keys())
    if unknown:
        raise ValueError(f"span language(s) {', '.join(unknown)} not in languages {', '.join(languages)}")
    result: list[int] = []
    for token in offsets:
        best, best_overlap = -1, 0
        if token[1] > token[0]:
            for span in spans:
                overlap = _overlap(token, span)
                if overlap > best_overlap:
                    best, best_overlap = index[span[0]], overlap
        result.append(best)
    return result
