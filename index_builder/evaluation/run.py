"""BLI evaluation of an index's bridges through the HTTP API of a real `bridgex-serve` (`bridgex-index eval`).

For every (source, target) pair and every held-out test word, one *arm* per way of asking, each a
`/v1/translate` request of task `word` (`index_builder.evaluation.client`: the endpoint itself when it is a
BridgeX server, else a child `bridgex-serve` in front of it):

    direct        `route: direct`      the server's direct prompt {S}:"w"→{T}:" with its demonstrations
    bridge b      `bridge: b`          the server's bridged prompt, chain or two-step mode, copy fallback

Strategies map to arms: `direct`; `english` (bridge en); `bridgex` (the index's rank-1 bridge); `distilled`
(`mode: distilled`: one direct call with the pair's distilled demonstrations, where it has a set);
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
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from bridgex_index.results import ResultStore

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
    started_once,
)
from .config import MAX_SHOTS, MODES, TASKS, WORD_SETS, EvalConfig
from .results import RunResult, build_cells, summarise, write_results
from .tasks import (
    IndexData,
    Job,
    PairTask,
    follow_served_routes,
    make_jobs,
    plan,
    served_requests,
)

UNRANKED = "the index ranks no bridge for the pair: its route is direct (bridgex is scored as direct)"


def prepare(cfg: EvalConfig, say: Callable[[str], None]) -> tuple[IndexData, list[PairTask]]:
    """Validate the configuration, read the index and plan every pair's task; no network."""
    if cfg.mode not in MODES:
        raise EvaluationError(f"--mode {cfg.mode!r} is not one of {', '.join(MODES)}")
    if not 0 <= cfg.shots <= MAX_SHOTS:
        raise EvaluationError(f"--shots must be 0..{MAX_SHOTS}, got {cfg.shots}")
    if cfg.limit is not None and cfg.limit < 1:
        raise EvaluationError(f"--limit must be at least 1, got {cfg.limit}")
    if cfg.task not in TASKS:
        raise EvaluationError(f"--task {cfg.task!r} is not one of {', '.join(TASKS)}")
    if cfg.task == "translate" and cfg.test_dict_dir is not None:
        raise EvaluationError("--test-dict-dir is a word test set; --task translate takes --test-dir")
    if cfg.words not in WORD_SETS:
        raise EvaluationError(f"--words {cfg.words!r} is not one of {', '.join(WORD_SETS)}")
    if cfg.concurrency < 1:
        raise EvaluationError(f"--concurrency must be at least 1, got {cfg.concurrency}")
    base_url(cfg.endpoint)
    data, tasks = plan(cfg)
    if cfg.test_set is not None and cfg.test_dict_dir is not None:
        say(
            f"test set {cfg.test_set['name']} (sha256 {str(cfg.test_set['sha256'])[:12]}…): "
            f"{cfg.test_set['probe_words_dropped']} test words are probe words of the index, dropped"
        )
    for task in tasks:
        note = f" ({task.dropped_probe_words} probe words dropped)" if task.dropped_probe_words else ""
        if "distilled" in cfg.strategies and task.distilled is None:
            note += f"; no distilled {cfg.task} set (bridgex-index distill): distilled skipped"
        chosen = f"chosen bridge {task.chosen}" if task.chosen else UNRANKED
        say(
            f"{task.source}→{task.target}: {len(task.words)} test words × {len(task.arms)} arms, {chosen}"
            f"{f', calibrated decision {task.decision}' if task.decision else ''}{note}"
        )
    return data, tasks


