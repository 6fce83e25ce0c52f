"""`bridgex-index calibrate`: measure direct, English and the best HSIC bridges on the calibration half of the
held-out words (`--task word`) or of a sentence set's lines (`--task translate`), decide each pair's route,
store it in `routing_decisions` under its task, and refit the route policy for every pair of the index.

Two decision rules (`--decision`):
- `pooled` (the default; `route_policy`): the pairs are measured `step` items at a time (10); after each
  round every open pair is re-decided with its own evidence on top of the prior learned from the other
  pairs (pooled), and a pair stops being measured once it is settled (a route cleared the rule, or no route
  is still likely to gain); `--limit` is the budget per pair. Each pair's evidence (every candidate's paired
  gain and standard error) goes to `route_evidence`.
- `strict`: every calibration item of every pair, then the per-pair Holm–McNemar rule
  (`index_builder.evaluation.decision`).
Either way the route policy is refitted from all the task's evidence in the index and written for every
ordered pair of its languages (`route_policy`): what the server follows for pairs without a decision.

The measuring is `bridgex-index eval` (`index_builder.evaluation.run`) with strategies `direct` and
`all-bridges` limited to the top K candidates and `words="calibration"`: the same prompts, demonstrations,
copy fallback and answer cache, so a calibration after an evaluation of the same words asks nothing again.
The run is recorded in `evaluation_runs`/`evaluations` like any evaluation. The words can also be the
calibration half of a word test set never used in the build (`test_dict_dir`: a MUSE directory or the
shipped set); every decision row names the test set it was measured on (`measured_on`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

from bridgex_index.results import ResultStore

from . import scoring
from .client import EvaluationError
from .config import EvalConfig, Pair
from .decision import ALPHA, RouteDecision, decide, decide_sentences
from .results import RunResult
from .route_policy import (
    DEFAULT_RULE,
    EVIDENCE_FLOORS,
    MARGINS,
    Evidence,
    RouteChoice,
    Settled,
    paired_evidence,
)
from .run import evaluate
from .tasks import PairTask

DEFAULT_TOP = 3
DECISION_RULES = ("pooled", "strict")
DEFAULT_STEP = 10
POOLED_TEST = "pooled-posterior({rule},margin={margin}); ci=posterior(0.95)"


@dataclass
class Calibration:
    """The decisions of one `calibrate` run and the evaluation run that measured them."""

    result: RunResult  # the last measuring run
    decisions: dict[Pair, RouteDecision]
    rows: list[dict]
    measured_on: str  # the test set the decisions were measured on (`measured_on`)
    rule: str = "pooled"
    settled: dict[Pair, Settled] = field(default_factory=dict)  # pooled: items used and why it stopped
    policy_pairs: int = 0  # route_policy rows written
    policy_bridged: int = 0  # of which take a bridge
    upstream_calls: int = 0  # over every round
    cached_calls: int = 0


def all_pairs(index_bridges: Mapping[Pair, Sequence]) -> list[Pair]:
    """Every (source, target) the index ranks bridges for (`--pairs all`)."""
    return sorted(index_bridges)


def measured_on(cfg: EvalConfig) -> str:
    """What a decision was measured on, as `routing_decisions.test_set` stores it: a test set's name and
    SHA-256 (a word test set or a sentence set, `cfg.test_set` as the run filled it in), else the index's
    held-out split and the dictionaries it was checked against."""
    if cfg.test_set is not None:
        return f"{cfg.test_set['name']} sha256:{cfg.test_set['sha256']}"
    return f"held-out split ({cfg.dictionaries})"


def paired_hits(task: PairTask, answers: Mapping, arm: str | None) -> dict[str, bool]:
    """Source word → hit for one arm of one pair (every word must have an answer)."""
    return {
        w.word: scoring.is_hit(answers[(task.pair, i, arm)].answer, w.golds) for i, w in enumerate(task.words)
    }


CANDIDATE_STRATEGIES = ("english", "all-bridges")  # what a calibration measures besides direct


def candidates(task: PairTask) -> list[str]:
    """The bridges a calibration measures on the pair: English (unless it is the source or the target: the
    pivot that helps most often where any does) and the index's top candidates, each once."""
    return list(dict.fromkeys(arm for _s, arm in task.strategy_arms(CANDIDATE_STRATEGIES) if arm is not None))


def decide_tasks(
    tasks: Sequence[PairTask], answers: Mapping, alpha: float = ALPHA
) -> dict[Pair, RouteDecision]:
    """The calibration rule per pair, over the candidates measured (`candidates`)."""
    out: dict[Pair, RouteDecision] = {}
    for task in tasks:
        direct = paired_hits(task, answers, None)
        bridges = {arm: paired_hits(task, answers, arm) for arm in candidates(task)}
        out[task.pair] = decide(direct, bridges, alpha=alpha)
    return out


