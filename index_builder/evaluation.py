"""BLI evaluation of an index's bridges through any OpenAI-compatible endpoint (`bridgex-index eval`).

For every (source, target) pair and every held-out test word, one *arm* per way of asking:

    direct        {S}:"w"→{T}:"                       (zero bridges, same demonstration words)
    bridge b      the proxy's own word prompts (`bridgex_serve.rewrite`), chain or two-step mode

Strategies map to arms: `direct`; `english` (bridge en); `bridgex` (the index's rank-1 bridge);
`calibrated` (what the server routes the pair through: the stored `routing_decisions` decision — direct or
its bridge — and the HSIC rank-1 bridge for an uncalibrated pair); `all-bridges` (every candidate the index
ranked, so the measured-best "oracle" bridge is known). Arms shared by strategies are asked once.

`words` picks the test words: `all`, or one half of `calibration.split_words` (keyed `source:word`):
`calibration` is what `bridgex-index calibrate` decides on, `evaluation` the other half, where a
calibrated route is judged on words it was not chosen on.

Test words are the index's held-out split (`dictionary_entries.split = 'test'`), checked against the same
split recomputed from the dictionaries the user names; a word that any probe used is never a test word.
Gold = every translation of the word in the dictionary. Demonstrations come from probe entries only and
are the same words for every arm of a pair (a concept with a word in the source, the target, English and
every candidate bridge, whichever strategies are asked for), so the comparison is fair.

Every upstream answer is cached in the index file (`eval_answers`, keyed by the request's JSON), so a
re-run with the same arguments makes no upstream call and an interrupted run resumes where it stopped.
`evaluations` gets one row per complete (pair, strategy, bridge) cell; an interrupted run writes its
complete cells only, marks the run incomplete in `evaluation_runs`, and raises `EndpointError`.
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

from bridgex_index.schema import OPTIONAL_TABLES
from bridgex_serve import rewrite
from bridgex_serve.index import CATEGORY_PREFERENCE

from . import scoring
from .dictionaries import cldr_dictionaries, held_out_words, load_muse_dir, split_entries

STRATEGIES = ("direct", "english", "bridgex", "calibrated", "all-bridges")
WORD_SETS = ("all", "calibration", "evaluation")
DEFAULT_SHOTS = rewrite.DEFAULT_SHOTS["word"]  # 3: the proxy's default, and chain mode needs them
DEFAULT_CONCURRENCY = 32
DEFAULT_TEST_FRACTION = 0.2
FLUSH_EVERY = 64  # answers buffered before they are written to the cache table
Pair = tuple[str, str]


class EvaluationError(ValueError):
    """Input that cannot be evaluated (the message is one line meant for the user)."""


class EndpointError(EvaluationError):
    """The endpoint could not be reached or refused a request; answers received so far are cached."""


@dataclass
class EvalConfig:
    """Every parameter of one evaluation run (recorded in `evaluation_runs.parameters`)."""

    index: Path
    endpoint: str
    model: str
    pairs: list[Pair]
    dictionaries: str  # "cldr", or a directory of MUSE files
    strategies: tuple[str, ...] = STRATEGIES
    mode: str = rewrite.DEFAULT_MODE
    shots: int = DEFAULT_SHOTS
    limit: int | None = None  # test words per pair (stable hash order); None = all
    concurrency: int = DEFAULT_CONCURRENCY
    timeout: float = 300.0  # seconds per request (a busy CPU server queues requests)
    copy_fallback: bool = True  # as the proxy: a bridged answer that is a copy is asked again directly
    words: str = (
        "all"  # all | calibration | evaluation: which half of the test words (calibration.split_words)
    )
    top_bridges: int | None = None  # all-bridges: only the index's best N candidates (None = every one)
    demo_bridges: str = "gold"  # gold | model: demonstration bridge words from the dictionary or the model
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


def base_url(endpoint: str) -> str:
    """The server root of an OpenAI-compatible endpoint (`http://h:8000/v1/` → `http://h:8000`)."""
    url = endpoint.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise EvaluationError(f"--endpoint must be an http(s) URL, got {endpoint!r}")
    return url[:-3] if url.endswith("/v1") else url


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
    from .calibration import split_words

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


# --------------------------------------------------------------------------------------- demonstrations


def aligned_demonstrations(
    words: Mapping[str, Mapping[str, str]],
    order: Sequence[str],
    source: str,
    target: str,
    bridges: Sequence[str],
    k: int,
) -> list[dict[str, str]]:
    """Up to k demonstrations, each a word per language for one key (a concept), shared by every arm.

    `words[lang][key]` is the language's probe word for the key; keys are tried in `order`. A key is used
    when the source, the target and every bridge have a word and no bridged triple contains a copy
    (two equal words after case-folding), the rule the proxy applies to its demonstrations.
    """
    chosen: list[dict[str, str]] = []
    if k <= 0:
        return chosen
    langs = [source, target, *bridges]
    for key in order:
        row = {lang: words.get(lang, {}).get(key) for lang in langs}
        if any(w is None for w in row.values()):
            continue
        s, t = row[source].casefold(), row[target].casefold()
        if s == t or any(row[b].casefold() in (s, t) for b in bridges):
            continue
        chosen.append(row)  # type: ignore[arg-type]
        if len(chosen) == k:
            break
    return chosen


def concept_order(categories: Mapping[str, str | None]) -> list[str]:
    """Concepts in the proxy's demonstration preference (common nouns first), then by key."""
    rank = {c: i for i, c in enumerate(CATEGORY_PREFERENCE)}
    return sorted(categories, key=lambda c: (rank.get(categories[c] or "", len(rank)), c))


