"""Best-of routes per request (issue 20), offline: which of several routes' answers to one item to return.

Candidates are routes in a fixed order (direct first), each with one answer per item. `oracle_choice` looks
at the reference (per item the candidate with the most points: an upper bound no server can reach);
`consensus_choice` does not (minimum Bayes risk with sentence chrF++ as the utility: the candidate most like
the others). `scored_choice` takes per item the best-scoring candidate by any score (e.g. the model's own
length-normalised log-probability of the answer, `mean_logprob` over the answer's tokens, `span_start`),
never a flagged one (a copy, an answer in another language) while a clean one is there. Ties go to the
candidate named first, so direct wins a tie.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from .sentence_scoring import CHRF_PP, sentence_scores

DIRECT = "direct"
ENGLISH = "en"


def candidates(measured: Sequence[str], ranked: Sequence[str], limit: int = 3) -> list[str]:
    """The best-of candidates among the `measured` routes: direct, the English pivot, then the bridges in
    the index's order (`ranked`, best first), at most `limit`."""
    order = [DIRECT, ENGLISH, *(b for b in ranked if b != ENGLISH)]
    return [r for r in dict.fromkeys(order) if r in measured][:limit]


def _first_best(table: np.ndarray, routes: Sequence[str]) -> list[str]:
    """Per column of `table` (routes, items), the route of its highest value (the first one on a tie)."""
    return [routes[int(i)] for i in np.argmax(table, axis=0)]  # argmax: the first maximum


def _routes(candidates: Mapping[str, Sequence]) -> list[str]:
    routes = list(candidates)
    if not routes:
        raise ValueError("no candidates")
    lengths = {len(candidates[r]) for r in routes}
    if len(lengths) != 1:
        raise ValueError(f"candidates answer different numbers of items: {sorted(lengths)}")
    return routes


def oracle_choice(points: Mapping[str, Sequence[float]]) -> list[str]:
    """Per item, the route whose answer scored the most points against the reference (route → points per
    item); ties go to the route named first."""
    routes = _routes(points)
    return _first_best(np.array([np.asarray(points[r], dtype=float) for r in routes]), routes)


def consensus_choice(
    answers: Mapping[str, Sequence[str]], name: str = CHRF_PP, target: str = ""
) -> list[str]:
    """Per item, the route whose answer has the highest mean sentence `name` (chrF++) against the other
    routes' answers to the item, each taken as the reference; ties go to the route named first; one
    candidate is always chosen. No reference is read."""
    routes = _routes(answers)
    n = len(answers[routes[0]])
    if len(routes) == 1:
        return [routes[0]] * n
    table = np.zeros((len(routes), n))  # (routes, items): summed agreement with the other candidates
    for i, mine in enumerate(routes):
        for other in routes:
            if other != mine:
                table[i] += sentence_scores(name, answers[mine], answers[other], target)
    return _first_best(table, routes)  # the sum ranks as the mean: every route has len(routes) − 1 others


def pick(answers: Mapping[str, Sequence[str]], choice: Sequence[str]) -> list[str]:
    """The answers a per-item choice of routes returns."""
    return [answers[route][i] for i, route in enumerate(choice)]


def span_start(prefix_ids: Sequence[int], full_ids: Sequence[int]) -> int:
    """Where the scored text's tokens start in `full_ids` (the tokens of prefix + text): after the longest
    run of tokens it shares with the tokens of the prefix alone. A token that straddles the boundary (the
    tokenizer merged the prefix's last characters with the text's first) belongs to the text."""
    n = 0
    for a, b in zip(prefix_ids, full_ids, strict=False):
        if a != b:
            break
        n += 1
    return min(n, len(full_ids))


def mean_logprob(logprobs: Sequence[float | None], start: int) -> float:
    """Length-normalised log-probability of the tokens from `start` on (the per-token log-probabilities of
    a forced prompt, the first of which is None): their mean, −inf when there are none or one is missing."""
    span = list(logprobs[start:])
    if not span or any(lp is None for lp in span):
        return -math.inf
    return float(np.mean(span))


def combined(*scores: Mapping[str, Sequence[float]]) -> dict[str, list[float]]:
    """The per-item sum of several scores of the same routes (e.g. forward + round-trip)."""
    if not scores:
        raise ValueError("no scores")
    routes = _routes(scores[0])
    for other in scores[1:]:
        if list(other) != routes:
            raise ValueError(f"scores of different routes: {routes} and {list(other)}")
    return {r: [float(sum(vals)) for vals in zip(*(s[r] for s in scores), strict=True)] for r in routes}


def scored_choice(
    scores: Mapping[str, Sequence[float | None]], flagged: Mapping[str, Sequence[bool]] | None = None
) -> list[str]:
    """Per item, the route with the highest score (route → score per item; None or NaN: no score, below
    any number), among the routes whose answer is not `flagged` (a copy, an answer in another language)
    unless every route's is; ties go to the route named first (direct). Reads no reference."""
    routes = _routes(scores)
    n = len(scores[routes[0]])
    flagged = flagged or {}
    if any(len(flagged[r]) != n for r in flagged):
        raise ValueError("flags and scores cover different numbers of items")
    table = np.full((len(routes), n), -np.inf)
    for i, r in enumerate(routes):
        for k, value in enumerate(scores[r]):
            if value is not None and not math.isnan(value):
                table[i, k] = value
    bad = np.array([[bool(flagged[r][k]) if r in flagged else False for k in range(n)] for r in routes])
    clean_left = ~bad.all(axis=0)  # items with at least one clean route: flagged routes are out
    out = []
    for k in range(n):
        eligible = [i for i in range(len(routes)) if not (clean_left[k] and bad[i, k])]
        out.append(routes[max(eligible, key=lambda i: (table[i, k], -i))])  # highest; first on a tie
    return out