def decide_sentence_tasks(
    tasks: Sequence[PairTask], answers: Mapping, alpha: float = ALPHA
) -> dict[Pair, RouteDecision]:
    """The sentence calibration rule per pair (`decision.decide_sentences`) over the top candidates."""
    out: dict[Pair, RouteDecision] = {}
    for task in tasks:

        def said(arm: str | None, task: PairTask = task) -> list[str]:
            return [answers[(task.pair, i, arm)].answer for i in range(len(task.words))]

        bridges = {arm: said(arm) for arm in candidates(task)}
        sources, references = [w.word for w in task.words], [w.golds[0] for w in task.words]
        out[task.pair] = decide_sentences(sources, references, said(None), bridges, task.target, alpha=alpha)
    return out


def decide_routes(cfg: EvalConfig, result: RunResult, alpha: float = ALPHA) -> dict[Pair, RouteDecision]:
    """The strict rule of a calibration: each pair's route from what `evaluate` measured (the word rule
    for `--task word`, the sentence rule for `--task translate`)."""
    if cfg.task == "translate":
        return decide_sentence_tasks(result.tasks, result.answers, alpha)
    return decide_tasks(result.tasks, result.answers, alpha)


def item_points(kind: str, task: PairTask, answers: Mapping, arm: str | None) -> list[float]:
    """Per item of the pair, the arm's points: 100 × hit for words, the sentence's chrF++ for sentences."""
    said = [answers[(task.pair, i, arm)].answer for i in range(len(task.words))]
    if kind == "word":
        return [100.0 * scoring.is_hit(a, w.golds) for a, w in zip(said, task.words, strict=True)]
    from .sentence_scoring import CHRF_PP, metric

    m = metric(CHRF_PP, task.target)
    return [m.sentence_score(a, [w.golds[0]]).score for a, w in zip(said, task.words, strict=True)]


def pair_evidence(kind: str, task: PairTask, answers: Mapping) -> list[Evidence]:
    """Every measured bridge's paired gain over direct on the pair's items (`route_policy.Evidence`)."""
    direct = item_points(kind, task, answers, None)
    floor = EVIDENCE_FLOORS[kind]
    return [
        paired_evidence(task.source, task.target, arm, item_points(kind, task, answers, arm), direct, floor)
        for arm in candidates(task)
    ]


def arm_score(kind: str, task: PairTask, answers: Mapping, arm: str | None) -> float:
    """The arm's score as `routing_decisions` stores it: P@1 as a fraction, or corpus chrF++ / 100."""
    if kind == "word":
        return sum(item_points(kind, task, answers, arm)) / 100.0 / max(1, len(task.words))
    from .sentence_scoring import CHRF_PP, corpus_score

    said = [answers[(task.pair, i, arm)].answer for i in range(len(task.words))]
    return corpus_score(CHRF_PP, said, [w.golds[0] for w in task.words], task.target) / 100.0


def pooled_decision(kind: str, task: PairTask, answers: Mapping, choice: RouteChoice) -> RouteDecision:
    """The pooled rule's choice as a `routing_decisions` row: the numbers describe the chosen bridge, else
    the best-believed candidate; the interval is the posterior's (fractions), p the posterior P(no gain)."""
    shown = choice.route if choice.route != "direct" else (choice.best.route if choice.best else None)
    belief = choice.best if choice.route == "direct" else None
    mean = choice.expected_gain if belief is None else belief.mean
    sd = choice.sd if belief is None else belief.sd
    p_gain = choice.p_gain if belief is None else belief.p_gain()
    direct = arm_score(kind, task, answers, None)
    bridged = arm_score(kind, task, answers, shown) if shown else None
    return RouteDecision(
        decision=choice.route,
        bridge=shown,
        n=len(task.words),
        direct_accuracy=direct,
        bridge_accuracy=bridged,
        gain=None if bridged is None else bridged - direct,
        ci_low=None if shown is None else (mean - 1.96 * sd) / 100.0,
        ci_high=None if shown is None else (mean + 1.96 * sd) / 100.0,
        p_value=None if shown is None else 1.0 - p_gain,
        test=POOLED_TEST.format(rule=DEFAULT_RULE.describe(), margin=MARGINS[kind]),
        alpha=DEFAULT_RULE.p_loss,
        comparisons=(),
        task=kind,
        candidates=len(candidates(task)),
    )