# -------------------------------------------------------------------------------------------- the tasks


@dataclass(frozen=True)
class CandidateBridge:
    bridge: str
    probability: float
    rank: int


@dataclass
class PairTask:
    """Everything one pair needs: its test words, arms, candidates and demonstrations."""

    source: str
    target: str
    words: list[HeldOutWord]
    candidates: list[CandidateBridge]  # the index's ranking for source → target
    arms: list[str | None]  # None = direct; otherwise a bridge code
    demos: list[dict[str, str]]  # language → word, shared by every arm
    dropped_probe_words: int = 0
    decision: str | None = None  # the stored routing decision ('direct' or a bridge); None: uncalibrated
    top: int | None = None  # all-bridges: the best N candidates only
    # --demo-bridges model: bridge → the model's own rendering of each demonstration's source word
    model_demos: dict[str, list[str]] = field(default_factory=dict)

    @property
    def pair(self) -> Pair:
        return self.source, self.target

    @property
    def chosen(self) -> str | None:
        return self.candidates[0].bridge if self.candidates else None

    @property
    def calibrated(self) -> str | None:
        """The arm the server routes the pair through: the stored decision, else the HSIC rank-1 bridge."""
        if self.decision is None:
            return self.chosen
        return None if self.decision == "direct" else self.decision

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
            elif strategy == "calibrated" and (self.decision is not None or self.chosen):
                cells.append(("calibrated", self.calibrated))
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


