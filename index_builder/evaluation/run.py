"""BLI evaluation of an index's bridges through the HTTP API of a real `bridgex-serve` (`bridgex-index eval`).

For every (source, target) pair and every held-out test word, one *arm* per way of asking, each a
`/v1/translate` request of task `word` (`index_builder.evaluation.client`: the endpoint itself when it is a
BridgeX server, else a child `bridgex-serve` in front of it):

    direct        `route: direct`      the server's direct prompt {S}:"w"→{T}:" with its demonstrations
    bridge b      `bridge: b`          the server's bridged prompt, chain or two-step mode, copy fallback

Strategies map to arms: `direct`; `english` (bridge en); `bridgex` (the index's rank-1 bridge);
`calibrated` (the route the server takes for the pair, `route: auto`: its stored decision, else its
uncalibrated policy; asked for one word per pair, then answered through the matching arm, whose prompts are
the same); `all-bridges` (every candidate the index ranked, so the measured-best "oracle" bridge is
known). Arms shared by strategies are asked once. Prompts, demonstrations and the copy rule are the
server's: evaluation measures exactly what users get.

`words` picks the test words: `all`, or one half of `calibration.split_words` (keyed `source:word`):
`calibration` is what `bridgex-index calibrate` decides on, `evaluation` the other half, where a
calibrated route is judged on words it was not chosen on.

Test words are the index's held-out split (`dictionary_entries.split = 'test'`), checked against the same
split recomputed from the dictionaries the user names; a word that any probe used is never a test word.
Gold = every translation of the word in the dictionary.

Every answer is cached in the index file (`eval_answers`, keyed by the word's canonical request), so a
re-run with the same arguments makes no call (and starts no server) and an interrupted run resumes where it
stopped. `evaluations` gets one row per complete (pair, strategy, bridge) cell; an interrupted run writes
its complete cells only, marks the run incomplete in `evaluation_runs`, and raises `EndpointError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import sys
import time
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from bridgex_index.results import ResultStore, append_run

from ..build.dictionaries import cldr_dictionaries, held_out_words, load_muse_dir, split_entries
from . import scoring
from .client import (
    AnswerCache,
    EndpointError,
    EvaluationError,
    TranslateClient,
    WordAnswer,
    WordRequest,
    base_url,
    bridgex_server,
    word_request,
)

__all__ = ["EndpointError", "EvaluationError", "base_url"]  # re-exported for the CLI and scripts

STRATEGIES = ("direct", "english", "bridgex", "calibrated", "all-bridges")
WORD_SETS = ("all", "calibration", "evaluation")
MODES = ("chain", "two-step")  # the server's bridged modes (it validates them too)
DEFAULT_MODE = "chain"
DEFAULT_SHOTS = 3  # the server's default for words, and chain mode needs them
MAX_SHOTS = 16
DEFAULT_CONCURRENCY = 32
DEFAULT_TEST_FRACTION = 0.2
Pair = tuple[str, str]
WordResult = WordAnswer  # one test word answered by one arm


@dataclass
class EvalConfig:
    """Every parameter of one evaluation run (recorded in `evaluation_runs.parameters`)."""

    index: Path
    endpoint: str
    model: str
    pairs: list[Pair]
    dictionaries: str  # "cldr", or a directory of MUSE files
    strategies: tuple[str, ...] = STRATEGIES
    mode: str = DEFAULT_MODE
    shots: int = DEFAULT_SHOTS
    limit: int | None = None  # test words per pair (stable hash order); None = all
    concurrency: int = DEFAULT_CONCURRENCY
    timeout: float = 300.0  # seconds per request (a busy CPU server queues requests)
    copy_fallback: bool = True  # as the proxy: a bridged answer that is a copy is asked again directly
    words: str = (
        "all"  # all | calibration | evaluation: which half of the test words (calibration.split_words)
    )
    top_bridges: int | None = None  # all-bridges: only the index's best N candidates (None = every one)
    api_key: str | None = None
    command: str = ""

    def parameters(self) -> dict:
        data = asdict(self)
        data.pop("api_key")
        data.pop("command")
        data["index"] = str(self.index)
        data["pairs"] = [f"{s}-{t}" for s, t in self.pairs]
        data["strategies"] = list(self.strategies)
        return data


# ------------------------------------------------------------------------------------------ parsing input


def parse_pairs(text: str) -> list[Pair]:
    """`sw-he,id-ja` → [("sw", "he"), ("id", "ja")]; a malformed or repeated pair is an EvaluationError."""
    pairs: list[Pair] = []
    for raw in text.split(","):
        item = raw.strip().lower()
        if not item:
            continue
        parts = item.split("-")
        if len(parts) != 2 or not all(parts):
            raise EvaluationError(f"--pairs: {raw.strip()!r} is not a pair like sw-he")
        s, t = parts
        if s == t:
            raise EvaluationError(f"--pairs: {item} has the same source and target")
        if (s, t) not in pairs:
            pairs.append((s, t))
    if not pairs:
        raise EvaluationError("--pairs: no pair given (expected e.g. sw-he,id-ja)")
    return pairs


def parse_strategies(text: str) -> tuple[str, ...]:
    """`direct,bridgex` → ("direct", "bridgex"), in canonical order; unknown names are an EvaluationError."""
    names = [s.strip().lower() for s in text.split(",") if s.strip()]
    unknown = [s for s in names if s not in STRATEGIES]
    if unknown or not names:
        raise EvaluationError(
            f"--strategies: unknown strategy {(unknown or [text])[0]!r} "
            f"(expected some of {','.join(STRATEGIES)})"
        )
    return tuple(s for s in STRATEGIES if s in names)


# ------------------------------------------------------------------------------------------- test words


@dataclass(frozen=True)
class HeldOutWord:
    word: str
    golds: tuple[str, ...]
    category: str | None = None  # CLDR category of the word's entry (unit, language, ...); None for MUSE


def stable_order(source: str, target: str, words: Sequence[str]) -> list[str]:
    """Words in a pseudo-random order that is the same on every run (what `--limit` takes a prefix of)."""

    def key(w: str) -> bytes:
        return hashlib.sha256(f"{source}\t{target}\t{w}".encode()).digest()

    return sorted(words, key=key)


def word_half(pair: Pair, words: Sequence[str], half: str) -> list[str]:
    """`words` of the pair's source language in one half of `calibration.split_words` (`all`: every one).

    Keyed `source:word`, so a word is in the same half for every target."""
    from .decision import split_words

    if half == "all":
        return list(words)
    if half not in WORD_SETS:
        raise EvaluationError(f"--words {half!r} is not one of {', '.join(WORD_SETS)}")
    calibration, evaluation = split_words(f"{pair[0]}:{w}" for w in words)
    chosen = {k.split(":", 1)[1] for k in (calibration if half == "calibration" else evaluation)}
    return [w for w in words if w in chosen]


def select_test_words(
    test_entries: Sequence[tuple[str, str]],
    probe_words: Collection[str],
    limit: int | None,
    pair: Pair,
    categories: Mapping[str, str | None] | None = None,
    half: str = "all",
) -> tuple[list[HeldOutWord], int]:
    """Test words of one oriented pair with their gold sets, minus any word a probe used.

    `test_entries` are (source word, target word); `probe_words` are the source language's probe words;
    `categories` maps source words to their category; `half` keeps one half of `word_half` (before
    `limit`). Returns (words in stable order, capped at `limit`; number of words dropped as probe words).
    """
    golds = scoring.gold_sets(test_entries)
    dropped = [w for w in golds if w in probe_words]
    kept = word_half(pair, [w for w in golds if w not in probe_words], half)
    ordered = stable_order(*pair, kept)
    if limit is not None:
        ordered = ordered[:limit]
    cats = categories or {}
    return [HeldOutWord(w, golds[w], cats.get(w)) for w in ordered], len(dropped)


def split_disagreement(index_test: set[tuple[str, str]], recomputed: set[tuple[str, str]]) -> str | None:
    """A one-line description of how two held-out splits differ, or None when they agree."""
    if index_test == recomputed:
        return None
    only_index, only_recomputed = index_test - recomputed, recomputed - index_test
    example = sorted(only_index or only_recomputed)[0]
    return (
        f"{len(only_index)} test entries only in the index, {len(only_recomputed)} only in the dictionaries "
        f"(e.g. {example[0]} → {example[1]})"
    )


# -------------------------------------------------------------------------------------------- the tasks


@dataclass(frozen=True)
class CandidateBridge:
    bridge: str
    probability: float
    rank: int


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

    @property
    def pair(self) -> Pair:
        return self.source, self.target

    @property
    def chosen(self) -> str | None:
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
            elif strategy == "bridgex" and self.chosen:
                cells.append(("bridgex", self.chosen))
            elif strategy == "calibrated" and self.served_known:
                cells.append(("calibrated", self.served))
            elif strategy == "all-bridges":
                cells += [("all-bridges", c.bridge) for c in self.candidates[: self.top]]
        return cells


@dataclass
class IndexData:
    """What evaluation reads from the index file."""

    provenance: dict[str, str]
    names: dict[str, str]  # language → prompt name
    bridges: dict[Pair, list[CandidateBridge]]
    entries: list[tuple]  # (source, target, source_word, target_word, concept, category, split)
    decisions: dict[Pair, str] = field(default_factory=dict)  # routing_decisions: pair → decision


def read_index(path: Path) -> IndexData:
    """Read languages, bridges and dictionary entries (raises store.IndexReadError for a bad file)."""
    from bridgex_index import read
    from bridgex_index.store import open_index, provenance, routing_decisions

    con = open_index(path)
    try:
        names = {lang.code: lang.prompt_name for lang in read.languages(con)}
        bridges = {
            pair: [CandidateBridge(r.bridge, r.probability, r.rank) for r in rows]
            for pair, rows in read.ranked_by_pair(read.bridges(con)).items()
        }
        entries = [tuple(row) for row in read.dictionary_entries(con)]
        decisions = {pair: row["decision"] for pair, row in routing_decisions(con).items()}
        return IndexData(provenance(con), names, bridges, entries, decisions)
    finally:
        con.close()


def _oriented(entries: Sequence[tuple], pair: Pair, split: str | None) -> list[tuple[str, str]]:
    s, t = pair
    out = []
    for a, b, wa, wb, *_rest, sp in entries:
        if split is not None and sp != split:
            continue
        if (a, b) == (s, t):
            out.append((wa, wb))
        elif (a, b) == (t, s):
            out.append((wb, wa))
    return out


def _categories(entries: Sequence[tuple], pair: Pair) -> dict[str, str | None]:
    """Source word → category of its first test entry in the pair."""
    s, t = pair
    out: dict[str, str | None] = {}
    for a, b, wa, wb, _concept, category, split in entries:
        if split == "test" and (a, b) in ((s, t), (t, s)):
            out.setdefault(wa if a == s else wb, category)
    return out


def recompute_entries(dictionaries: str, langs: Sequence[str], test_fraction: float) -> list[tuple]:
    """The dictionaries split again as the builder splits them, as rows shaped like `dictionary_entries`.

    The probe side is not capped by `max_pairs` (every entry that may be probed without touching a
    held-out word): that is where demonstrations come from.
    """
    dicts = cldr_dictionaries(langs) if dictionaries == "cldr" else load_muse_dir(Path(dictionaries), langs)
    held_out = set().union(*(held_out_words(d, test_fraction) for d in dicts.values()))
    rows: list[tuple] = []
    for (a, b), d in sorted(dicts.items()):
        probe, test = split_entries(d, test_fraction, None, held_out)
        for split, entries in (("probe", probe), ("test", test)):
            rows += [(a, b, e.source_word, e.target_word, e.concept, e.category, split) for e in entries]
    return rows


def plan_tasks(cfg: EvalConfig, data: IndexData) -> list[PairTask]:
    """Validate the pairs against the index and build every pair's task (no network)."""
    known = sorted(data.names)
    for s, t in cfg.pairs:
        for code in (s, t):
            if code not in data.names:
                raise EvaluationError(
                    f"--pairs {s}-{t}: language {code!r} is not in this index (languages: {', '.join(known)})"
                )
    bridged = any(x in cfg.strategies for x in ("bridgex", "all-bridges"))
    if cfg.top_bridges is not None and cfg.top_bridges < 1:
        raise EvaluationError(f"--top must be at least 1, got {cfg.top_bridges}")
    params = json.loads(data.provenance.get("parameters") or "{}")
    test_fraction = float(params.get("test_fraction", DEFAULT_TEST_FRACTION))
    recomputed = recompute_entries(cfg.dictionaries, known, test_fraction)
    probe_words: dict[str, set[str]] = {}
    for a, b, wa, wb, *_rest, split in data.entries:
        if split == "probe":
            probe_words.setdefault(a, set()).add(wa)
            probe_words.setdefault(b, set()).add(wb)

    tasks = []
    for s, t in cfg.pairs:
        index_test = _oriented(data.entries, (s, t), "test")
        if not index_test:
            raise EvaluationError(f"--pairs {s}-{t}: the index has no held-out test words for this pair")
        differs = split_disagreement(set(index_test), set(_oriented(recomputed, (s, t), "test")))
        if differs:
            source = "--dictionaries cldr" if cfg.dictionaries == "cldr" else f"--dict-dir {cfg.dictionaries}"
            raise EvaluationError(
                f"--pairs {s}-{t}: the index's held-out split does not match {source} ({differs}); "
                "give the dictionaries the index was built from"
            )
        categories = _categories(data.entries, (s, t))
        words, dropped = select_test_words(
            index_test, probe_words.get(s, set()), cfg.limit, (s, t), categories, cfg.words
        )
        if not words:
            raise EvaluationError(f"--pairs {s}-{t}: no test words in the {cfg.words} half")
        candidates = data.bridges.get((s, t), [])
        if bridged and not candidates:
            raise EvaluationError(f"--pairs {s}-{t}: the index has no bridges for {s} → {t}")
        task = PairTask(s, t, words, candidates, [], dropped, data.decisions.get((s, t)), cfg.top_bridges)
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