def calibrate(
    cfg: EvalConfig,
    quiet: bool = False,
    log: Callable[[str], None] | None = None,
    alpha: float = ALPHA,
    rule: str = "pooled",
    step: int = DEFAULT_STEP,
) -> Calibration:
    """Measure, decide and write one `routing_decisions` row per pair (replacing earlier rows of the same
    pairs), the pairs' `route_evidence`, and the refitted `route_policy` of every pair. Nothing is written
    unless every answer came back (an EndpointError propagates after the evaluation saved its cache)."""
    from .route_signals import read_signals

    if cfg.words != "calibration":
        raise EvaluationError("calibration measures the calibration half of the test words only")
    if rule not in DECISION_RULES:
        raise EvaluationError(f"--decision {rule!r} is not one of {', '.join(DECISION_RULES)}")
    if step < 1:
        raise EvaluationError(f"the calibration step must be at least 1, got {step}")
    say = log or (lambda msg: print(msg, file=sys.stderr))
    signals = read_signals(cfg.index)
    measured = _Measured(cfg, quiet, say)
    if rule == "strict":
        result = measured.round(cfg.pairs or [], cfg.limit)
        decisions = decide_routes(cfg, result, alpha)
        settled: dict[Pair, Settled] = {}
    else:
        from .route_policy import sequential

        budget = cfg.limit if cfg.limit is not None else 10**9
        pairs = cfg.pairs or []
        if not pairs:  # a word test set's own pairs: one round names them
            pairs = [t.pair for t in measured.round([], min(step, budget)).tasks]
        settled = sequential(pairs, measured.evidence_round, signals, cfg.task, budget=budget, step=step)
        decisions = {
            pair: pooled_decision(cfg.task, measured.tasks[pair], measured.answers, s.choice)
            for pair, s in settled.items()
        }
    return _write(cfg, measured, decisions, settled, signals, rule)


class _Measured:
    """The measuring rounds of one calibration: each pair's latest task and every answer so far."""

    def __init__(self, cfg: EvalConfig, quiet: bool, say: Callable[[str], None]):
        self.cfg, self.quiet, self.say = cfg, quiet, say
        self.tasks: dict[Pair, PairTask] = {}
        self.answers: dict = {}
        self.result: RunResult | None = None
        self.upstream_calls = self.cached_calls = 0

    def round(self, pairs: Sequence[Pair], limit: int | None) -> RunResult:
        """Measure `pairs` (all of cfg's when empty) on their first `limit` calibration items."""
        cfg = replace(self.cfg, pairs=list(pairs) or self.cfg.pairs, limit=limit)
        result = evaluate(cfg, quiet=self.quiet, log=self.say)
        self.cfg.test_set = cfg.test_set  # filled in when the test set was read
        for task in result.tasks:
            self.tasks[task.pair] = task
        self.answers.update(result.answers)
        self.result = result
        self.upstream_calls += result.upstream_calls
        self.cached_calls += result.cached_calls
        return result

    def evidence_round(self, pairs: Sequence[Pair], k: int) -> dict[Pair, list[Evidence]]:
        result = self.round(pairs, k)
        return {t.pair: pair_evidence(self.cfg.task, t, result.answers) for t in result.tasks}


def _write(
    cfg: EvalConfig,
    measured: _Measured,
    decisions: dict[Pair, RouteDecision],
    settled: dict[Pair, Settled],
    signals,
    rule: str,
) -> Calibration:
    """Write the decisions, the evidence, and the refitted policy of every pair; return the summary."""
    from bridgex_index.store import (
        route_evidence,
        write_route_evidence,
        write_route_policy,
        write_routing_decisions,
    )

    from .route_policy import policy_rows

    created = datetime.now(timezone.utc).replace(tzinfo=None)
    test_set = measured_on(cfg)
    rows = [
        d.row(s, t, model=cfg.model, endpoint=cfg.endpoint, created_at=created, test_set=test_set)
        for (s, t), d in decisions.items()
    ]
    evidence = [
        {**e.__dict__, "task": cfg.task, "test_set": test_set, "model": cfg.model, "created_at": created}
        for pair in decisions
        for e in pair_evidence(cfg.task, measured.tasks[pair], measured.answers)
    ]
    with ResultStore(cfg.index).connect() as con:
        write_routing_decisions(con, rows)
        write_route_evidence(con, cfg.task, list(decisions), evidence)
        stored = [
            Evidence(r["source"], r["target"], r["route"], int(r["n"]), float(r["gain"]), float(r["se"]))
            for r in route_evidence(con, cfg.task)
        ]
        choices, prior = policy_rows(stored, signals, cfg.task)
        policy = [_policy_row(pair, cfg.task, choice, created) for pair, choice in choices]
        write_route_policy(con, cfg.task, policy, json.dumps(prior.as_dict()), created)
    assert measured.result is not None
    return Calibration(
        measured.result,
        decisions,
        rows,
        test_set,
        rule=rule,
        settled=settled,
        policy_pairs=len(policy),
        policy_bridged=sum(1 for r in policy if r["route"] != "direct"),
        upstream_calls=measured.upstream_calls,
        cached_calls=measured.cached_calls,
    )


def _policy_row(pair: Pair, task: str, choice: RouteChoice, created) -> dict:
    return {
        "source": pair[0],
        "target": pair[1],
        "task": task,
        "route": choice.route,
        "origin": choice.origin,
        "expected_gain": choice.expected_gain,
        "sd": choice.sd,
        "p_gain": choice.p_gain,
        "p_loss": choice.p_loss,
        "n": choice.n,
        "best": choice.best.route if choice.best else None,
        "best_gain": choice.best.mean if choice.best else None,
        "created_at": created,
    }
