"""`bridgex-index distill`: a pair's distilled demonstrations, made offline by a bridged route (issue 20).

Per pair, source-side texts are asked through a real BridgeX server's `/v1/translate` by the bridged route
(`bridge: en` unless told otherwise: the route measured to help), exactly as `eval`'s `english` arm asks
them (same options, same answer cache in the index, so answers an evaluation already has cost nothing).
The first `k` answers, in a stable order, that are the bridge's own (no copy fallback) and clean (not
empty, not a copy of the source, no `"`, and for sentences detected as the target language) become the
pair's demonstrations: `distilled_demonstrations` in the index, which the server's `distilled` mode puts in
front of ONE direct call. Choosing them never reads a reference translation.

The check (sentences of the shipped set, `--check N`, default 40): before a set is stored, a child
`bridgex-serve` on a temporary copy of the index holding the new sets answers N other calibration-half
sentences of the pair (never its demonstrations) directly and in the distilled mode; the set is stored
only when its chrF++ gain over direct there is positive (the route policy's rule: the highest positive
expected gain), else the pair's set is removed and it is routed as before. Added after Gemma 3 270M, where
one pair's set was significantly below direct (docs/results/distilled-serving.md).

Texts: `--text-dir DIR` (monolingual `DIR/<source>.txt`, one text per line, file order), else for sentences
the calibration half of the shipped sentence set (never the evaluation half `eval --words evaluation`
judges on), for words the index's probe-split dictionary words of the pair.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from bridgex_index.results import ResultStore
from bridgex_index.store import write_distilled
from bridgex_index.words import normalise_word

from .client import (
    EndpointError,
    EvaluationError,
    TranslateClient,
    WordAnswer,
    WordRequest,
    started_once,
    word_request,
)
from .config import EvalConfig, Pair
from .held_out import oriented_entries, stable_order, word_half
from .sentence_scoring import CHRF_PP, Comparison, paired_bootstrap_mean
from .tasks import (
    DISTILLED_ARM,
    IndexData,
    PairTask,
    arm_context,
    arm_options,
    check_pair_languages,
    fingerprint,
    read_index,
)

DEFAULT_K = 6  # demonstrations per pair (the measured configuration: docs/results/beyond-route.md)
DEFAULT_MAX_TEXTS = 40  # texts asked per pair at most
DEFAULT_CHECK = 40  # check sentences per pair
MIN_CHECK = 10  # fewer check sentences than this: the set is stored unchecked
TASKS = ("translate", "word")
TEXT_PREVIEW = 60  # characters of a demonstration shown in the report


@dataclass(frozen=True)
class SourceText:
    """One source-side text, where it came from (stored as the demonstration's `text_source`) and its
    reference translation when the text comes from a parallel set (read by the check only)."""

    text: str
    origin: str
    reference: str | None = None


@dataclass
class PairDistillation:
    """What one pair's distillation asked, kept and rejected."""

    pair: Pair
    asked: int = 0
    kept: list[tuple[SourceText, str]] = field(default_factory=list)
    rejected: dict[str, int] = field(default_factory=dict)
    checked: Comparison | None = None  # distilled − direct chrF++ on the check sentences (None: unchecked)
    unchecked: str = ""  # why there was no check

    @property
    def stored(self) -> bool:
        """The set goes into the index: some demonstrations, and a check (if any) with a positive gain."""
        return bool(self.kept) and (self.checked is None or self.checked.delta > 0)

    @property
    def name(self) -> str:
        return f"{self.pair[0]}→{self.pair[1]}"


def rejection(source: str, answer: WordAnswer, target: str, task: str, detect) -> str | None:
    """Why an answer cannot be a demonstration (None: it can): the direct route answered after a copy,
    it is empty, a copy of the source, has a `"` (it would close the prompt's answer), or (sentences) is
    not detected as the target language."""
    if answer.fallback is not None:
        return "copy fallback"
    said = normalise_word(answer.answer)
    if not said:
        return "empty"
    if said == normalise_word(source):
        return "copy of the source"
    if '"' in answer.answer:
        return "quote"
    if task == "translate" and detect(answer.answer) != target:
        return "not the target language"
    return None


def read_text_file(path: Path) -> list[SourceText]:
    """The texts of a monolingual file: one per non-empty line, stripped, first occurrence only."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise EvaluationError(f"--text-dir: cannot read {path}: {err.strerror or err}") from None
    try:
        lines = data.decode("utf-8-sig").splitlines()  # a byte-order mark is not text
    except UnicodeDecodeError:
        raise EvaluationError(f"--text-dir: {path} is not UTF-8 text") from None
    sha = hashlib.sha256(data).hexdigest()[:12]
    seen: set[str] = set()
    out = []
    for number, line in enumerate(lines, start=1):
        text = " ".join(line.split())
        if text and text not in seen:
            seen.add(text)
            out.append(SourceText(text, f"{path.name} sha256:{sha} line {number}"))
    return out


def source_texts(task: str, pair: Pair, text_dir: Path | None, data: IndexData) -> list[SourceText]:
    """The pair's candidate texts in the order they are asked (see the module docstring)."""
    s, t = pair
    if text_dir is not None:
        path = Path(text_dir) / f"{s}.txt"
        if not path.is_file():
            raise EvaluationError(f"--text-dir: no {path} (one {s} text per line)")
        texts = read_text_file(path)
        if not texts:
            raise EvaluationError(f"--text-dir: {path} has no text")
        return texts
    if task == "word":
        words = sorted({w for w, _gold in oriented_entries(data.entries, pair, "probe")})
        return [SourceText(w, "index probe words") for w in stable_order(s, t, words)]
    from .testsets import TestSetError, shipped_sentences

    try:
        shipped = shipped_sentences([s, t])
        lines = {p.source: p for p in shipped.pair(s, t)}
    except TestSetError as err:
        raise EvaluationError(f"--pairs {s}-{t}: the shipped sentence set: {err}") from None
    half = word_half(pair, stable_order(s, t, list(lines)), "calibration")
    origin = f"{shipped.name} sha256:{shipped.sha256[:12]} calibration half, line"
    return [SourceText(text, f"{origin} {lines[text].line}", lines[text].target) for text in half]


@dataclass
class DistillConfig:
    """Every parameter of one `bridgex-index distill`."""

    eval: EvalConfig  # index, endpoint, model, pairs, task, mode, shots, asking (copy fallback on)
    bridge: str = "en"
    k: int = DEFAULT_K
    max_texts: int = DEFAULT_MAX_TEXTS
    text_dir: Path | None = None
    check: int = DEFAULT_CHECK  # check sentences per pair (0: no check)


def check(cfg: DistillConfig, data: IndexData) -> None:
    """Bad input, before any call: an EvaluationError with one line."""
    if cfg.eval.task not in TASKS:
        raise EvaluationError(f"--task {cfg.eval.task!r} is not one of {', '.join(TASKS)}")
    if cfg.k < 1:
        raise EvaluationError(f"--k must be at least 1, got {cfg.k}")
    if cfg.max_texts < cfg.k:
        raise EvaluationError(f"--max-texts ({cfg.max_texts}) must be at least --k ({cfg.k})")
    if cfg.check < 0:
        raise EvaluationError(f"--check must be 0 or more, got {cfg.check}")
    if cfg.text_dir is not None and not Path(cfg.text_dir).is_dir():
        raise EvaluationError(f"--text-dir {cfg.text_dir} is not a directory")
    if cfg.bridge not in data.names:
        known = ", ".join(sorted(data.names))
        raise EvaluationError(f"--bridge {cfg.bridge!r} is not in this index (languages: {known})")
    check_pair_languages(cfg.eval.pairs, data)
    for s, t in cfg.eval.pairs:
        if cfg.bridge in (s, t):
            raise EvaluationError(f"--pairs {s}-{t}: the bridge {cfg.bridge!r} is the source or the target")


def distill(cfg: DistillConfig, say: Callable[[str], None] | None = None) -> list[PairDistillation]:
    """Ask, choose, check and store every pair's demonstrations (module docstring). A pair with no clean
    answer keeps whatever set it had. Raises EvaluationError on bad input (before any call) and
    EndpointError when the endpoint fails (answers so far are cached; no set is written: the sets are
    written together once every pair is asked and checked)."""
    from bridgex_index.detect import make_detector

    from .run import server_for, translate_client

    say = say or (lambda msg: print(msg, file=sys.stderr))
    data = read_index(Path(cfg.eval.index), cfg.eval.task)
    check(cfg, data)
    texts = {pair: source_texts(cfg.eval.task, pair, cfg.text_dir, data) for pair in cfg.eval.pairs}
    store = ResultStore(Path(cfg.eval.index))
    client = translate_client(cfg.eval, data, store)
    detect = make_detector({code for pair in cfg.eval.pairs for code in pair})
    results = []
    with contextlib.ExitStack() as stack:
        server = started_once(stack, lambda: server_for(cfg.eval, say))

        def ask(requests: Sequence[WordRequest]) -> dict[WordRequest, WordAnswer]:
            return answers(client, server, requests)

        for pair in cfg.eval.pairs:
            result = distill_pair(cfg, pair, texts[pair], ask, detect)
            results.append(result)
            say(
                f"{result.name}: {len(result.kept)} demonstrations from {result.asked} texts"
                + "".join(f", {n} {why}" for why, n in sorted(result.rejected.items()))
            )
    check_sets(cfg, [r for r in results if r.kept], texts, client, say)
    with store.connect() as con:
        for r in results:
            if r.stored:
                write_distilled(con, *r.pair, cfg.eval.task, rows(cfg, r.pair, r))
            elif r.kept:  # the check found no gain: the pair is routed as before any set
                write_distilled(con, *r.pair, cfg.eval.task, [])
    return results


def arm_requests(
    cfg: EvalConfig, task: PairTask, arm: str | None, texts: Sequence[SourceText]
) -> list[WordRequest]:
    """The `/v1/translate` request of each text by one arm, as `eval` asks it (options and cache key)."""
    options = arm_options(cfg, task, arm)
    return [word_request(t.text, options, arm_context(task, arm)) for t in texts]


def answers(
    client: TranslateClient, server: Callable[[], str], requests: Sequence[WordRequest]
) -> dict[WordRequest, WordAnswer]:
    """Every request's answer: from the cache, else asked at `server()` (called only when one is missing);
    what came back is in the cache even when the endpoint fails."""
    got: dict[WordRequest, WordAnswer] = {}
    missing = client.cached(requests, got)
    if missing:
        try:
            asyncio.run(client.fetch(server(), missing, got))
        finally:
            client.cache.flush()
    return got


def check_sets(
    cfg: DistillConfig,
    results: Sequence[PairDistillation],
    texts: dict[Pair, list[SourceText]],
    client: TranslateClient,
    say: Callable[[str], None],
) -> None:
    """The check of the module docstring: sets `checked` (or `unchecked`) on each result. The new sets go
    into a temporary copy of the index only, served by a child `bridgex-serve` of their own."""
    from .run import server_for

    samples = {}
    for r in results:
        if cfg.check == 0:
            r.unchecked = "--check 0"
        elif cfg.eval.task != "translate" or cfg.text_dir is not None:
            r.unchecked = "no reference translations (words, or --text-dir)"
        else:
            used = {text.text for text, _answer in r.kept}
            sample = [t for t in texts[r.pair] if t.reference and t.text not in used][: cfg.check]
            if len(sample) < MIN_CHECK:
                r.unchecked = f"{len(sample)} check sentences (fewer than {MIN_CHECK})"
            else:
                samples[r.pair] = sample
    if not samples:
        return
    eval_cfg = cfg.eval
    with tempfile.TemporaryDirectory(prefix="bridgex-distill-") as tmp:
        copy = Path(tmp) / Path(eval_cfg.index).name
        shutil.copyfile(eval_cfg.index, copy)
        sets = {r.pair: rows(cfg, r.pair, r) for r in results if r.pair in samples}
        with ResultStore(copy).connect() as con:
            for pair, set_rows in sets.items():
                write_distilled(con, *pair, eval_cfg.task, set_rows)
        say(f"checking {len(samples)} sets against direct on other calibration-half sentences")
        with contextlib.ExitStack() as stack:
            server = started_once(stack, lambda: server_for(eval_cfg, say, index=copy, child=True))
            for r in results:
                sample = samples.get(r.pair)
                if sample is None:
                    continue
                # the pair's task as `eval` plans it: the same requests and cache keys
                task = PairTask(r.pair[0], r.pair[1], [], [], [])
                task.distilled = fingerprint(sets[r.pair])
                direct = arm_requests(eval_cfg, task, None, sample)
                distilled = arm_requests(eval_cfg, task, DISTILLED_ARM, sample)
                got = answers(client, server, [*direct, *distilled])
                r.checked = paired_bootstrap_mean(
                    CHRF_PP,
                    [
                        (
                            [got[q].answer for q in distilled],
                            [got[q].answer for q in direct],
                            [t.reference or "" for t in sample],
                            r.pair[1],
                        )
                    ],
                )


def distill_pair(
    cfg: DistillConfig,
    pair: Pair,
    texts: Sequence[SourceText],
    ask: Callable[[Sequence[WordRequest]], dict[WordRequest, WordAnswer]],
    detect: Callable[[str], str | None],
) -> PairDistillation:
    """Ask the pair's texts in rounds of 2k (at most `max_texts`) until k clean answers are kept."""
    result = PairDistillation(pair)
    task = PairTask(pair[0], pair[1], [], [], [])
    step = 2 * cfg.k
    pool = list(texts[: cfg.max_texts])
    for start in range(0, len(pool), step):
        chunk = pool[start : start + step]
        requests = arm_requests(cfg.eval, task, cfg.bridge, chunk)
        answers = ask(requests)
        result.asked += len(chunk)
        for text, request in zip(chunk, requests, strict=True):
            why = rejection(text.text, answers[request], pair[1], cfg.eval.task, detect)
            if why is not None:
                result.rejected[why] = result.rejected.get(why, 0) + 1
            elif len(result.kept) < cfg.k:
                result.kept.append((text, answers[request].answer))
        if len(result.kept) >= cfg.k:
            break
    return result


def rows(cfg: DistillConfig, pair: Pair, result: PairDistillation) -> list[dict]:
    """The pair's `distilled_demonstrations` rows."""
    created = datetime.now(timezone.utc)
    return [
        {
            "source": pair[0],
            "target": pair[1],
            "task": cfg.eval.task,
            "position": i,
            "source_text": text.text,
            "target_text": " ".join(answer.split()),
            "route": cfg.bridge,
            "model": cfg.eval.model,
            "text_source": text.origin,
            "created_at": created,
        }
        for i, (text, answer) in enumerate(result.kept)
    ]


def remove_sets(index: Path, pairs: Sequence[Pair], task: str) -> int:
    """Delete the distilled sets of `pairs` for `task` (the server then routes them as before); the number
    of demonstrations removed."""
    read_index(Path(index))  # a missing or invalid file: an error, never a new file
    with ResultStore(Path(index)).connect() as con:
        before = con.execute(
            "SELECT count(*) FROM distilled_demonstrations WHERE task = ?", [task]
        ).fetchone()[0]
        for s, t in pairs:
            write_distilled(con, s, t, task, [])
        after = con.execute(
            "SELECT count(*) FROM distilled_demonstrations WHERE task = ?", [task]
        ).fetchone()[0]
    return int(before - after)


def report_lines(results: Sequence[PairDistillation]) -> list[str]:
    """What the command prints: per pair, the demonstrations kept (shortened)."""
    out = []
    for r in results:
        if not r.kept:
            out.append(f"{r.name}: no clean answer among {r.asked} texts; the pair's set is unchanged")
            continue
        if r.checked is not None:
            c = r.checked
            verdict = "stored" if r.stored else "NOT stored: no gain, the pair's set is removed"
            gain = f"distilled − direct {c.delta:+.2f} chrF++ [{c.low:+.2f}, {c.high:+.2f}]"
            check = f"; {gain} on {c.n} check sentences: {verdict}"
        else:
            check = f"; unchecked ({r.unchecked}): stored"
        out.append(f"{r.name}: {len(r.kept)} demonstrations{check}")
        for text, answer in r.kept:
            out.append(f"  {_short(text.text)}  →  {_short(answer)}")
    return out


def _short(text: str) -> str:
    return text if len(text) <= TEXT_PREVIEW else text[: TEXT_PREVIEW - 1] + "…"


__all__ = ["DistillConfig", "EndpointError", "distill", "remove_sets", "report_lines"]
