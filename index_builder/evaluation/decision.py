"""Routing decisions from paired outcomes: a bridge only when it beats the direct route significantly.

Pure (no I/O, no clock). `bridgex-index calibrate` asks the model every held-out word of a pair once directly
and once through each candidate bridge, marks the hits, and hands them here; the result is one row of the
index's `routing_decisions` table, which the server follows.

The rule, for candidate bridge c on the n words both routes answered (the same words: a paired design):
- discordant pairs: `bridge_only` words c got right and direct wrong, `direct_only` the reverse;
- exact one-sided McNemar test: under H0 (c is no better than direct) bridge_only ~ Binomial(bridge_only +
  direct_only, 1/2), p = P(X >= bridge_only); no discordant pair gives p = 1;
- Holm's step-down correction over the m candidates tested, family-wise error `alpha` (0.05);
- the route is the candidate with the highest accuracy among those whose Holm-adjusted p <= alpha (ties: the
  smaller adjusted p, then the code); none significant: `direct`.

The reported interval is Newcombe's hybrid score interval for a difference of paired proportions (Newcombe
1998, "method 10": the Wilson intervals of both accuracies combined with the correlation of the paired
outcomes, its phi estimate continuity-corrected as in the paper): analytic, inside [-1, 1] and well-behaved
near accuracy 0, where small models live. It is two-sided at `confidence` (0.95) and describes the gain; the
decision is the test's. Checked against Fagerland, Lydersen and Laake's `contingencytables` values.

`split_words` halves the held-out words by a salted hash, so the route chosen on the calibration half is
judged on the evaluation half, words it was not chosen on.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist

ALPHA = 0.05
CONFIDENCE = 0.95
TEST = "mcnemar-exact-one-sided+holm"
INTERVAL = "newcombe-paired"
SPLIT_SALT = "bridgex-calibration"


@dataclass(frozen=True)
class Comparison:
    """One candidate bridge against direct on the same words."""

    bridge: str
    n: int  # paired words
    both: int  # right by both routes
    bridge_only: int  # right through the bridge only
    direct_only: int  # right directly only
    p_value: float  # one-sided exact McNemar, uncorrected
    p_adjusted: float  # Holm-adjusted over the candidates
    ci_low: float  # interval of bridge_accuracy - direct_accuracy
    ci_high: float
    significant: bool  # p_adjusted <= alpha

    @property
    def direct_accuracy(self) -> float:
        return (self.both + self.direct_only) / self.n

    @property
    def bridge_accuracy(self) -> float:
        return (self.both + self.bridge_only) / self.n

    @property
    def gain(self) -> float:
        return (self.bridge_only - self.direct_only) / self.n


@dataclass(frozen=True)
class RouteDecision:
    """The route for one pair and the evidence; numbers describe `bridge` (the chosen or best candidate)."""

    decision: str  # "direct" or the chosen bridge
    bridge: str | None  # the candidate reported: the chosen one, else the best tested; None if none tested
    n: int
    direct_accuracy: float
    bridge_accuracy: float | None
    gain: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None  # Holm-adjusted
    test: str  # e.g. "mcnemar-exact-one-sided+holm(alpha=0.05); ci=newcombe-paired(0.95)"
    alpha: float
    comparisons: tuple[Comparison, ...]
    task: str = "word"  # the requests the decision routes: word, or translate (decided on sentences)
    candidates: int | None = None  # bridges tested when `comparisons` does not list them (sentences)

    def row(
        self,
        source: str,
        target: str,
        *,
        model: str | None = None,
        endpoint: str | None = None,
        created_at: object = None,
        test_set: str | None = None,
    ) -> dict:
        """The decision as a `routing_decisions` row (`bridgex_index.store.write_routing_decisions`);
        `test_set` names what it was measured on (`calibrate.measured_on`)."""
        return {
            "source": source,
            "target": target,
            "decision": self.decision,
            "bridge": self.bridge,
            "direct_accuracy": self.direct_accuracy,
            "bridge_accuracy": self.bridge_accuracy,
            "n": self.n,
            "gain": self.gain,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "p_value": self.p_value,
            "test": self.test,
            "candidates": self.candidates if self.candidates is not None else len(self.comparisons),
            "model": model,
            "endpoint": endpoint,
            "created_at": created_at,
            "task": self.task,
            "test_set": test_set,
        }


# ------------------------------------------------------------------------------------------ statistics


def mcnemar_exact_one_sided(bridge_only: int, direct_only: int) -> float:
    """P(X >= bridge_only) for X ~ Binomial(bridge_only + direct_only, 1/2), in exact integer arithmetic."""
    if bridge_only < 0 or direct_only < 0:
        raise ValueError("discordant counts must be non-negative")
    n = bridge_only + direct_only
    if n == 0:
        return 1.0
    return sum(math.comb(n, k) for k in range(bridge_only, n + 1)) / 2**n


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given (reject H_i when adjusted p_i <= alpha)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def _z(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    return NormalDist().inv_cdf(1.0 - (1.0 - confidence) / 2.0)


def wilson_interval(hits: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson's score interval for a proportion hits / n."""
    if n <= 0 or not 0 <= hits <= n:
        raise ValueError(f"need 0 <= hits <= n and n > 0, got hits={hits}, n={n}")
    z = _z(confidence)
    p = hits / n
    denominator = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def paired_difference_interval(
    both: int, bridge_only: int, direct_only: int, neither: int, confidence: float = CONFIDENCE
) -> tuple[float, float]:
    """Newcombe's hybrid score interval for p_bridge - p_direct from a paired 2x2 table."""
    n = both + bridge_only + direct_only + neither
    if n <= 0:
        raise ValueError("the paired table is empty")
    p1, p2 = (both + bridge_only) / n, (both + direct_only) / n
    l1, u1 = wilson_interval(both + bridge_only, n, confidence)
    l2, u2 = wilson_interval(both + direct_only, n, confidence)
    margins = (both + bridge_only) * (direct_only + neither) * (both + direct_only) * (bridge_only + neither)
    phi = 0.0
    if margins > 0:
        a = both * neither - bridge_only * direct_only
        if a > n / 2:
            phi = (a - n / 2) / math.sqrt(margins)
        elif a < 0:
            phi = a / math.sqrt(margins)
    d = p1 - p2
    low = d - math.sqrt(max(0.0, (p1 - l1) ** 2 + (u2 - p2) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2)))
    high = d + math.sqrt(max(0.0, (p2 - l2) ** 2 + (u1 - p1) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1)))
    return max(-1.0, low), min(1.0, high)