def demonstration_words(rows: Sequence[tuple]) -> tuple[dict[str, dict[str, str]], list[str]]:
    """Concept words per language from probe rows, and the concepts in demonstration order."""
    words: dict[str, dict[str, str]] = {}
    categories: dict[str, str | None] = {}
    for a, b, wa, wb, concept, category, split in sorted(rows, key=lambda r: tuple(map(str, r))):
        if split != "probe" or concept is None:
            continue
        words.setdefault(a, {}).setdefault(concept, wa)
        words.setdefault(b, {}).setdefault(concept, wb)
        categories.setdefault(concept, category)
    return words, concept_order(categories)


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
    concept_words, order = demonstration_words(recomputed)
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
        task = PairTask(s, t, words, candidates, [], [], dropped, data.decisions.get((s, t)), cfg.top_bridges)
        arms: list[str | None] = []
        for _strategy, arm in task.strategy_arms(cfg.strategies):
            if arm not in arms:
                arms.append(arm)
        task.arms = arms
        # Demonstrations depend on the pair only, not on the strategies asked for: aligned across every
        # candidate bridge and English, so `direct` sees the same prompts in every run (and its cache).
        bridges = [a for a in arms if a is not None]
        bridges += [c.bridge for c in candidates if c.bridge not in bridges]
        if "en" not in (s, t, *bridges) and "en" in data.names:
            bridges.append("en")
        if concept_words:
            task.demos = aligned_demonstrations(concept_words, order, s, t, bridges, cfg.shots)
        else:
            task.demos = _muse_demonstrations(recomputed, s, t, bridges, cfg.shots)
        tasks.append(task)
    return tasks


def _muse_demonstrations(
    rows: Sequence[tuple], s: str, t: str, bridges: Sequence[str], k: int
) -> list[dict[str, str]]:
    """Demonstrations without concepts (MUSE): keyed by the source word of the pair's probe entries, the
    bridge word being a probe translation of the same source word."""
    words: dict[str, dict[str, str]] = {}
    for lang in (t, *bridges):
        for ws, wl in sorted(_oriented(rows, (s, lang), "probe")):
            words.setdefault(lang, {}).setdefault(ws, wl)
    words[s] = {w: w for w in words.get(t, {})}
    return aligned_demonstrations(words, sorted(words[s]), s, t, bridges, k)


def make_plan(
    task: PairTask, word: str, arm: str | None, cfg: EvalConfig, names: Mapping[str, str]
) -> rewrite.Plan:
    """The rewrite core's plan for one test word and arm (direct when `arm` is None)."""
    s, t = task.pair
    if arm is None:
        demos = tuple((d[s], d[t]) for d in task.demos)
        mode = "direct"
    else:
        made = task.model_demos.get(arm)
        demos = tuple((d[s], made[i] if made else d[arm], d[t]) for i, d in enumerate(task.demos))
        mode = cfg.mode
    probability = next((c.probability for c in task.candidates if c.bridge == arm), None)
    return rewrite.Plan(
        task="word",
        mode=mode,
        source=s,
        target=t,
        bridge=arm,
        probability=probability,
        names=(names[s], names[t], names[arm] if arm else None),
        text=rewrite.clean_text(word),
        demos=demos,
        answer_tokens=rewrite.DEFAULT_ANSWER_TOKENS["word"],
    )


# ------------------------------------------------------------------------------------------------ cache


