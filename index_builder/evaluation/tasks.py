"""Per pair: its test words, the arms its strategies need, and the `/v1/translate` request of every
(word, arm) job."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .client import (
    EvaluationError,
    WordRequest,
    word_request,
)
from .config import EvalConfig, Pair
from .held_out import HeldOutWord, pair_test_items, select_test_words


@dataclass(frozen=True)
class CandidateBridge:
    bridge: str
    probability: float
    rank: int


DISTILLED_ARM = "distilled"  # the arm of `mode: distilled` (never a language code: those are 2-3 letters)


def bridge_of(arm: str | None) -> str | None:
    """The bridge an arm's answers went through (None: direct, and distilled: one direct call)."""
    return None if arm == DISTILLED_ARM else arm


@dataclass
class PairTask:
    """Everything one pair needs: its test words, arms and candidates."""

    source: str
    target: str
    words: list[HeldOutWord]
    candidates: list[CandidateBridge]  # the index's ranking for source → target
    arms: list[str | None]  # None = direct; otherwise a bridge code
    dropped_probe_words: int = 0
    decision: str | None = None  # the stored routing decision ('direct' or a bridge); None: uncalibrated
    top: int | None = None  # all-bridges: the best N candidates only
    served: str | None = None  # the route the server takes (`route: auto`): a bridge, or None for direct
    served_known: bool = False  # `served` was asked (only when the `calibrated` strategy is)
    shots: int = 0  # demonstrations the server's prompts had (reported per pair)
    distilled: str | None = None  # the fingerprint of the pair's distilled set for the task (None: none)

    @property
    def pair(self) -> Pair:
        return self.source, self.target

    @property
    def chosen(self) -> str | None:
        """The index's rank-1 bridge; None when it ranks none for the pair (its route there is direct)."""
        return self.candidates[0].bridge if self.candidates else None

    @property
    def calibrated(self) -> str | None:
        """The arm the server routes the pair through (as it answered `route: auto`)."""
        return self.served

    def strategy_arms(self, strategies: Sequence[str]) -> list[tuple[str, str | None]]:
        """(strategy, arm) cells of this pair; `english` is skipped when English is the source or target."""
        cells: list[tuple[str, str | None]] = []
        for strategy in strategies:
            if strategy == "direct":
                cells.append(("direct", None))
            elif strategy == "english" and "en" not in self.pair:
                cells.append(("english", "en"))
            elif strategy == "bridgex":  # the index's route: its rank-1 bridge, direct (None) when unranked
                cells.append(("bridgex", self.chosen))
            elif strategy == "calibrated" and self.served_known:
                cells.append(("calibrated", self.served))
            elif strategy == "all-bridges":
                cells += [("all-bridges", c.bridge) for c in self.candidates[: self.top]]
            elif strategy == "distilled" and self.distilled is not None:
                cells.append(("distilled", DISTILLED_ARM))
        return cells


@dataclass
class IndexData:
    """What evaluation reads from the index file."""

    provenance: dict[str, str]
    names: dict[str, str]  # language → prompt name
    bridges: dict[Pair, list[CandidateBridge]]
    entries: list[tuple]  # (source, target, source_word, target_word, concept, category, split)
    decisions: dict[Pair, str] = field(default_factory=dict)  # routing_decisions: pair → decision
    distilled: dict[Pair, str] = field(default_factory=dict)  # pair → fingerprint of its distilled set


def read_index(path: Path, task: str = "word") -> IndexData:
    """Read languages, bridges, dictionary entries and the routing decisions of `task` (raises
    store.IndexReadError for a bad file)."""
    from bridgex_index import read
    from bridgex_index.store import distilled, open_index, provenance, routing_decisions

    con = open_index(path)
    try:
        names = {lang.code: lang.prompt_name for lang in read.languages(con)}
        bridges = {
            pair: [CandidateBridge(r.bridge, r.probability, r.rank) for r in rows]
            for pair, rows in read.ranked_by_pair(read.bridges(con)).items()
        }
        entries = [tuple(row) for row in read.dictionary_entries(con)]
        decisions = {pair: row["decision"] for pair, row in routing_decisions(con, task).items()}
        sets = {(s, t): fingerprint(rows) for (s, t, kind), rows in distilled(con).items() if kind == task}
        return IndexData(provenance(con), names, bridges, entries, decisions, sets)
    finally:
        con.close()


