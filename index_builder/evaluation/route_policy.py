"""The route policy: which route (direct, or a bridge) each (source, target, task) gets, learned per model
from evidence and pooled across pairs.

Pure (numpy and the standard library; no I/O, no clock). Three steps:

1. **Features** of a candidate route s → b → t from what the index knows (`Signals`): the model's own leg
   qualities (teacher-forced first-token top-1 share and gold log-probability of s→b and b→t against s→t,
   from the build's `pair_quality`), the HSIC selection probability of b (the paper's signal), the
   neuron similarity of s–b and b–t, their typological similarity (lang2vec, when installed), and one
   indicator per bridge, source and target language (what pairs sharing a language have in common).
2. **Prior**: a Gaussian hierarchical model of a route's gain over direct (points of P@1 or chrF++),
   gain = x·β + u + e with u ~ N(0, τ²) the pair-and-route effect no feature explains and e the
   measurement error of the pair's own evidence (its standard error). β has a N(0, 1/λ) prior on
   standardised features (ridge: the language indicators shrink to zero unless the evidence of several
   pairs carries them: partial pooling); τ² by moments (at least 1 point²). Which dense features it reads
   (none, the leg qualities, or all of them) and λ are chosen together by leave-one-pair-out predictive
   likelihood on the evidence at hand: per model and task, the simplest set best at predicting a pair it
   did not see.
   The fit is weighted least squares with weights 1/(se² + τ²); the predictive variance of a new route
   is x Σ xᵀ + τ².
3. **Decision**: a pair's measured gains (if any) update the prior fitted *without* that pair (normal–normal
   posterior). A route other than direct is taken when P(gain > 0) ≥ 0.95 and P(gain < −margin) ≤ 0.05
   (margin 2.5 P@1 points for words, 1 chrF++ point for sentences); among such routes, the highest expected
   gain; otherwise direct.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np

Pair = tuple[str, str]
MARGINS = {"word": 2.5, "translate": 1.0}  # points: P@1 × 100, chrF++ (0-100)
# the least standard error of a pair's evidence: as if one item of n differed by this many points (one
# discordant word; one sentence 10 chrF++ points apart)
EVIDENCE_FLOORS = {"word": 100.0, "translate": 10.0}
P_GAIN = 0.95
P_LOSS = 0.05
LAMBDAS = (0.3, 1.0, 3.0, 10.0, 30.0)
NO_EVIDENCE_TAU = 10.0  # points: the prior's spread before any evidence (gains of ±10 points are common)
MIN_PRIOR_PAIRS = 3  # pairs of evidence the prior needs before it predicts anything but 0 ± NO_EVIDENCE_TAU
MIN_TAU2 = 1.0  # points²: no feature set explains a pair's gain exactly; keeps the prior from overconfidence
DENSE = (
    "top1_source_bridge",  # first-token top-1 share of s→b minus that of s→t
    "top1_bridge_target",  # b→t minus s→t
    "logprob_weakest_leg",  # min(log-prob s→b, b→t) minus log-prob s→t
    "hsic_probability",  # the index's selection probability of b for s→t (0 when unranked)
    "similarity_source_bridge",  # neuron similarity (language_similarity.similarity)
    "similarity_bridge_target",
    "typology_source_bridge",  # lang2vec cosine (fam, syntax_knn mean), 0 when unavailable
    "typology_bridge_target",
)
LEG_FEATURES = DENSE[:3]  # the model's own leg qualities, compared with its direct leg
# the dense feature sets the prior chooses between, simplest first (a tie keeps the simpler)
FEATURE_SETS: tuple[tuple[str, ...], ...] = ((), LEG_FEATURES, DENSE)
_NORMAL = NormalDist()


@dataclass(frozen=True)
class Rule:
    """How the policy decides: the dense feature sets its prior may read (one is chosen per fit, by
    leave-one-pair-out likelihood), and the decision thresholds. A route other than direct always needs a
    positive expected gain besides."""

    feature_sets: tuple[tuple[str, ...], ...] = FEATURE_SETS
    p_gain: float = P_GAIN  # take a route when P(gain > 0) >= p_gain ...
    p_loss: float = P_LOSS  # ... and P(gain < -margin) <= p_loss

    def describe(self) -> str:
        sets = " or ".join("+".join(d) or "none" for d in self.feature_sets)
        return f"p_gain>={self.p_gain:g},p_loss<={self.p_loss:g},features={sets}"


# The shipped rule (docs/results/route-policy.md): the prior reads the feature set that predicts held-out
# pairs best (languages only, the leg qualities, or every feature), and a route is taken when its expected
# gain is positive (P(gain > 0) > 0.5; then P(loss beyond the margin) < 0.5 too). The confident rule
# Rule((DENSE,), 0.95, 0.05) never left direct on 25-38 calibration items a pair, nor from the prior alone.
DEFAULT_RULE = Rule(FEATURE_SETS, 0.5, 0.5)


@dataclass(frozen=True)
class Evidence:
    """One route's paired gain over direct on one pair's items (points), with its standard error."""

    source: str
    target: str
    route: str  # a bridge code
    n: int
    gain: float
    se: float

    @property
    def pair(self) -> Pair:
        return self.source, self.target


@dataclass
class Signals:
    """What the index says about languages (all optional: a missing value is a 0 feature)."""

    languages: Sequence[str]
    legs: Mapping[Pair, tuple[float, float]] = field(default_factory=dict)  # (a, b) → (logprob, top1)
    hsic: Mapping[Pair, Mapping[str, float]] = field(default_factory=dict)  # (s, t) → bridge → prob
    similarity: Mapping[Pair, float] = field(default_factory=dict)  # (a, b), a < b
    typology: Mapping[Pair, float] = field(default_factory=dict)  # (a, b), a < b

    def candidates(self, source: str, target: str) -> list[str]:
        """Every index language other than the pair's, as a bridge."""
        return [c for c in self.languages if c not in (source, target)]