def request_key(step: rewrite.Step) -> str:
    """The cache key of one upstream request: sha256 of its canonical JSON (path and body)."""
    canonical = json.dumps(
        {"path": step.path, "body": step.body}, sort_keys=True, ensure_ascii=False, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Answer:
    text: str
    finish_reason: str
    seconds: float


class AnswerCache:
    """`eval_answers` in the index file: every upstream answer by request key, written in batches."""

    def __init__(self, store: ResultStore, model: str):
        self.store = store
        self.model = model
        with store.connect() as con:
            found = con.execute(
                "SELECT key, response, finish_reason, seconds FROM eval_answers WHERE model = ?", [model]
            ).fetchall()
        self.answers: dict[str, Answer] = {
            key: Answer(text, finish or "stop", float(sec or 0.0)) for key, text, finish, sec in found
        }
        self.pending: list[tuple] = []
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> Answer | None:
        return self.answers.get(key)

    def put(self, key: str, step: rewrite.Step, answer: Answer) -> None:
        self.answers[key] = answer
        request = json.dumps({"path": step.path, "body": step.body}, sort_keys=True, ensure_ascii=False)
        self.pending.append((key, self.model, request, answer.text, answer.finish_reason, answer.seconds))
        if len(self.pending) >= FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        cols = list(zip(*self.pending, strict=True))
        with self.store.connect() as con:
            con.execute(
                "INSERT INTO eval_answers"
                " (key, model, request, response, finish_reason, seconds, created_at)"
                " SELECT k, m, r, a, f, s, now() FROM (SELECT unnest($1) AS k, unnest($2) AS m,"
                " unnest($3) AS r, unnest($4) AS a, unnest($5) AS f, unnest($6) AS s) ON CONFLICT DO NOTHING",
                [list(c) for c in cols],
            )
        self.pending = []


# --------------------------------------------------------------------------------------------- upstream


class Upstream:
    """Completion calls through the cache, bounded by a semaphore; fatal errors become EndpointError."""

    def __init__(self, cfg: EvalConfig, cache: AnswerCache):
        import httpx

        self.url = base_url(cfg.endpoint)
        self.endpoint = cfg.endpoint
        self.cache = cache
        self.semaphore = asyncio.Semaphore(cfg.concurrency)
        headers = {"Authorization": f"Bearer {cfg.api_key}"} if cfg.api_key else {}
        self.client = httpx.AsyncClient(
            base_url=self.url,
            headers=headers,
            timeout=httpx.Timeout(cfg.timeout, connect=10.0),
            limits=httpx.Limits(max_connections=cfg.concurrency, max_keepalive_connections=cfg.concurrency),
        )
        self.calls = 0
        self.inflight: dict[str, asyncio.Future[Answer]] = {}

    async def close(self) -> None:
        await self.client.aclose()

    async def complete(self, step: rewrite.Step) -> Answer:
        """The answer to `step`: from the cache, from an identical request already in flight, or upstream."""
        key = request_key(step)
        cached = self.cache.get(key)
        if cached is not None:
            self.cache.hits += 1
            return cached
        if key in self.inflight:
            self.cache.hits += 1
            return await asyncio.shield(self.inflight[key])
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self.inflight[key] = future
        try:
            async with self.semaphore:
                answer = await self._post(step)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as err:
            future.set_exception(err)
            future.exception()  # marked retrieved: waiters re-raise it, an unwaited one is not logged
            raise
        finally:
            del self.inflight[key]
        self.cache.misses += 1
        self.cache.put(key, step, answer)
        future.set_result(answer)
        return answer

    async def _post(self, step: rewrite.Step, attempts: int = 3) -> Answer:
        import httpx

        for attempt in range(attempts):
            last = attempt == attempts - 1
            t0 = time.perf_counter()
            try:
                self.calls += 1
                response = await self.client.post(step.path, json=step.body)
            except httpx.ConnectError as err:
                raise EndpointError(f"cannot reach {self.endpoint}: {_reason(err)}") from None
            except (httpx.TransportError, httpx.TimeoutException) as err:
                if last:
                    raise EndpointError(f"cannot reach {self.endpoint}: {_reason(err)}") from None
                await asyncio.sleep(0.5 * 2**attempt)
                continue
            seconds = time.perf_counter() - t0
            if response.status_code in (429, 500, 502, 503, 504) and not last:
                await asyncio.sleep(0.5 * 2**attempt)
                continue
            if response.status_code >= 400:
                raise EndpointError(
                    f"{self.endpoint} answered {response.status_code} to {step.path}: "
                    + _error_message(response)
                )
            try:
                body = response.json()
            except ValueError:
                raise EndpointError(
                    f"{self.endpoint} answered {step.path} with something that is not JSON"
                ) from None
            text, finish = rewrite.choice_text(step, body)
            return Answer(text, finish, seconds)
        raise AssertionError("unreachable")


def _reason(err: Exception) -> str:
    text = " ".join(str(err).split())
    return text or type(err).__name__


def _error_message(response) -> str:
    try:
        body = response.json()
        message = (body.get("error") or {}).get("message") if isinstance(body.get("error"), dict) else None
        message = message or body.get("message") or body.get("detail") or body.get("error")
    except ValueError:
        message = response.text
    return " ".join(str(message or response.reason_phrase).split())[:300]


@dataclass
class WordResult:
    """One test word answered by one arm."""

    answer: str
    bridge_text: str | None
    calls: int
    seconds: float
    fallback: str | None = None  # why the proxy's copy fallback replaced the bridged answer

    def copied(self, word: str) -> bool:
        return self.bridge_text is not None and rewrite.is_copy(word, self.bridge_text)


async def solve(
    plan: rewrite.Plan, req: rewrite.ClientRequest, upstream: Upstream, copy_fallback: bool = True
) -> WordResult:
    """One plan to its final answer, as `bridgex_serve.orchestrate.run_plans` reaches it: the bridged
    calls, and with `copy_fallback` the direct route where the bridged answer is a copy (`copy_reason`)."""
    result = await _bridged(plan, req, upstream)
    if not copy_fallback or plan.bridge is None:
        return result
    reason = rewrite.copy_reason(plan.text, result.bridge_text, result.answer)
    if reason is None:
        return result
    direct = await upstream.complete(rewrite.first_step(rewrite.direct_plan(plan), req))
    return WordResult(
        rewrite.clean_bridge(direct.text),
        result.bridge_text,
        result.calls + 1,
        result.seconds + direct.seconds,
        reason,
    )


async def _bridged(plan: rewrite.Plan, req: rewrite.ClientRequest, upstream: Upstream) -> WordResult:
    first = rewrite.first_step(plan, req)
    reply = await upstream.complete(first)
    seconds = reply.seconds
    if plan.mode == "direct":
        return WordResult(rewrite.clean_bridge(reply.text), None, 1, seconds)
    if plan.mode == "two-step":
        bridge, answer = rewrite.clean_bridge(reply.text), None
    else:
        bridge, answer = rewrite.parse_chain(plan, req, reply.text)
    if answer is not None:
        return WordResult(answer, bridge, 1, seconds)
    second = await upstream.complete(rewrite.answer_step(plan, req, bridge))
    return WordResult(rewrite.clean_answer(second.text), bridge, 2, seconds + second.seconds)


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
            copies = sum(r.copied(w.word) for r, w in zip(done, task.words, strict=True))
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
                shots=len(task.demos),
            )
        )
    return out