def fingerprint(rows: Sequence[Mapping]) -> str:
    """What names a distilled set in the answer cache: a hash of its examples in order (a new set asks
    again)."""
    text = json.dumps([[r["source_text"], r["target_text"]] for r in rows], ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def plan(cfg: EvalConfig) -> tuple[IndexData, list[PairTask]]:
    """The index's data for the run's task and every pair's task (no network)."""
    data = read_index(cfg.index, cfg.task)
    return data, plan_tasks(cfg, data)


def check_pair_languages(pairs: Sequence[Pair], data: IndexData) -> None:
    """An EvaluationError naming the first `--pairs` language the index does not have."""
    known = sorted(data.names)
    for s, t in pairs:
        for code in (s, t):
            if code not in data.names:
                raise EvaluationError(
                    f"--pairs {s}-{t}: language {code!r} is not in this index (languages: {', '.join(known)})"
                )


def plan_tasks(cfg: EvalConfig, data: IndexData) -> list[PairTask]:
    """Validate the pairs against the index and build every pair's task (no network)."""
    check_pair_languages(cfg.pairs, data)
    known = sorted(data.names)
    if cfg.top_bridges is not None and cfg.top_bridges < 1:
        raise EvaluationError(f"--top must be at least 1, got {cfg.top_bridges}")
    probe_words: dict[str, set[str]] = {}
    for a, b, wa, wb, *_rest, split in data.entries:
        if split == "probe":
            probe_words.setdefault(a, set()).add(wa)
            probe_words.setdefault(b, set()).add(wb)
    test_entries = pair_test_items(cfg, data, known, probe_words)
    if cfg.task == "translate":
        probe_words = {}  # a sentence is never a demonstration word

    tasks = []
    for s, t in cfg.pairs:
        pair_entries, categories = test_entries[(s, t)]
        words, dropped = select_test_words(
            pair_entries, probe_words.get(s, set()), cfg.limit, (s, t), categories, cfg.words
        )
        if not words:
            raise EvaluationError(f"--pairs {s}-{t}: no test words in the {cfg.words} half")
        candidates = data.bridges.get((s, t), [])  # none: the index routes the pair directly
        task = PairTask(s, t, words, candidates, [], dropped, data.decisions.get((s, t)), cfg.top_bridges)
        task.distilled = data.distilled.get((s, t))
        task.arms = arms_of(task, cfg.strategies)
        tasks.append(task)
    return tasks


def arms_of(task: PairTask, strategies: Sequence[str]) -> list[str | None]:
    """The distinct arms of the pair's strategy cells, in order."""
    arms: list[str | None] = []
    for _strategy, arm in task.strategy_arms(strategies):
        if arm not in arms:
            arms.append(arm)
    return arms


Job = tuple[tuple[Pair, int, "str | None"], WordRequest]


def arm_options(cfg: EvalConfig, task: PairTask, arm: str | None, route: str | None = None) -> dict:
    """The `/v1/translate` options of one arm: `route: direct` (None), `bridge: b`, `mode: distilled`, or
    `route: auto`.

    The direct route's options leave out what does not change its prompt (mode, copy fallback), so its
    answers are shared across runs of either mode."""
    options = {
        "model": cfg.model,
        "task": cfg.task,
        "source": task.source,
        "target": task.target,
        "shots": cfg.shots,
        "temperature": 0.0,
    }
    if route is None and arm is None:
        return {**options, "route": "direct"}
    if arm == DISTILLED_ARM:
        return {**options, "mode": "distilled"}
    options |= {"mode": cfg.mode, "copy_fallback": cfg.copy_fallback}
    return {**options, "route": route} if route else {**options, "bridge": arm}


def arm_context(task: PairTask, arm: str | None) -> str:
    """What else an arm's answers depend on than its request (the cache key's `context`)."""
    return f"distilled={task.distilled}" if arm == DISTILLED_ARM else ""


def follow_served_routes(
    cfg: EvalConfig, tasks: Sequence[PairTask], served: Sequence[WordRequest], answers: Mapping
) -> None:
    """For each pair whose `served_request` was answered: the route the server took (`task.served`) and
    the arms its strategies then need. `served` is empty when the `calibrated` strategy is not asked."""
    for task, request in zip(tasks if served else [], served, strict=True):
        if request in answers:
            answer = answers[request]
            task.served = DISTILLED_ARM if answer.mode == "distilled" else answer.bridge
            task.served_known = True
            task.arms = arms_of(task, cfg.strategies)


def served_requests(cfg: EvalConfig, tasks: Sequence[PairTask]) -> list[WordRequest]:
    """Each pair's `served_request` when the `calibrated` strategy is asked (else none)."""
    return [served_request(cfg, task) for task in tasks] if "calibrated" in cfg.strategies else []


def served_request(cfg: EvalConfig, task: PairTask) -> WordRequest:
    """`route: auto` for the pair's first test word, naming no mode as a client leaves it to the server
    (a request naming one is never distilled): the server's own route (its answer names the bridge, or the
    distilled mode). The stored decision and distilled set are part of the cache key: a new calibration
    or distillation asks again."""
    context = f"decision={task.decision}" + (f";distilled={task.distilled}" if task.distilled else "")
    options = {k: v for k, v in arm_options(cfg, task, None, "auto").items() if k != "mode"}
    return word_request(task.words[0].word, options, context)


def make_jobs(cfg: EvalConfig, tasks: Sequence[PairTask]) -> list[Job]:
    """One job per (pair, test word, arm); a distilled arm's cache key names the pair's set."""
    return [
        ((task.pair, i, arm), word_request(w.word, arm_options(cfg, task, arm), arm_context(task, arm)))
        for task in tasks
        for arm in task.arms
        for i, w in enumerate(task.words)
    ]