# ------------------------------------------------------------------------------------------- the rule


def paired_tables(
    direct: Mapping[str, bool], bridges: Mapping[str, Mapping[str, bool]]
) -> dict[str, tuple[int, int, int, int]]:
    """Per bridge (sorted): the paired 2×2 table over the words (both right, bridge only, direct only,
    neither). Raises ValueError without words or when a bridge was measured on other words than direct."""
    words = list(direct)
    n = len(words)
    if n == 0:
        raise ValueError("no paired words: calibration needs the same held-out words for every route")
    for bridge, hits in bridges.items():
        if set(hits) != set(words):
            missing = sorted(set(words) ^ set(hits))[0]
            raise ValueError(
                f"bridge {bridge!r} was not measured on the same words as direct (e.g. {missing!r})"
            )
    tables = {}
    for bridge, hits in sorted(bridges.items()):
        both = sum(1 for w in words if direct[w] and hits[w])
        bridge_only = sum(1 for w in words if hits[w] and not direct[w])
        direct_only = sum(1 for w in words if direct[w] and not hits[w])
        tables[bridge] = (both, bridge_only, direct_only, n - both - bridge_only - direct_only)
    return tables


def decide(
    direct: Mapping[str, bool],
    bridges: Mapping[str, Mapping[str, bool]],
    *,
    alpha: float = ALPHA,
    confidence: float = CONFIDENCE,
) -> RouteDecision:
    """Choose direct or a bridge from per-word hits (`word -> right?`) on the same held-out words.

    Every candidate must have an outcome for exactly the words `direct` has (a paired design); raises
    ValueError otherwise, or when there are no words.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    words = list(direct)
    n = len(words)
    tables = paired_tables(direct, bridges)
    raw = [mcnemar_exact_one_sided(t[1], t[2]) for t in tables.values()]
    adjusted = holm(raw)
    comparisons = tuple(
        Comparison(
            bridge,
            n,
            t[0],
            t[1],
            t[2],
            p,
            q,
            *paired_difference_interval(*t, confidence=confidence),
            significant=q <= alpha,
        )
        for (bridge, t), p, q in zip(tables.items(), raw, adjusted, strict=True)
    )
    best_first = sorted(comparisons, key=lambda c: (-c.bridge_accuracy, c.p_adjusted, c.bridge))
    chosen = next((c for c in best_first if c.significant), None)
    reported = chosen or (best_first[0] if best_first else None)
    direct_accuracy = sum(1 for w in words if direct[w]) / n
    test = f"{TEST}(alpha={alpha:g}); ci={INTERVAL}({confidence:g})"
    if reported is None:
        unmeasured = (None, None, None, None, None)  # bridge accuracy, gain, interval, p-value
        return RouteDecision("direct", None, n, direct_accuracy, *unmeasured, test, alpha, ())
    return RouteDecision(
        decision=chosen.bridge if chosen else "direct",
        bridge=reported.bridge,
        n=n,
        direct_accuracy=direct_accuracy,
        bridge_accuracy=reported.bridge_accuracy,
        gain=reported.gain,
        ci_low=reported.ci_low,
        ci_high=reported.ci_high,
        p_value=reported.p_adjusted,
        test=test,
        alpha=alpha,
        comparisons=comparisons,
    )


SENTENCE_TEST = "paired-bootstrap-chrf++-one-sided+holm"


def decide_sentences(
    sources: Sequence[str],
    references: Sequence[str],
    direct: Sequence[str],
    bridges: Mapping[str, Sequence[str]],
    target: str,
    *,
    alpha: float = ALPHA,
    n_boot: int = 1000,
) -> RouteDecision:
    """Choose direct or a bridge for sentence translation from the answers of every route to the same
    sentences: per candidate, corpus chrF++ against direct by paired bootstrap (one-sided p = share of
    resamples where the bridge is not better), Holm over the candidates; the route is the best-scoring
    candidate whose adjusted p <= alpha, else direct. Accuracies in the result are chrF++ / 100."""
    from .sentence_scoring import CHRF_PP, corpus_score, paired_bootstrap

    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    if not sources or not len(sources) == len(references) == len(direct):
        raise ValueError(
            "sentence calibration needs the same sentences (and one answer each) for every route"
        )
    base = corpus_score(CHRF_PP, direct, references, target) / 100
    compared = {
        bridge: paired_bootstrap(CHRF_PP, said, direct, references, target, n_boot)
        for bridge, said in sorted(bridges.items())
    }
    adjusted = dict(zip(compared, holm([c.p_value for c in compared.values()]), strict=True))
    best_first = sorted(compared, key=lambda b: (-compared[b].score, adjusted[b], b))
    chosen = next((b for b in best_first if adjusted[b] <= alpha), None)
    reported = chosen or (best_first[0] if best_first else None)
    test = f"{SENTENCE_TEST}(alpha={alpha:g}); ci=percentile({CONFIDENCE:g})"
    n = len(sources)
    if reported is None:
        unmeasured = (None, None, None, None, None)
        return RouteDecision("direct", None, n, base, *unmeasured, test, alpha, (), "translate", 0)
    c = compared[reported]
    return RouteDecision(
        decision=chosen or "direct",
        bridge=reported,
        n=n,
        direct_accuracy=base,
        bridge_accuracy=c.score / 100,
        gain=c.delta / 100,
        ci_low=c.low / 100,
        ci_high=c.high / 100,
        p_value=adjusted[reported],
        test=test,
        alpha=alpha,
        comparisons=(),
        task="translate",
        candidates=len(compared),
    )


def split_words(
    words: Iterable[str], *, fraction: float = 0.5, salt: str = SPLIT_SALT
) -> tuple[list[str], list[str]]:
    """(calibration, evaluation) halves of held-out words, by a salted sha256 of each word: the same on
    every run and machine, independent of order, and a word keeps its half when others are added.

    The salt keeps the halves independent of the dictionaries' probe/test hash (an unsalted hash of the
    same keys would put every test word on one side). Pass language-qualified words (`sw:maji`) when one
    call mixes pairs.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be between 0 and 1, got {fraction}")
    calibration: list[str] = []
    evaluation: list[str] = []
    for word in words:
        digest = hashlib.sha256(f"{salt}\x1f{word}".encode()).digest()
        (calibration if int.from_bytes(digest[:8], "big") / 2**64 < fraction else evaluation).append(word)
    return calibration, evaluation
