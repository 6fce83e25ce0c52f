"""Sentence-translation scoring: corpus chrF++ and BLEU, paired bootstrap against direct, diagnostics.

Scores are sacrebleu's own (chrF++ = `CHRF(word_order=2)`, BLEU with a tokenizer chosen by the target
language), computed from per-sentence sufficient statistics so that a bootstrap resample costs a sum, not a
re-tokenisation. A paired bootstrap draws the same sentence indices for the strategy and for direct in
every resample (fixed seed), so both are scored on the same sentences. Diagnostics count what a corpus
score hides: empty answers, answers that copy the source, answers in another language.

The copy normaliser and the language detector are passed in, so the evaluation uses the server's own
(`bridgex_index.words.normalise_word`, `bridgex_index.detect.make_detector`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.metrics.base import Metric

CHRF_PP = "chrf++"
BLEU_METRIC = "bleu"
METRICS = (CHRF_PP, BLEU_METRIC)
DEFAULT_BOOTSTRAP = 1000  # resamples: sacrebleu's default for paired bootstrap
DEFAULT_SEED = 12345  # sacrebleu's default seed; any fixed value makes intervals reproducible
# BLEU needs words: Chinese has sacrebleu's own segmenter; Japanese would need MeCab, so characters.
_BLEU_TOKENIZE = {"zh": "zh", "ja": "char"}


def bleu_tokenizer(target: str) -> str:
    """The sacrebleu tokenizer for BLEU on `target` sentences (`13a` unless the script has no spaces)."""
    return _BLEU_TOKENIZE.get(target, "13a")


def metric(name: str, target: str) -> Metric:
    """A fresh sacrebleu metric object: chrF++ or BLEU for `target`."""
    if name == CHRF_PP:
        return CHRF(word_order=2)
    if name == BLEU_METRIC:
        return BLEU(tokenize=bleu_tokenizer(target))
    raise ValueError(f"unknown metric {name!r} (expected one of {', '.join(METRICS)})")


def _check(hypotheses: Sequence[str], references: Sequence[str]) -> None:
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} answers for {len(references)} references")
    if not references:
        raise ValueError("no sentences to score")


def _statistics(m: Metric, hypotheses: Sequence[str], references: Sequence[str]) -> np.ndarray:
    """Per-sentence sufficient statistics (sentences, stats): summing rows gives the corpus statistics."""
    return np.asarray(m._extract_corpus_statistics(list(hypotheses), [list(references)]))


def _score(m: Metric, stats: np.ndarray) -> float:
    """The corpus score of summed statistics (stats,)."""
    return float(m._compute_score_from_stats(stats.tolist()).score)


def corpus_score(name: str, hypotheses: Sequence[str], references: Sequence[str], target: str) -> float:
    """Corpus chrF++ or BLEU (0–100) of answers against one reference each."""
    _check(hypotheses, references)
    m = metric(name, target)
    return _score(m, _statistics(m, hypotheses, references).sum(axis=0))


def signature(name: str, target: str) -> str:
    """sacrebleu's signature of the metric, for provenance (`nrefs:1|case:mixed|...|version:2.6.0`)."""
    m = metric(name, target)
    m.corpus_score(["."], [["."]])  # sacrebleu knows the number of references only after a scoring
    return str(m.get_signature())


@dataclass(frozen=True)
class Comparison:
    """A strategy against direct on the same sentences: scores, difference and its 95% interval."""

    metric: str
    n: int
    score: float
    direct: float
    delta: float  # score − direct
    low: float
    high: float
    p_value: float = 1.0  # one-sided: the share of resamples in which the strategy is not better (≤ 0)

    @property
    def significant(self) -> bool:
        """The interval excludes zero."""
        return self.low > 0 or self.high < 0


def sentence_scores(
    name: str, hypotheses: Sequence[str], references: Sequence[str], target: str
) -> np.ndarray:
    """Each answer's own chrF++ or BLEU (0–100) against its reference (sacrebleu's `sentence_score`), (n,)."""
    _check(hypotheses, references)
    m = metric(name, target)
    return np.array([_score(m, row) for row in _statistics(m, hypotheses, references)])


def paired_bootstrap(
    name: str,
    hypotheses: Sequence[str],
    direct: Sequence[str],
    references: Sequence[str],
    target: str,
    n_boot: int = DEFAULT_BOOTSTRAP,
    seed: int = DEFAULT_SEED,
) -> Comparison:
    """Corpus `name` of `hypotheses` vs `direct` answers, and the 95% percentile interval of the
    difference over `n_boot` resamples of the sentences (the same indices for both in each resample)."""
    return paired_bootstrap_mean(name, [(hypotheses, direct, references, target)], n_boot, seed)