def index_identity(data: IndexData) -> str:
    """What the cache keys name the index by: a hash of its provenance (model, build, parameters)."""
    text = json.dumps(data.provenance, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def translate_client(cfg: EvalConfig, data: IndexData, store: ResultStore) -> TranslateClient:
    """The run's `/v1/translate` client, its answers cached in the index file (`eval_answers`)."""
    return TranslateClient(
        AnswerCache(store, cfg.model),
        index_identity(data),
        prompt_style=cfg.prompt_style,
        endpoint=cfg.endpoint,
        api_key=cfg.api_key,
        timeout=cfg.timeout,
        concurrency=cfg.concurrency,
    )


def count_requests(cfg: EvalConfig, log: Callable[[str], None] | None = None) -> tuple[int, int]:
    """(words a run asks the server, how many of them are cached) without calling anything.

    With `calibrated`, one more word per pair asks the server's own route."""
    data, tasks = prepare(cfg, log or (lambda msg: print(msg, file=sys.stderr)))
    client = translate_client(cfg, data, ResultStore(cfg.index))
    requests = [r for _key, r in make_jobs(cfg, tasks)] + served_requests(cfg, tasks)
    distinct = list(dict.fromkeys(requests))
    missing = client.cached(distinct, {})
    return len(distinct), len(distinct) - len(missing)


def evaluate(cfg: EvalConfig, quiet: bool = False, log: Callable[[str], None] | None = None) -> RunResult:
    """Run the whole evaluation through a BridgeX server, write `evaluations` (complete cells) and return
    the result. Raises EvaluationError for bad input before any call, and EndpointError (after saving the
    cache and the complete cells) when the endpoint fails."""
    say = log or (lambda msg: print(msg, file=sys.stderr))
    data, tasks = prepare(cfg, say)
    store = ResultStore(cfg.index)
    client = translate_client(cfg, data, store)
    created = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    got: dict[WordRequest, WordAnswer] = {}
    try:
        jobs, error = _ask(cfg, tasks, client, got, say, quiet)
    finally:
        client.cache.flush()  # also on Ctrl-C: what was answered stays answered
    answers = {key: got[request] for key, request in jobs if request in got}
    cells, sentences, summaries = _score(cfg, tasks, answers)
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
        sentence_cells=sentences,
    )
    with store.connect() as con:
        write_results(con, cfg, result)
    if error is not None:
        # batches already wait in the client until the server keeps up (client.Window): one batch of 32
        # texts took longer than --timeout even so
        hint = "; it timed out: raise --timeout" if error.timed_out else ""
        cells = len(result.cells) + len(result.sentence_cells)
        raise EndpointError(
            f"{error} ({len(answers)} of {len(jobs)} answers done and cached, {cells} complete cells "
            f"written; run the same command again to resume{hint})"
        )
    return result


def _ask(
    cfg: EvalConfig,
    tasks: list[PairTask],
    client: TranslateClient,
    got: dict[WordRequest, WordAnswer],
    say: Callable[[str], None],
    quiet: bool,
) -> tuple[list[Job], EndpointError | None]:
    """Put every answer the run needs into `got`, from the cache or the server (started only when something
    is missing): first each pair's own route (`calibrated`), then every (word, arm) job. Returns the jobs
    and the endpoint's error, if any (what came back before it is in `got`)."""
    from tqdm.auto import tqdm

    error: EndpointError | None = None
    served = served_requests(cfg, tasks)
    with contextlib.ExitStack() as stack:
        server = started_once(stack, lambda: server_for(cfg, say))
        missing = client.cached(served, got)
        url = server() if missing else ""
        try:
            asyncio.run(client.fetch(url, missing, got))
        except EndpointError as err:
            error = err
        follow_served_routes(cfg, tasks, served, got)
        jobs = make_jobs(cfg, tasks)
        missing = client.cached([r for _key, r in jobs], got)
        if missing and error is None:
            url = server()
            bar = tqdm(total=len(missing), desc="eval", unit="word", disable=quiet, file=sys.stderr)
            try:
                asyncio.run(client.fetch(url, missing, got, bar.update))
            except EndpointError as err:
                error = err
            finally:
                bar.close()
    return jobs, error


def _score(cfg: EvalConfig, tasks: list[PairTask], answers: dict) -> tuple[list, list, list]:
    """(word cells, sentence cells, pair summaries) of what was answered: word P@1, or sentence chrF++ with
    `--task translate`; each task learns the demonstrations its prompts had."""
    for task in tasks:
        shots = [a.shots for (pair, _i, _arm), a in answers.items() if pair == task.pair]
        task.shots = min(shots) if shots else 0
    if cfg.task == "translate":
        from .sentence_results import sentence_cells

        cells, sentences = [], sentence_cells(tasks, cfg.strategies, answers)
    else:
        cells, sentences = build_cells(tasks, cfg.strategies, answers), []
    return cells, sentences, summarise(tasks, cells)


def server_for(cfg: EvalConfig, say: Callable[[str], None], index: Path | None = None, child: bool = False):
    """The BridgeX server a run asks (`client.bridgex_server`: the endpoint, or a child in front of it) with
    `cfg.index` or another `index`; `child`: always a child of its own."""
    index = cfg.index if index is None else index
    return bridgex_server(cfg.endpoint, index, cfg.api_key, cfg.concurrency, say, cfg.prompt_style, child)