def _progress(total: int, quiet: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="eval", unit="word", disable=quiet, file=sys.stderr, dynamic_ncols=True)


async def _run_all(
    jobs: list[Job],
    req: rewrite.ClientRequest,
    upstream: Upstream,
    answers: dict,
    quiet: bool,
    copy_fallback: bool = True,
) -> EndpointError | None:
    """Solve every job concurrently; on the first fatal error cancel the rest and return it."""
    bar = _progress(len(jobs), quiet)

    async def one(key, plan) -> None:
        answers[key] = await solve(plan, req, upstream, copy_fallback)
        bar.update(1)
        if bar.n % 50 == 0:
            bar.set_postfix(upstream=upstream.cache.misses, cached=upstream.cache.hits, refresh=False)

    tasks = [asyncio.ensure_future(one(key, plan)) for key, plan in jobs]
    error: EndpointError | None = None
    try:
        if tasks:
            done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                exc = task.exception()
                if exc is not None and error is None:
                    if not isinstance(exc, EndpointError):
                        raise exc
                    error = exc
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
    finally:
        bar.close()
        await upstream.close()
    return error


class ResultStore:
    """The index file as the home of `eval_answers` and the results. Each write opens the file briefly
    (DuckDB lets one process write at a time), so the proxy or `bridgex-index bridges` can still read the
    index while an evaluation runs."""

    def __init__(self, path: Path, attempts: int = 20):
        self.path = path
        self.attempts = attempts
        self._created = False

    @contextlib.contextmanager
    def connect(self):
        import duckdb

        for attempt in range(self.attempts):
            try:
                con = duckdb.connect(str(self.path))
                break
            except duckdb.IOException as err:  # another process holds the file: wait a little
                if attempt == self.attempts - 1:
                    raise EvaluationError(
                        f"cannot open {self.path} for writing: {_first_line(err)}"
                    ) from None
                time.sleep(0.25)
            except duckdb.Error as err:
                raise EvaluationError(f"cannot open {self.path} for writing: {_first_line(err)}") from None
        try:
            if not self._created:
                for ddl in OPTIONAL_TABLES.values():
                    con.execute(ddl)
                self._created = True
            yield con
        finally:
            con.close()