# ---------------------------------------------------------------------------------------------- running


@dataclass
class Cell:
    """One row of `evaluations`: a (pair, strategy, bridge) cell over the pair's test words."""

    source: str
    target: str
    strategy: str
    bridge: str | None
    probability: float | None
    n: int
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
    answers: dict[tuple[Pair, int, str | None], WordResult] = field(default_factory=dict)


def build_cells(
    tasks: Sequence[PairTask],
    strategies: Sequence[str],
    answers: Mapping[tuple[Pair, int, str | None], WordResult],
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
                    arm,
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
    answers: Mapping[tuple[Pair, int, str | None], WordResult],
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
    answers: Mapping[tuple[Pair, int, str | None], WordResult],
) -> dict[str, tuple[float, float, float, int]]:
    """`bridgex` minus `direct` and minus `english`, pooled over every word both answered:
    name → (mean points, 95% bootstrap low, high, words)."""
    out: dict[str, tuple[float, float, float, int]] = {}
    for other in ("direct", "english"):
        mine: list[bool] = []
        theirs: list[bool] = []
        for task in tasks:
            arms = dict(task.strategy_arms(strategies))
            if "bridgex" not in arms or other not in arms:
                continue
            for i, w in enumerate(task.words):
                x, y = answers.get((task.pair, i, arms["bridgex"])), answers.get((task.pair, i, arms[other]))
                if x is not None and y is not None:
                    mine.append(scoring.is_hit(x.answer, w.golds))
                    theirs.append(scoring.is_hit(y.answer, w.golds))
        if mine:
            out[other] = (*scoring.paired_bootstrap(mine, theirs), len(mine))
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


