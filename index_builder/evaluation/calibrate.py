"""`bridgex-index calibrate`: measure direct and the best HSIC bridges on the calibration half of the
held-out words (`--task word`) or of a sentence set's lines (`--task translate`), decide each pair's route
(`index_builder.evaluation.decision`), store it in `routing_decisions` under its task.

The measuring is `bridgex-index eval` (`index_builder.evaluation.run`) with strategies `direct` and
`all-bridges` limited to the top K candidates and `words="calibration"`: the same prompts, demonstrations,
copy fallback and answer cache, so a calibration after an evaluation of the same words asks nothing again.
The run is recorded in `evaluation_runs`/`evaluations` like any evaluation. The words can also be the
calibration half of a word test set never used in the build (`test_dict_dir`: a MUSE directory or the
shipped set); every decision row names the test set it was measured on (`measured_on`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from bridgex_index.results import ResultStore

from . import scoring
from .client import EvaluationError
from .config import EvalConfig, Pair
from .decision import ALPHA, RouteDecision, decide, decide_sentences
from .results import RunResult
from .run import evaluate
from .tasks import PairTask

DEFAULT_TOP = 3


@dataclass
class Calibration:
    """The decisions of one `calibrate` run and the evaluation run that measured them."""

    result: RunResult
    decisions: dict[Pair, RouteDecision]
    rows: list[dict]
    measured_on: str  # the test set the decisions were measured on (`measured_on`)


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


def decide_tasks(
    tasks: Sequence[PairTask], answers: Mapping, alpha: float = ALPHA
) -> dict[Pair, RouteDecision]:
    """The calibration rule per pair, over the arms `all-bridges` measured (the top candidates)."""
    out: dict[Pair, RouteDecision] = {}
    for task in tasks:
        direct = paired_hits(task, answers, None)
        bridges = {
            arm: paired_hits(task, answers, arm)
            for _strategy, arm in task.strategy_arms(["all-bridges"])
            if arm is not None
        }
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

        bridges = {arm: said(arm) for _s, arm in task.strategy_arms(["all-bridges"]) if arm is not None}
        sources, references = [w.word for w in task.words], [w.golds[0] for w in task.words]
        out[task.pair] = decide_sentences(sources, references, said(None), bridges, task.target, alpha=alpha)
    return out


def decide_routes(cfg: EvalConfig, result: RunResult, alpha: float = ALPHA) -> dict[Pair, RouteDecision]:
    """The decision step of a calibration: each pair's route from what `evaluate` measured (the word rule
    for `--task word`, the sentence rule for `--task translate`). A different decision rule replaces this
    one function."""
    if cfg.task == "translate":
        return decide_sentence_tasks(result.tasks, result.answers, alpha)
    return decide_tasks(result.tasks, result.answers, alpha)


def calibrate(
    cfg: EvalConfig, quiet: bool = False, log: Callable[[str], None] | None = None, alpha: float = ALPHA
) -> Calibration:
    """Measure (through `evaluate`), decide and write one `routing_decisions` row per pair, replacing
    earlier rows of the same pairs. Nothing is written to `routing_decisions` unless every answer came back
    (an EndpointError propagates after the evaluation saved its cache)."""
    if cfg.words != "calibration":
        raise EvaluationError("calibration measures the calibration half of the test words only")
    result = evaluate(cfg, quiet=quiet, log=log or (lambda msg: print(msg, file=sys.stderr)))
    decisions = decide_routes(cfg, result, alpha)
    created = datetime.now(timezone.utc).replace(tzinfo=None)
    test_set = measured_on(cfg)
    rows = [
        d.row(s, t, model=cfg.model, endpoint=cfg.endpoint, created_at=created, test_set=test_set)
        for (s, t), d in decisions.items()
    ]
    from bridgex_index.store import write_routing_decisions

    with ResultStore(cfg.index).connect() as con:
        write_routing_decisions(con, rows)
    return Calibration(result, decisions, rows, test_set)