def _first_line(err: Exception) -> str:
    return (str(err).splitlines() or [type(err).__name__])[0]


def _write_results(con, cfg: EvalConfig, result: RunResult) -> None:
    con.execute(
        "INSERT INTO evaluation_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
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
        ],
    )
    shots = {t.pair: len(t.demos) for t in result.tasks}
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
    if rows:
        con.executemany(f"INSERT INTO evaluations VALUES ({', '.join('?' * len(rows[0]))})", rows)


Job = tuple[tuple[Pair, int, "str | None"], rewrite.Plan]


DEMO_BRIDGES = ("gold", "model")


def demo_bridge_step(
    task: PairTask, word: str, bridge: str, names: Mapping[str, str], req: rewrite.ClientRequest
) -> rewrite.Step:
    """The zero-shot direct request `{S}:"a"→{B}:"` whose greedy answer is the model's own bridge word."""
    s = task.source
    plan = rewrite.Plan(
        task="word",
        mode="direct",
        source=s,
        target=bridge,
        bridge=None,
        probability=None,
        names=(names[s], names[bridge], None),
        text=rewrite.clean_text(word),
        demos=(),
        answer_tokens=rewrite.DEFAULT_ANSWER_TOKENS["word"],
    )
    return rewrite.first_step(plan, req)


async def make_model_demos(
    tasks: Sequence[PairTask], names: Mapping[str, str], req: rewrite.ClientRequest, upstream: Upstream
) -> None:
    """--demo-bridges model: every bridged arm's demonstration bridge words become the model's own greedy
    renderings of the demonstration source words (one cached completion per word and bridge)."""

    async def one(task: PairTask, bridge: str) -> None:
        steps = [demo_bridge_step(task, d[task.source], bridge, names, req) for d in task.demos]
        replies = await asyncio.gather(*(upstream.complete(step) for step in steps))
        task.model_demos[bridge] = [rewrite.clean_bridge(r.text) for r in replies]

    await asyncio.gather(*(one(task, arm) for task in tasks for arm in task.arms if arm is not None))


def demo_copy_rate(tasks: Sequence[PairTask]) -> tuple[int, int]:
    """(model-made demonstration bridge words that copy their source word, all of them)."""
    copies = n = 0
    for task in tasks:
        for made in task.model_demos.values():
            for d, b in zip(task.demos, made, strict=True):
                n += 1
                copies += rewrite.is_copy(d[task.source], b)
    return copies, n


def make_jobs(cfg: EvalConfig, tasks: Sequence[PairTask], names: Mapping[str, str]) -> list[Job]:
    return [
        ((task.pair, i, arm), make_plan(task, w.word, arm, cfg, names))
        for task in tasks
        for arm in task.arms
        for i, w in enumerate(task.words)
    ]


def prompt_names(data: IndexData) -> dict[str, str]:
    names = dict(data.names)
    if "en" not in names:
        from .languages import prompt_name

        names["en"] = prompt_name("en")
    return names


