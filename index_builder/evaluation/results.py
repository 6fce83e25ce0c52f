"""What a run measured: complete (pair, strategy, bridge) cells, pair summaries, category and paired
comparisons, and the rows `bridgex_index.results` appends to the index."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from bridgex_index.results import append_run

from . import scoring
from .client import (
    WordAnswer,
)
from .config import EvalConfig, Pair
from .tasks import PairTask, bridge_of


@dataclass
class CellHead:
    """What names a row of `evaluations`: the (pair, strategy, bridge) cell and how many items it scored."""

    source: str
    target: str
    strategy: str
    bridge: str | None
    probability: float | None
    n: int


@dataclass
class Cell(CellHead):
    """One row of `evaluations`: a (pair, strategy, bridge) cell over the pair's test words."""

    hits: int
    copies: int
    calls: int
    seconds: float

    @property
    def accuracy(self) -> float:
        return scoring.accuracy(self.hits, self.n)


@dataclass
class RunResult:
    run_id: str
    created_at: datetime
    tasks: list[PairTask]
    cells: list[Cell]
    summaries: list[scoring.PairSummary]
    overall: scoring.Overall
    upstream_calls: int
    cached_calls: int
    seconds: float
    complete: bool
    provenance: dict[str, str] = field(default_factory=dict)
    answers: dict[tuple[Pair, int, str | None], WordAnswer] = field(default_factory=dict)
    sentence_cells: list = field(default_factory=list)  # task translate: sentence_results.SentenceCell


def build_cells(
    tasks: Sequence[PairTask],
    strategies: Sequence[str],
    answers: Mapping[tuple[Pair, int, str | None], WordAnswer],
) -> list[Cell]:
    """Cells whose every test word has an answer (incomplete cells are left out)."""
    cells = []
    for task in tasks:
        for strategy, arm in task.strategy_arms(strategies):
            results = [answers.get((task.pair, i, arm)) for i in range(len(task.words))]
            if any(r is None for r in results):
                continue
            done = [r for r in results if r is not None]
            hits = sum(scoring.is_hit(r.answer, w.golds) for r, w in zip(done, task.words, strict=True))
            copies = sum(r.bridge_copied for r in done)
            probability = next((c.probability for c in task.candidates if c.bridge == arm), None)
            cells.append(
                Cell(
                    task.source,
                    task.target,
                    strategy,
                    bridge_of(arm),
                    probability,
                    len(done),
                    hits,
                    copies,
                    sum(r.calls for r in done),
                    sum(r.seconds for r in done),
                )
            )
    return cells


def category_breakdown(
    tasks: Sequence[PairTask],
    strategies: Sequence[str],
    answers: Mapping[tuple[Pair, int, str | None], WordAnswer],
) -> dict[str, dict[str, tuple[int, int]]]:
    """Category → strategy → (hits, n) pooled over pairs, for the words every arm of a strategy answered.

    `all-bridges` pools every candidate's answers (the mean candidate bridge)."""
    out: dict[str, dict[str, list[int]]] = {}
    for task in tasks:
        for strategy, arm in task.strategy_arms(strategies):
            for i, w in enumerate(task.words):
                result = answers.get((task.pair, i, arm))
                if result is None:
                    continue
                counts = out.setdefault(w.category or "none", {}).setdefault(strategy, [0, 0])
                counts[0] += scoring.is_hit(result.answer, w.golds)
                counts[1] += 1
    return {c: {s: (h, n) for s, (h, n) in by.items()} for c, by in sorted(out.items())}


def paired_gains(
    tasks: Sequence[PairTask],
    strategies: Sequence[str],
    answers: Mapping[tuple[Pair, int, str | None], WordAnswer],
    mine: str = "bridgex",
) -> dict[str, tuple[float, float, float, int]]:
    """`mine` (default `bridgex`) minus `direct` and minus `english`, pooled over every word both answered:
    name → (mean points, 95% bootstrap low, high, words)."""
    out: dict[str, tuple[float, float, float, int]] = {}
    for other in ("direct", "english"):
        hits: list[bool] = []
        theirs: list[bool] = []
        for task in tasks:
            arms = dict(task.strategy_arms(strategies))
            if mine not in arms or other not in arms:
                continue
            for i, w in enumerate(task.words):
                x, y = answers.get((task.pair, i, arms[mine])), answers.get((task.pair, i, arms[other]))
                if x is not None and y is not None:
                    hits.append(scoring.is_hit(x.answer, w.golds))
                    theirs.append(scoring.is_hit(y.answer, w.golds))
        if hits:
            out[other] = (*scoring.paired_bootstrap(hits, theirs), len(hits))
    return out


def summarise(tasks: Sequence[PairTask], cells: Sequence[Cell]) -> list[scoring.PairSummary]:
    """One `PairSummary` per pair from its cells (a strategy without a complete cell is None)."""
    out = []
    for task in tasks:
        mine = [c for c in cells if (c.source, c.target) == task.pair]

        def acc(strategy: str, mine: list[Cell] = mine) -> float | None:
            return next((c.accuracy for c in mine if c.strategy == strategy), None)

        ranks = {c.bridge: c for c in task.candidates}
        candidates = tuple(
            scoring.Candidate(
                c.bridge,  # type: ignore[arg-type]
                ranks[c.bridge].probability,
                ranks[c.bridge].rank,
                c.accuracy,
                100.0 * c.copies / c.n if c.n else None,
            )
            for c in mine
            if c.strategy == "all-bridges" and c.bridge in ranks
        )
        out.append(
            scoring.PairSummary(
                task.source,
                task.target,
                len(task.words),
                acc("direct"),
                acc("english"),
                task.chosen,
                acc("bridgex"),
                candidates,
                shots=task.shots,
            )
        )
    return out


def write_results(con, cfg: EvalConfig, result: RunResult) -> None:
    run = [
        result.run_id,
        result.created_at,
        cfg.model,
        cfg.endpoint,
        cfg.mode,
        cfg.command,
        json.dumps(cfg.parameters(), ensure_ascii=False, sort_keys=True),
        result.upstream_calls,
        result.seconds,
        result.complete,
    ]
    shots = {t.pair: t.shots for t in result.tasks}

    def row(c, hits: int | None, accuracy: float | None, task: str, metric: str, score: float) -> tuple:
        """One `evaluations` row of a word `Cell` or a `SentenceCell`, in the table's column order."""
        head = (
            result.run_id,
            result.created_at,
            cfg.model,
            cfg.endpoint,
            cfg.mode,
            shots[(c.source, c.target)],
        )
        cell = (c.strategy, c.source, c.target, c.bridge, c.probability, c.n)
        return (*head, *cell, hits, accuracy, c.copies, c.calls, c.seconds, task, metric, score)

    rows = [row(c, c.hits, c.accuracy, "word", "p@1", c.accuracy) for c in result.cells]
    rows += [
        row(c, None, None, "translate", metric, score)
        for c in result.sentence_cells
        for metric, score in c.scores.items()
    ]
    append_run(con, run, rows)