def _write_results(con, cfg: EvalConfig, result: RunResult) -> None:
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
    rows = [
        (
            result.run_id,
            result.created_at,
            cfg.model,
            cfg.endpoint,
            cfg.mode,
            shots[(c.source, c.target)],
            c.strategy,
            c.source,
            c.target,
            c.bridge,
            c.probability,
            c.n,
            c.hits,
            c.accuracy,
            c.copies,
            c.calls,
            c.seconds,
        )
        for c in result.cells
    ]
    append_run(con, run, rows)


Job = tuple[tuple[Pair, int, "str | None"], WordRequest]


def arm_options(cfg: EvalConfig, task: PairTask, arm: str | None, route: str | None = None) -> dict:
    """The `/v1/translate` options of one arm: `route: direct` (None), `bridge: b`, or `route: auto`.

    The direct route's options leave out what does not change its prompt (mode, copy fallback), so its
    answers are shared across runs of either mode."""
    options = {
        "model": cfg.model,
        "task": "word",
        "source": task.source,
        "target": task.target,
        "shots": cfg.shots,
        "temperature": 0.0,
    }
    if route is None and arm is None:
        return {**options, "route": "direct"}
    options |= {"mode": cfg.mode, "copy_fallback": cfg.copy_fallback}
    return {**options, "route": route} if route else {**options, "bridge": arm}