def prepare(cfg: EvalConfig, say: Callable[[str], None]) -> tuple[IndexData, list[PairTask], list[Job]]:
    """Validate the configuration, read the index and plan every (pair, word, arm) job; no network."""
    if cfg.mode not in rewrite.MODES:
        raise EvaluationError(f"--mode {cfg.mode!r} is not one of {', '.join(rewrite.MODES)}")
    if not 0 <= cfg.shots <= rewrite.MAX_SHOTS:
        raise EvaluationError(f"--shots must be 0..{rewrite.MAX_SHOTS}, got {cfg.shots}")
    if cfg.limit is not None and cfg.limit < 1:
        raise EvaluationError(f"--limit must be at least 1, got {cfg.limit}")
    if cfg.words not in WORD_SETS:
        raise EvaluationError(f"--words {cfg.words!r} is not one of {', '.join(WORD_SETS)}")
    if cfg.concurrency < 1:
        raise EvaluationError(f"--concurrency must be at least 1, got {cfg.concurrency}")
    if cfg.demo_bridges not in DEMO_BRIDGES:
        raise EvaluationError(f"--demo-bridges {cfg.demo_bridges!r} is not one of {', '.join(DEMO_BRIDGES)}")
    base_url(cfg.endpoint)
    data = read_index(cfg.index)
    tasks = plan_tasks(cfg, data)
    names = prompt_names(data)
    jobs = make_jobs(cfg, tasks, names)  # with gold demonstrations (model-made ones are made by `evaluate`)
    for task in tasks:
        note = f" ({task.dropped_probe_words} probe words dropped)" if task.dropped_probe_words else ""
        say(
            f"{task.source}→{task.target}: {len(task.words)} test words × {len(task.arms)} arms, "
            f"{len(task.demos)} shots, chosen bridge {task.chosen or '-'}"
            f"{f', calibrated decision {task.decision}' if task.decision else ''}{note}"
        )
    return data, tasks, jobs


def _request(cfg: EvalConfig) -> rewrite.ClientRequest:
    return rewrite.ClientRequest("completions", cfg.model, {"temperature": 0.0})


def count_requests(cfg: EvalConfig, log: Callable[[str], None] | None = None) -> tuple[int, int]:
    """(first-round requests a run needs, how many of them are cached) without calling the endpoint.

    Two-step mode then needs one more request per bridged job; chain mode only where the model stops
    before the answer (rare with demonstrations).
    """
    _data, _tasks, jobs = prepare(cfg, log or (lambda msg: print(msg, file=sys.stderr)))
    req = _request(cfg)
    keys = {request_key(rewrite.first_step(plan, req)) for _key, plan in jobs}
    cache = AnswerCache(ResultStore(cfg.index), cfg.model)
    return len(keys), sum(cache.get(k) is not None for k in keys)


def evaluate(cfg: EvalConfig, quiet: bool = False, log: Callable[[str], None] | None = None) -> RunResult:
    """Run the whole evaluation, write `evaluations` (complete cells) and return the result.

    Raises EvaluationError for bad input before any call, and EndpointError (after saving the cache and
    the complete cells) when the endpoint fails.
    """
    say = log or (lambda msg: print(msg, file=sys.stderr))
    data, tasks, jobs = prepare(cfg, say)
    req = _request(cfg)
    store = ResultStore(cfg.index)
    cache = AnswerCache(store, cfg.model)
    upstream = Upstream(cfg, cache)
    created = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    answers: dict = {}

    async def run() -> EndpointError | None:
        nonlocal jobs
        if cfg.demo_bridges == "model":
            try:
                await make_model_demos(tasks, prompt_names(data), req, upstream)
            except EndpointError as err:
                await upstream.close()
                return err
            jobs = make_jobs(cfg, tasks, prompt_names(data))
        return await _run_all(jobs, req, upstream, answers, quiet, cfg.copy_fallback)

    try:
        error = asyncio.run(run())
    finally:
        cache.flush()  # also on Ctrl-C: what was answered stays answered
    cells = build_cells(tasks, cfg.strategies, answers)
    summaries = summarise(tasks, cells)
    result = RunResult(
        run_id=uuid.uuid4().hex[:12],
        created_at=created,
        tasks=tasks,
        cells=cells,
        summaries=summaries,
        overall=scoring.overall(summaries),
        upstream_calls=cache.misses,
        cached_calls=cache.hits,
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