def _sym(table: Mapping[Pair, float], a: str, b: str) -> float:
    value = table.get((min(a, b), max(a, b)))
    return 0.0 if value is None or not math.isfinite(value) else float(value)


def features(signals: Signals, source: str, target: str, bridge: str) -> dict[str, float]:
    """The named features of the route source → bridge → target."""
    legs = signals.legs
    direct, first, second = legs.get((source, target)), legs.get((source, bridge)), legs.get((bridge, target))
    have_legs = direct is not None and first is not None and second is not None
    out = {
        "top1_source_bridge": first[1] - direct[1] if have_legs else 0.0,
        "top1_bridge_target": second[1] - direct[1] if have_legs else 0.0,
        "logprob_weakest_leg": min(first[0], second[0]) - direct[0] if have_legs else 0.0,
        "hsic_probability": float(signals.hsic.get((source, target), {}).get(bridge, 0.0)),
        "similarity_source_bridge": _sym(signals.similarity, source, bridge),
        "similarity_bridge_target": _sym(signals.similarity, bridge, target),
        "typology_source_bridge": _sym(signals.typology, source, bridge),
        "typology_bridge_target": _sym(signals.typology, bridge, target),
    }
    out[f"bridge={bridge}"] = 1.0
    out[f"source={source}"] = 1.0
    out[f"target={target}"] = 1.0
    return out