def served_request(cfg: EvalConfig, task: PairTask) -> WordRequest:
    """`route: auto` for the pair's first test word: the server's own route (its answer names the bridge).
    The stored decision is part of the cache key: a new calibration asks again."""
    return word_request(task.words[0].word, arm_options(cfg, task, None, "auto"), f"decision={task.decision}")


def make_jobs(cfg: EvalConfig, tasks: Sequence[PairTask]) -> list[Job]:
    return [
        ((task.pair, i, arm), word_request(w.word, arm_options(cfg, task, arm)))
        for task in tasks
        for arm in task.arms
        for i, w in enumerate(task.words)
    ]


def prepare(cfg: EvalConfig, say: Callable[[str], None]) -> tuple[IndexData, list[PairTask]]:
    """Validate the configuration, read the index and plan every pair's task; no network."""
    if cfg.mode not in MODES:
        raise EvaluationError(f"--mode {cfg.mode!r} is not one of {', '.join(MODES)}")
    if not 0 <= cfg.shots <= MAX_SHOTS:
        raise EvaluationError(f"--shots must be 0..{MAX_SHOTS}, got {cfg.shots}")
    if cfg.limit is not None and cfg.limit < 1:
        raise EvaluationError(f"--limit must be at least 1, got {cfg.limit}")
    if cfg.words not in WORD_SETS:
        raise EvaluationError(f"--words {cfg.words!r} is not one of {', '.join(WORD_SETS)}")
    if cfg.concurrency < 1:
        raise EvaluationError(f"--concurrency must be at least 1, got {cfg.concurrency}")
    base_url(cfg.endpoint)
    data = read_index(cfg.index)
    tasks = plan_tasks(cfg, data)
    for task in tasks:
        note = f" ({task.dropped_probe_words} probe words dropped)" if task.dropped_probe_words else ""
        say(
            f"{task.source}→{task.target}: {len(task.words)} test words × {len(task.arms)} arms, "
            f"chosen bridge {task.chosen or '-'}"
            f"{f', calibrated decision {task.decision}' if task.decision else ''}{note}"
        )
    return data, tasks