def paired_bootstrap_mean(
    name: str,
    groups: Sequence[tuple[Sequence[str], Sequence[str], Sequence[str], str]],
    n_boot: int = DEFAULT_BOOTSTRAP,
    seed: int = DEFAULT_SEED,
) -> Comparison:
    """The mean over groups (e.g. pairs) of each group's corpus `name`, answers vs baseline answers, and the
    95% percentile interval of the mean difference: each resample draws every group's sentences from that
    group (stratified), the same indices for both sides. Groups are (answers, baseline answers, references,
    target); with one group this is `paired_bootstrap`. `n` of the result counts every group's sentences."""
    for hypotheses, baseline, references, _target in groups:
        _check(hypotheses, references)
        _check(baseline, references)
    if not groups:
        raise ValueError("no groups to compare")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    deltas = np.zeros(n_boot)  # (n_boot,) summed over groups, then averaged
    scores, bases = [], []
    for hypotheses, baseline, references, target in groups:
        m = metric(name, target)
        ours = _statistics(m, hypotheses, references)  # (n, stats)
        theirs = _statistics(m, baseline, references)  # (n, stats)
        n = len(references)
        indices = rng.integers(0, n, size=(n_boot, n))  # (n_boot, n)
        ours_boot, theirs_boot = ours[indices].sum(axis=1), theirs[indices].sum(axis=1)  # (n_boot, stats)
        deltas += np.array([_score(m, a) - _score(m, b) for a, b in zip(ours_boot, theirs_boot, strict=True)])
        scores.append(_score(m, ours.sum(axis=0)))
        bases.append(_score(m, theirs.sum(axis=0)))
    deltas /= len(groups)
    low, high = np.percentile(deltas, [2.5, 97.5])
    score, base = sum(scores) / len(groups), sum(bases) / len(groups)
    p_value = float(np.mean(deltas <= 0))
    n_total = sum(len(references) for _h, _b, references, _t in groups)
    return Comparison(name, n_total, score, base, score - base, float(low), float(high), p_value)


@dataclass(frozen=True)
class Diagnostics:
    """What a corpus score hides, as counts over `n` answers (length ratio: answer / reference chars)."""

    n: int
    empty: int
    copies: int  # the answer is the source (where the reference is not)
    wrong_language: int  # detected as a language other than the target
    undetected: int  # non-empty answers the detector could not place
    length_ratio: float | None  # total answer characters / total reference characters

    def rates(self) -> dict[str, float]:
        """The counts as percentages of `n`."""
        share = (lambda k: 100.0 * k / self.n) if self.n else (lambda k: 0.0)
        return {
            "empty": share(self.empty),
            "copies": share(self.copies),
            "wrong_language": share(self.wrong_language),
            "undetected": share(self.undetected),
        }


def diagnose(
    sources: Sequence[str],
    answers: Sequence[str],
    references: Sequence[str],
    target: str,
    normalise: Callable[[str], str],
    detect: Callable[[str], str | None] | None = None,
) -> Diagnostics:
    """Count empty answers, copies of the source and answers not in `target` (when `detect` is given).

    An answer is empty when `normalise` leaves nothing; a copy when it equals the source after
    `normalise` and the reference does not (a sentence that is the same in both languages is no error).
    """
    if not len(sources) == len(answers) == len(references):
        raise ValueError(
            f"diagnose needs as many sources, answers and references, got "
            f"{len(sources)}, {len(answers)} and {len(references)}"
        )
    empty = copies = wrong = undetected = 0
    for source, answer, reference in zip(sources, answers, references, strict=True):
        said = normalise(answer)
        if not said:
            empty += 1
            continue
        original = normalise(source)
        if said == original and normalise(reference) != original:
            copies += 1
        if detect is not None:
            language = detect(answer)
            if language is None:
                undetected += 1
            elif language != target:
                wrong += 1
    reference_chars = sum(len(r) for r in references)
    ratio = sum(len(a.strip()) for a in answers) / reference_chars if reference_chars else None
    return Diagnostics(len(answers), empty, copies, wrong, undetected, ratio)


@dataclass(frozen=True)
class StrategyScore:
    """One strategy on one pair: its corpus scores, diagnostics and, except for direct, both comparisons
    with direct (`vs_direct[metric]`)."""

    strategy: str
    n: int
    scores: dict[str, float]  # metric → corpus score
    diagnostics: Diagnostics
    vs_direct: dict[str, Comparison]


def score_strategies(
    sources: Sequence[str],
    references: Sequence[str],
    answers: Mapping[str, Sequence[str]],
    target: str,
    normalise: Callable[[str], str],
    detect: Callable[[str], str | None] | None = None,
    baseline: str = "direct",
    n_boot: int = DEFAULT_BOOTSTRAP,
    seed: int = DEFAULT_SEED,
) -> list[StrategyScore]:
    """Score every strategy's answers to the same sentences of one pair (strategy → answers, in order).

    Every strategy other than `baseline` is compared with it on both metrics when the baseline was asked.
    """
    rows: list[StrategyScore] = []
    for strategy, said in answers.items():
        _check(said, references)
        scores = {name: corpus_score(name, said, references, target) for name in METRICS}
        vs_direct = (
            {
                name: paired_bootstrap(name, said, answers[baseline], references, target, n_boot, seed)
                for name in METRICS
            }
            if strategy != baseline and baseline in answers
            else {}
        )
        diagnostics = diagnose(sources, said, references, target, normalise, detect)
        rows.append(StrategyScore(strategy, len(references), scores, diagnostics, vs_direct))
    return rows