@dataclass
class Prior:
    """A fitted prior over routes' gains (points). `names` are the columns after the intercept."""

    names: list[str]
    center: np.ndarray  # (k,) training means of the columns (indicators: 0)
    scale: np.ndarray  # (k,) training standard deviations (indicators: 1)
    intercept: float
    coef: np.ndarray  # (k,) per standardised column
    cov: np.ndarray  # (k+1, k+1) posterior covariance of (intercept, coef)
    tau2: float
    lam: float
    n_evidence: int  # evidence rows it was fitted on
    n_pairs: int

    def design(self, feats: Mapping[str, float]) -> np.ndarray:
        """(k+1,) the standardised row of `feats` with a leading 1 (unknown indicators are dropped)."""
        raw = np.array([feats.get(name, 0.0) for name in self.names], dtype=float)
        return np.concatenate([[1.0], (raw - self.center) / self.scale])

    def predict(self, feats: Mapping[str, float]) -> tuple[float, float]:
        """(mean, variance) of the gain of a route with these features, on a pair the prior never saw."""
        x = self.design(feats)
        mean = float(x @ np.concatenate([[self.intercept], self.coef]))
        return mean, float(x @ self.cov @ x) + self.tau2

    @property
    def dense(self) -> list[str]:
        """The dense features it reads (the rest are language indicators)."""
        return [n for n in self.names if "=" not in n]

    def terms(self) -> list[tuple[str, float]]:
        """(name, coefficient per standard deviation) largest first; the intercept first of all."""
        rows = sorted(zip(self.names, self.coef.tolist(), strict=True), key=lambda r: -abs(r[1]))
        return [("intercept", self.intercept), *rows]

    def as_dict(self) -> dict:
        return {
            "names": self.names,
            "center": self.center.tolist(),
            "scale": self.scale.tolist(),
            "intercept": self.intercept,
            "coef": self.coef.tolist(),
            "cov": self.cov.tolist(),
            "tau2": self.tau2,
            "lam": self.lam,
            "n_evidence": self.n_evidence,
            "n_pairs": self.n_pairs,
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> Prior:
        return cls(
            list(data["names"]),
            np.array(data["center"], dtype=float),
            np.array(data["scale"], dtype=float),
            float(data["intercept"]),
            np.array(data["coef"], dtype=float),
            np.array(data["cov"], dtype=float),
            float(data["tau2"]),
            float(data["lam"]),
            int(data["n_evidence"]),
            int(data["n_pairs"]),
        )


def empty_prior() -> Prior:
    """The prior before any evidence: gain 0 ± NO_EVIDENCE_TAU for every route (so: direct)."""
    return Prior(
        [], np.zeros(0), np.ones(0), 0.0, np.zeros(0), np.zeros((1, 1)), NO_EVIDENCE_TAU**2, 0.0, 0, 0
    )


def _solve(x: np.ndarray, y: np.ndarray, se2: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Weighted ridge with τ² by moments, iterated: (beta, covariance, tau2)."""
    penalty = np.eye(x.shape[1]) * lam
    penalty[0, 0] = 1e-6  # the intercept is (almost) free
    tau2 = float(np.var(y)) if len(y) > 1 else NO_EVIDENCE_TAU**2
    for _ in range(50):
        w = 1.0 / (se2 + tau2)
        precision = x.T @ (w[:, None] * x) + penalty
        cov = np.linalg.inv(precision)
        beta = cov @ (x.T @ (w * y))
        resid = y - x @ beta
        new = max(MIN_TAU2, float(np.mean(resid**2 - se2)))
        if abs(new - tau2) < 1e-9 * max(1.0, tau2):
            tau2 = new
            break
        tau2 = new
    w = 1.0 / (se2 + tau2)
    cov = np.linalg.inv(x.T @ (w[:, None] * x) + penalty)
    return cov @ (x.T @ (w * y)), cov, tau2


def _fit(rows: Sequence[Evidence], signals: Signals, lam: float, dense: Sequence[str] = DENSE) -> Prior:
    feats = [features(signals, e.source, e.target, e.route) for e in rows]
    indicators = sorted({k for f in feats for k in f if "=" in k})
    names = [*dense, *indicators]
    raw = np.array([[f.get(n, 0.0) for n in names] for f in feats], dtype=float)  # (m, k)
    center = np.where([n in dense for n in names], raw.mean(axis=0), 0.0)
    scale = np.where([n in dense for n in names], raw.std(axis=0), 1.0)
    scale[scale < 1e-9] = 1.0
    x = np.hstack([np.ones((len(rows), 1)), (raw - center) / scale])  # (m, k+1)
    y = np.array([e.gain for e in rows])
    se2 = np.array([max(e.se, 1e-3) ** 2 for e in rows])
    beta, cov, tau2 = _solve(x, y, se2, lam)
    return Prior(
        names, center, scale, float(beta[0]), beta[1:], cov, tau2, lam, len(rows), len({e.pair for e in rows})
    )


def _loglik(prior: Prior, rows: Sequence[Evidence], signals: Signals) -> float:
    total = 0.0
    for e in rows:
        mean, var = prior.predict(features(signals, e.source, e.target, e.route))
        var += e.se**2
        total += -0.5 * (math.log(2 * math.pi * var) + (e.gain - mean) ** 2 / var)
    return total


def fit_prior(
    rows: Sequence[Evidence], signals: Signals, rule: Rule = DEFAULT_RULE, lambdas: Sequence[float] = LAMBDAS
) -> Prior:
    """The prior from evidence of several pairs; its dense feature set (one of `rule.feature_sets`) and λ
    chosen together by leave-one-pair-out predictive likelihood (a tie keeps the earlier, simpler choice).
    Evidence of fewer than MIN_PRIOR_PAIRS pairs is no ground to generalise from (two pairs fix an intercept
    and nothing else, and would route every other pair alike): `empty_prior()`, as without evidence."""
    pairs = sorted({e.pair for e in rows})
    if len(pairs) < MIN_PRIOR_PAIRS:
        return empty_prior()
    folds = [([e for e in rows if e.pair != p], [e for e in rows if e.pair == p]) for p in pairs]
    best, best_score = (rule.feature_sets[0], lambdas[0]), -math.inf
    for dense in rule.feature_sets:
        for lam in lambdas:
            score = sum(_loglik(_fit(rest, signals, lam, dense), own, signals) for rest, own in folds)
            if score > best_score:
                best, best_score = (dense, lam), score
    dense, lam = best
    return _fit(rows, signals, lam, dense)


@dataclass(frozen=True)
class RouteBelief:
    """What is believed of one route's gain over direct on one pair (points)."""

    route: str
    mean: float
    sd: float
    n: int  # items of the pair's own evidence (0: the prior alone)

    def p_gain(self) -> float:
        return 1.0 - _NORMAL.cdf(-self.mean / self.sd) if self.sd > 0 else float(self.mean > 0)

    def p_loss(self, margin: float) -> float:
        return _NORMAL.cdf((-margin - self.mean) / self.sd) if self.sd > 0 else float(self.mean < -margin)


@dataclass(frozen=True)
class RouteChoice:
    """The route a pair gets and why: `origin` is `evidence` (the pair was measured) or `prior`."""

    route: str  # "direct" or a bridge
    origin: str
    expected_gain: float  # of the chosen route (0 for direct)
    sd: float
    p_gain: float
    p_loss: float
    n: int
    best: RouteBelief | None  # the best-believed candidate, chosen or not


def belief(
    prior: Prior, signals: Signals, source: str, target: str, route: str, own: Evidence | None
) -> RouteBelief:
    """The prior's prediction for the route, updated by the pair's own evidence when there is some."""
    mean, var = prior.predict(features(signals, source, target, route))
    if own is None:
        return RouteBelief(route, mean, math.sqrt(var), 0)
    se2 = max(own.se, 1e-3) ** 2
    post_var = 1.0 / (1.0 / var + 1.0 / se2)
    post_mean = post_var * (mean / var + own.gain / se2)
    return RouteBelief(route, post_mean, math.sqrt(post_var), own.n)


def choose(
    beliefs: Sequence[RouteBelief], margin: float, p_gain: float = P_GAIN, p_loss: float = P_LOSS
) -> RouteChoice:
    """The decision rule over one pair's candidate routes (see the module docstring)."""
    origin = "evidence" if any(b.n for b in beliefs) else "prior"
    n = max((b.n for b in beliefs), default=0)
    best = max(beliefs, key=lambda b: (b.mean, b.route), default=None)
    eligible = [b for b in beliefs if b.mean > 0 and b.p_gain() >= p_gain and b.p_loss(margin) <= p_loss]
    if not eligible:
        return RouteChoice("direct", origin, 0.0, 0.0, 0.0, 0.0, n, best)
    top = max(eligible, key=lambda b: (b.mean, b.route))
    return RouteChoice(top.route, origin, top.mean, top.sd, top.p_gain(), top.p_loss(margin), n, best)


def decide_pair(
    rows: Sequence[Evidence],
    signals: Signals,
    source: str,
    target: str,
    task: str,
    prior: Prior | None = None,
    candidates: Sequence[str] | None = None,
    rule: Rule = DEFAULT_RULE,
) -> RouteChoice:
    """The route for (source, target): the prior fitted on every *other* pair's evidence (or `prior`),
    updated by this pair's own evidence. Candidates: the pair's measured routes when it has evidence
    (never a route nobody measured on it), else every index language other than the pair's."""
    own = {e.route: e for e in rows if e.pair == (source, target)}
    if prior is None:
        prior = fit_prior([e for e in rows if e.pair != (source, target)], signals, rule)
    routes = (
        list(candidates) if candidates is not None else (sorted(own) or signals.candidates(source, target))
    )
    beliefs = [belief(prior, signals, source, target, r, own.get(r)) for r in routes]
    return choose(beliefs, MARGINS[task], rule.p_gain, rule.p_loss)


def paired_evidence(
    source: str,
    target: str,
    route: str,
    route_scores: Sequence[float],
    direct_scores: Sequence[float],
    floor: float = 100.0,
) -> Evidence:
    """Evidence from per-item scores (points: 100 × hit, or a sentence's chrF++) of the route and of direct
    on the same items: the mean paired difference and its standard error, at least that of one item in n
    differing by `floor` points (for hits: one discordant word), so a run of ties is not taken as
    certainty."""
    d = np.asarray(route_scores, dtype=float) - np.asarray(direct_scores, dtype=float)
    n = len(d)
    if n == 0:
        raise ValueError("no paired items")
    var = float(d.var(ddof=1)) if n > 1 else 0.0
    return Evidence(source, target, route, n, float(d.mean()), math.sqrt(max(var, floor**2 / n) / n))


@dataclass(frozen=True)
class Settled:
    """A pair's outcome in a sequential calibration."""

    choice: RouteChoice
    items: int  # calibration items measured on the pair
    reason: str  # "bridge" (a route cleared the rule), "direct" (no route can still gain), "budget"


def settled_direct(choice: RouteChoice, beliefs: Sequence[RouteBelief], p_gain: float = P_LOSS) -> bool:
    """No candidate is still likely to gain: every route's P(gain > 0) is at most `p_gain`."""
    return choice.route == "direct" and all(b.p_gain() <= p_gain for b in beliefs)


def sequential(
    pairs: Sequence[Pair],
    measure: Callable[[Sequence[Pair], int], Mapping[Pair, list[Evidence]]],
    signals: Signals,
    task: str,
    budget: int = 40,
    step: int = 10,
    rule: Rule = DEFAULT_RULE,
) -> dict[Pair, Settled]:
    """Sequential calibration: measure every open pair `step` more items at a time (up to `budget`),
    re-decide the open pairs with the evidence pooled so far (the other pairs' latest evidence as the
    prior), and stop measuring a pair once it is settled: a route clears P(gain > 0) >= 0.95 and
    P(loss beyond the margin) <= 0.05, or no route's P(gain > 0) exceeds 0.05. The route a pair gets is
    `rule`'s choice on the evidence at its stop.

    `measure(open_pairs, k)` returns each open pair's evidence (one row per candidate route) on its first k
    calibration items (fewer when it has fewer).
    """
    latest: dict[Pair, list[Evidence]] = {}
    out: dict[Pair, Settled] = {}
    k = 0
    while len(out) < len(pairs):
        k = min(k + step, budget)
        open_pairs = [p for p in pairs if p not in out]
        latest.update(measure(open_pairs, k))
        rows = [e for p in pairs for e in latest.get(p, [])]
        for pair in open_pairs:
            own = {e.route: e for e in latest.get(pair, [])}
            used = max((e.n for e in own.values()), default=0)
            prior = fit_prior([e for e in rows if e.pair != pair], signals, rule)
            beliefs = [belief(prior, signals, *pair, r, e) for r, e in own.items()]
            choice = choose(beliefs, MARGINS[task], rule.p_gain, rule.p_loss)
            # settled whatever the serving rule: a route is surely better, or none is still likely to gain
            if choose(beliefs, MARGINS[task]).route != "direct":
                out[pair] = Settled(choice, used, "bridge")
            elif beliefs and settled_direct(choose(beliefs, MARGINS[task]), beliefs):
                out[pair] = Settled(choice, used, "direct")
            elif k >= budget or used < k or not beliefs:
                out[pair] = Settled(choice, used, "budget" if beliefs else "nothing to measure")
    return out


def policy_rows(
    rows: Sequence[Evidence], signals: Signals, task: str, rule: Rule = DEFAULT_RULE
) -> tuple[list[tuple[Pair, RouteChoice]], Prior]:
    """The policy's choice for every ordered pair of the index's languages (evidence pooled, each measured
    pair judged with the prior fitted on the others), and the prior fitted on all the evidence."""
    everything = fit_prior(rows, signals, rule)
    measured = {e.pair for e in rows}
    out = []
    for pair in itertools.permutations(signals.languages, 2):
        prior = None if pair in measured else everything
        out.append((pair, decide_pair(rows, signals, *pair, task, prior=prior, rule=rule)))
    return out, everything