def index_identity(data: IndexData) -> str:
    """What the cache keys name the index by: a hash of its provenance (model, build, parameters)."""
    text = json.dumps(data.provenance, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _client(cfg: EvalConfig, data: IndexData, store: ResultStore) -> TranslateClient:
    return TranslateClient(
        AnswerCache(store, cfg.model),
        index_identity(data),
        endpoint=cfg.endpoint,
        api_key=cfg.api_key,
        timeout=cfg.timeout,
        concurrency=cfg.concurrency,
    )


def count_requests(cfg: EvalConfig, log: Callable[[str], None] | None = None) -> tuple[int, int]:
    """(words a run asks the server, how many of them are cached) without calling anything.

    With `calibrated`, one more word per pair asks the server's own route."""
    data, tasks = prepare(cfg, log or (lambda msg: print(msg, file=sys.stderr)))
    client = _client(cfg, data, ResultStore(cfg.index))
    requests = [r for _key, r in make_jobs(cfg, tasks)]
    if "calibrated" in cfg.strategies:
        requests += [served_request(cfg, task) for task in tasks]
    distinct = list(dict.fromkeys(requests))
    missing = client.cached(distinct, {})
    return len(distinct), len(distinct) - len(missing)


def evaluate(cfg: EvalConfig, quiet: bool = False, log: Callable[[str], None] | None = None) -> RunResult:
    """Run the whole evaluation through a BridgeX server, write `evaluations` (complete cells) and return
    the result. Raises EvaluationError for bad input before any call, and EndpointError (after saving the
    cache and the complete cells) when the endpoint fails."""
    from tqdm.auto import tqdm

    say = log or (lambda msg: print(msg, file=sys.stderr))
    data, tasks = prepare(cfg, say)
    store = ResultStore(cfg.index)
    client = _client(cfg, data, store)
    created = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    got: dict[WordRequest, WordAnswer] = {}
    served = [served_request(cfg, task) for task in tasks] if "calibrated" in cfg.strategies else []
    error: EndpointError | None = None
    jobs: list[Job] = []
    try:
        with contextlib.ExitStack() as server:
            missing = client.cached(served, got)
            url = server.enter_context(_server(cfg, say)) if missing else ""
            try:
                asyncio.run(client.fetch(url, missing, got))
            except EndpointError as err:
                error = err
            for task, request in zip(tasks if served else [], served, strict=True):
                if request in got:
                    task.served, task.served_known = got[request].bridge, True
                    task.arms = arms_of(task, cfg.strategies)
            jobs = make_jobs(cfg, tasks)
            missing = client.cached([r for _key, r in jobs], got)
            if missing and error is None:
                url = url or server.enter_context(_server(cfg, say))
                bar = tqdm(total=len(missing), desc="eval", unit="word", disable=quiet, file=sys.stderr)
                try:
                    asyncio.run(client.fetch(url, missing, got, bar.update))
                except EndpointError as err:
                    error = err
                finally:
                    bar.close()
    finally:
        client.cache.flush()  # also on Ctrl-C: what was answered stays answered
    answers = {key: got[request] for key, request in jobs if request in got}
    for task in tasks:
        shots = [a.shots for (pair, _i, _arm), a in answers.items() if pair == task.pair]
        task.shots = min(shots) if shots else 0
    cells = build_cells(tasks, cfg.strategies, answers)
    summaries = summarise(tasks, cells)
    result = RunResult(
        run_id=uuid.uuid4().hex[:12],
        created_at=created,
        tasks=tasks,
        cells=cells,
        summaries=summaries,
        overall=scoring.overall(summaries),
        upstream_calls=client.cache.misses,
        cached_calls=client.cache.hits,
        seconds=time.perf_counter() - t0,
        complete=error is None,
        provenance=data.provenance,
        answers=answers,
    )
    with store.connect() as con:
        _write_results(con, cfg, result)
    if error is not None:
        raise EndpointError(
            f"{error} ({len(answers)} of {len(jobs)} answers done and cached, {len(cells)} complete cells "
            "written; run the same command again to resume)"
        )
    return result


def _server(cfg: EvalConfig, say: Callable[[str], None]):
    return bridgex_server(cfg.endpoint, cfg.index, cfg.api_key, cfg.concurrency, say)
