"""Best-of routes per request (issue 20), offline: which of several routes' answers to one item to return.

Candidates are routes in a fixed order (direct first), each with one answer per item. `oracle_choice` looks
at the reference (per item the candidate with the most points: an upper bound no server can reach);
`consensus_choice` does not (minimum Bayes risk with sentence chrF++ as the utility: the candidate most like
the others). Ties go to the candidate named first, so direct wins a tie.
"""

from __future__ import annotations

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
