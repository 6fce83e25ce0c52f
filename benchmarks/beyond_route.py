"""Beyond one route per pair (issue 20): is there headroom in choosing the route per sentence?

Stage `oracle` (offline, no model): every answer comes from the index's answer cache (`eval_answers`),
written by `benchmarks/route_policy.py --task translate` (direct, the English pivot and the index's best
`--top` HSIC bridges of every pair, on the same shipped sentences). The measured routes are re-read through
`bridgex-index eval`'s own machinery on a temporary copy of the index (so the index itself is not written);
a missing answer is an error, never a call. Per pair, and over all pairs (sentences pooled; mean over pairs):
- corpus chrF++ of direct, the English pivot and the best single route (chosen with hindsight on all the
  pair's sentences: the strongest single-route baseline);
- the per-sentence oracle (per sentence the candidate with the highest sentence chrF++ against the
  reference) over the best-of candidates (direct, English, then the index's HSIC-ranked bridges, at most
  `--candidates`), and over every measured route; headroom = oracle − best single route;
- MBR consensus over the best-of candidates (per sentence the candidate with the highest mean sentence
  chrF++ against the other candidates; no reference; ties to direct): its gain over the best single route
  and over direct;
with 95% paired-bootstrap intervals (resampling sentences; mean over pairs: within each pair). Also: copies
of the source and wrong-language answers (the proxy's lingua detector) per route and among the selections,
and what the candidates generate (answer plus bridge text characters) against direct.

Ends with `RESULT ...` (figures: mean over pairs). Run (from the cached answers of the route-policy run):
    .venv/bin/python benchmarks/beyond_route.py --index artifacts/policy/qwen.duckdb \
        --name qwen2.5-coder-1.5b-instruct --pairs ar-fr,ar-de,he-fr,he-de,sw-fr,sw-es,ja-fr,id-fr \
        --limit 40 --top 2

Stage `scored` (the oracle stage first, then the model): the same cached candidates scored by the model
itself through vLLM (started on `--model-dir`, or `--endpoint` of a running server on the same model),
forced decoding with `prompt_logprobs`. Per sentence and candidate, on the server's own direct prompt (built
by bridgex_serve's planner and prompt code from the index, as a `/v1/translate` request with `route:
direct` gets it): forward = mean log P(candidate + closing quote | source → target prompt), round-trip =
mean log P(source + closing quote | target → source prompt of the candidate), and their sum; per sentence
the best-scoring candidate that is not a copy or in another language (`best_of.scored_choice`; all
flagged: the best of all; ties to direct). Reported as above (gain over the best single route, direct and
English with intervals; which candidate wins), plus the cost in tokens per sentence (the candidates' own
calls rebuilt with the model's tokenizer, and the scoring prompts) and the scoring's wall time; ends with a
second line `RESULT stage=scored ...`:
    .venv/bin/python benchmarks/beyond_route.py --stage scored ... \
        --model-dir .cache/bridgex/models/qwen2.5-coder-1.5b-instruct
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bridgex_index.detect import make_detector
from bridgex_index.words import normalise_word
from index_builder.evaluation.best_of import (
    DIRECT,
    candidates,
    combined,
    consensus_choice,
    mean_logprob,
    oracle_choice,
    pick,
    scored_choice,
    span_start,
)
from index_builder.evaluation.client import WordAnswer, base_url
from index_builder.evaluation.config import EvalConfig, parse_pairs
from index_builder.evaluation.run import count_requests, evaluate
from index_builder.evaluation.sentence_scoring import (
    CHRF_PP,
    DEFAULT_BOOTSTRAP,
    DEFAULT_SEED,
    Comparison,
    corpus_score,
    diagnose,
    paired_bootstrap,
    paired_bootstrap_mean,
    sentence_scores,
)
from index_builder.evaluation.tasks import PairTask, arm_options

NOWHERE = "http://127.0.0.1:9/v1"  # never asked: every answer must be cached (checked before the run)
POOLED = ""  # chrF++ does not depend on the target language (only BLEU's tokenizer does)


@dataclass
class PairAnswers:
    """One pair's sentences and every measured route's answers, routes in candidate order."""

    source: str
    target: str
    sources: list[str]
    references: list[str]
    answers: dict[str, list[str]]  # route (direct, en, bridge) → answer per sentence
    generated: dict[str, int]  # route → characters generated over the sentences (answer + bridge text)
    hsic: list[str]  # the pair's measured bridges in the index's HSIC order
    task: PairTask | None = None  # the evaluation's pair (its options rebuild the server's prompts)
    replies: dict[str, list[WordAnswer]] = field(
        default_factory=dict
    )  # route → the cached reply per sentence

    @property
    def name(self) -> str:
        return f"{self.source}→{self.target}"


@contextlib.contextmanager
def index_copy(cfg: EvalConfig) -> Iterator[EvalConfig]:
    """`cfg` on a temporary copy of its index (evaluation writes to the index it reads; the original is never
    written), removed on exit."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / cfg.index.name
        shutil.copyfile(cfg.index, copy)
        yield dataclasses.replace(cfg, index=copy)


def load(cfg: EvalConfig) -> list[PairAnswers]:
    """Every measured answer of the run `cfg` describes, from the answer cache of its index (give a copy:
    `index_copy`); a missing answer is an error, never a call."""
    asked, cached = count_requests(cfg, log=lambda msg: None)
    if cached < asked:
        raise SystemExit(
            f"error: {asked - cached} of {asked} answers are not cached in the index; run "
            "benchmarks/route_policy.py --task translate with the same pairs, --limit and --top first"
        )
    result = evaluate(cfg, quiet=True, log=lambda msg: None)
    out = []
    for task in result.tasks:
        n = len(task.words)
        said = {
            (DIRECT if arm is None else arm): [result.answers[(task.pair, i, arm)] for i in range(n)]
            for arm in task.arms
        }
        order = [DIRECT, "en", *(c.bridge for c in task.candidates)]
        routes = [r for r in dict.fromkeys(order) if r in said]
        out.append(
            PairAnswers(
                task.source,
                task.target,
                [w.word for w in task.words],
                [w.golds[0] for w in task.words],
                {r: [a.answer for a in said[r]] for r in routes},
                {r: sum(len(a.answer) + len(a.bridge_text or "") for a in said[r]) for r in routes},
                [c.bridge for c in task.candidates if c.bridge in said],
                task,
                {r: said[r] for r in routes},
            )
        )
    return out


# ------------------------------------------------------------------------------------------- one pair


@dataclass
class Judged:
    """One pair's selections (name → route per sentence) and their answers."""

    pair: PairAnswers
    scores: dict[str, float]  # route → corpus chrF++
    best: str  # the best single route, with hindsight
    top: list[str]  # the best-of candidates
    choices: dict[str, list[str]] = field(default_factory=dict)  # selection → route per sentence
    hyps: dict[str, list[str]] = field(default_factory=dict)  # selection or route → answers

    def score(self, name: str) -> float:
        return corpus_score(CHRF_PP, self.hyps[name], self.pair.references, self.pair.target)


def judge(p: PairAnswers, limit: int) -> Judged:
    points = {r: sentence_scores(CHRF_PP, a, p.references, p.target) for r, a in p.answers.items()}
    scores = {r: corpus_score(CHRF_PP, a, p.references, p.target) for r, a in p.answers.items()}
    best = max(scores, key=lambda r: (scores[r], r == DIRECT))
    top = candidates(list(p.answers), p.hsic, limit)
    j = Judged(p, scores, best, top)
    j.choices = {
        "oracle": oracle_choice({r: points[r] for r in top}),
        "oracle_all": oracle_choice(points),
        "mbr": consensus_choice({r: p.answers[r] for r in top}),
        "mbr_all": consensus_choice(p.answers),
    }
    j.hyps = {r: list(a) for r, a in p.answers.items()}
    j.hyps["best"] = p.answers[best]
    j.hyps["english"] = p.answers.get("en", p.answers[DIRECT])
    for name, choice in j.choices.items():
        j.hyps[name] = pick(p.answers, choice)
    return j


# ------------------------------------------------------------------------------------------- reporting

COMPARISONS = (  # (label, selection, baseline)
    ("oracle − best", "oracle", "best"),
    ("oracle_all − best", "oracle_all", "best"),
    ("mbr − best", "mbr", "best"),
    ("mbr − direct", "mbr", DIRECT),
    ("mbr − english", "mbr", "english"),
    ("mbr_all − best", "mbr_all", "best"),
)


def interval(c: Comparison, digits: int = 1) -> str:
    return f"{c.delta:+.{digits}f} [{c.low:+.{digits}f}, {c.high:+.{digits}f}]"


def compare_pair(j: Judged, a: str, b: str, n_boot: int, seed: int) -> Comparison:
    return paired_bootstrap(CHRF_PP, j.hyps[a], j.hyps[b], j.pair.references, j.pair.target, n_boot, seed)


def compare_pooled(judged: Sequence[Judged], a: str, b: str, n_boot: int, seed: int) -> Comparison:
    mine = [h for j in judged for h in j.hyps[a]]
    theirs = [h for j in judged for h in j.hyps[b]]
    refs = [r for j in judged for r in j.pair.references]
    return paired_bootstrap(CHRF_PP, mine, theirs, refs, POOLED, n_boot, seed)


def compare_mean(judged: Sequence[Judged], a: str, b: str, n_boot: int, seed: int) -> Comparison:
    groups = [(j.hyps[a], j.hyps[b], j.pair.references, j.pair.target) for j in judged]
    return paired_bootstrap_mean(CHRF_PP, groups, n_boot, seed)


def flags(p: PairAnswers, detect: Callable[[str], str | None]) -> dict[str, list[tuple[bool, bool]]]:
    """Route → per sentence (a copy of the source, in another language than the target), as eval counts."""
    out = {}
    for route, said in p.answers.items():
        rows = []
        for s, a, r in zip(p.sources, said, p.references, strict=True):
            d = diagnose([s], [a], [r], p.target, normalise_word, detect)
            rows.append((d.copies > 0, d.wrong_language > 0))
        out[route] = rows
    return out


def flag_tally(judged: Sequence[Judged], detect: Callable[[str], str | None]) -> Counter:
    """Counts of copies (`copy`), wrong-language answers (`wrong`) and answers (`n`) per route kind (direct,
    en, bridge) and over the best-of candidates (`top`); per selection (oracle, mbr): the copies and
    wrong-language answers it picks, the sentences where it picks either (`flagged`) and, of those, the
    ones with a clean candidate (`avoidable`)."""
    tally: Counter = Counter()
    for j in judged:
        f = flags(j.pair, detect)
        for route, rows in f.items():
            for kind in (
                route if route in (DIRECT, "en") else "bridge",
                *(("top",) if route in j.top else ()),
            ):
                tally[kind, "copy"] += sum(c for c, _w in rows)
                tally[kind, "wrong"] += sum(w for _c, w in rows)
                tally[kind, "n"] += len(rows)
        for name in ("oracle", "mbr"):
            for i, route in enumerate(j.choices[name]):
                copy, wrong = f[route][i]
                tally[name, "copy"] += copy
                tally[name, "wrong"] += wrong
                if copy or wrong:
                    tally[name, "flagged"] += 1
                    tally[name, "avoidable"] += any(not any(f[r][i]) for r in j.top)
    return tally


def report_oracle(judged: Sequence[Judged], args: argparse.Namespace) -> None:
    """Stage `oracle`: the per-sentence oracle and MBR against the single routes; its RESULT line."""
    boot, seed = args.boot, args.seed
    n = sum(len(j.pair.references) for j in judged)
    print(
        f"== {len(judged)} pairs, {n} sentences, chrF++ (corpus); candidates ≤ {args.candidates}: "
        f"direct, English, HSIC-ranked bridges; intervals: 95% paired bootstrap, {boot} resamples",
        flush=True,
    )
    for j in judged:
        measured = ", ".join(f"{r} {j.scores[r]:.1f}" for r in j.pair.answers)
        print(f"  {j.pair.name}: measured {measured}; best-of candidates {', '.join(j.top)}")
    print(
        f"  {'pair':6} {'direct':>6} {'en':>5} {'best single':>12} {'oracle':>6} {'oracle − best':>21} "
        f"{'all':>5} {'all − best':>21} {'MBR':>5} {'MBR − best':>21} {'MBR − direct':>21}"
    )
    for j in judged:
        c = {label: compare_pair(j, a, b, boot, seed) for label, a, b in COMPARISONS}
        best = f"{j.best} {j.scores[j.best]:.1f}"
        print(
            f"  {j.pair.name:6} {j.scores[DIRECT]:6.1f} {j.score('english'):5.1f} {best:>12} "
            f"{j.score('oracle'):6.1f} {interval(c['oracle − best']):>21} {j.score('oracle_all'):5.1f} "
            f"{interval(c['oracle_all − best']):>21} {j.score('mbr'):5.1f} {interval(c['mbr − best']):>21} "
            f"{interval(c['mbr − direct']):>21}",
            flush=True,
        )
    names = ("direct", "english", "best", "oracle", "oracle_all", "mbr", "mbr_all")
    pooled_scores = {
        name: corpus_score(
            CHRF_PP,
            [h for j in judged for h in j.hyps[name]],
            [r for j in judged for r in j.pair.references],
            POOLED,
        )
        for name in names
    }
    mean_scores = {name: float(np.mean([j.score(name) for j in judged])) for name in names}
    pooled = {label: compare_pooled(judged, a, b, boot, seed) for label, a, b in COMPARISONS}
    mean = {label: compare_mean(judged, a, b, boot, seed) for label, a, b in COMPARISONS}
    for title, scores, comps in (("pooled", pooled_scores, pooled), ("mean over pairs", mean_scores, mean)):
        print(f"== overall, {title}: " + ", ".join(f"{k} {v:.2f}" for k, v in scores.items()))
        for label, _a, _b in COMPARISONS:
            print(f"  {label:18} {interval(comps[label], 2)}")
    print("== which candidate each selection takes (sentences; 'bridge': an HSIC-ranked bridge, not en)")
    for name in ("oracle", "mbr"):
        kinds = Counter(
            (r if r in (DIRECT, "en") else "bridge") for j in judged for r in j.choices[name]
        )  # fmt: skip
        best_share = sum(r == j.best for j in judged for r in j.choices[name])
        print(f"  {name:6} {dict(kinds)}; the pair's best single route {best_share} of {n}")
    agree = sum(a == b for j in judged for a, b in zip(j.choices["oracle"], j.choices["mbr"], strict=True))
    print(f"  MBR takes the oracle's candidate on {agree} of {n} sentences")
    tally = flag_tally(
        judged, make_detector({code for j in judged for code in (j.pair.source, j.pair.target)})
    )
    print("== copies of the source / wrong-language answers (lingua, the proxy's detector), per route kind")
    for kind in (DIRECT, "en", "bridge"):
        copies, wrong, answers = tally[kind, "copy"], tally[kind, "wrong"], tally[kind, "n"]
        print(f"  {kind:6} {copies} copies, {wrong} wrong language of {answers}")
    print(
        f"  best-of candidates: {tally['top', 'copy']} copies, {tally['top', 'wrong']} wrong language of"
        f" {tally['top', 'n']} answers"
    )
    for name in ("mbr", "oracle"):
        print(
            f"  {name} picks {tally[name, 'copy']} copies and {tally[name, 'wrong']} wrong-language answers"
            f" ({tally[name, 'flagged']} sentences; {tally[name, 'avoidable']} had a clean candidate)"
        )
    ratio = float(
        np.mean([sum(j.pair.generated[r] for r in j.top) / j.pair.generated[DIRECT] for j in judged])
    )
    print(
        f"== characters generated (answers + bridge texts) by the best-of candidates / direct: {ratio:.2f}x "
        "(mean over pairs; output characters, not tokens; prompts not counted)"
    )
    m = mean
    print(
        f"RESULT stage=oracle pairs={len(judged)} sentences={n} candidates={args.candidates}"
        f" direct={mean_scores['direct']:.2f} english={mean_scores['english']:.2f}"
        f" best_single={mean_scores['best']:.2f} oracle={mean_scores['oracle']:.2f}"
        f" headroom={m['oracle − best'].delta:.2f} headroom_lo={m['oracle − best'].low:.2f}"
        f" headroom_hi={m['oracle − best'].high:.2f} oracle_all={mean_scores['oracle_all']:.2f}"
        f" headroom_all={m['oracle_all − best'].delta:.2f}"
        f" pooled_headroom={pooled['oracle − best'].delta:.2f}"
        f" mbr={mean_scores['mbr']:.2f} mbr_vs_best={m['mbr − best'].delta:.2f}"
        f" mbr_vs_best_lo={m['mbr − best'].low:.2f} mbr_vs_best_hi={m['mbr − best'].high:.2f}"
        f" mbr_vs_direct={m['mbr − direct'].delta:.2f} mbr_vs_direct_lo={m['mbr − direct'].low:.2f}"
        f" mbr_vs_direct_hi={m['mbr − direct'].high:.2f} mbr_vs_english={m['mbr − english'].delta:.2f}"
        f" copies={tally['top', 'copy']} wrong_language={tally['top', 'wrong']}"
        f" mbr_flagged={tally['mbr', 'flagged']} generated_ratio={ratio:.2f}"
    )


# ------------------------------------------------------------------------------------------- scored stage

SELECTORS = ("forward", "roundtrip", "sum")
# What follows an answer in the server's completion prompts (a demonstration's line end): scored with the
# answer, so a candidate the model would not end there (a truncated or run-on answer) pays for it.
CLOSE = '"\n'
SCORED_COMPARISONS = tuple(
    (f"{name} − {base}", name, key)
    for name in SELECTORS
    for base, key in (("best", "best"), ("direct", DIRECT), ("english", "english"))
)


class ServerPrompts:
    """The text bridgex-serve sends upstream for the cached run's `/v1/translate` requests, built by the
    server's own code: `plan_request` on the index with the options evaluation sent (`arm_options`), and
    its prompt builders. A scoring prompt is thus the prompt a request would use."""

    def __init__(self, cfg: EvalConfig):
        from bridgex_serve.service import Runtime

        self.cfg = cfg
        self.runtime = Runtime.load(str(cfg.index), prompt_style=cfg.prompt_style)
        style = self.runtime.prompt_styles.get("translate", "completion")
        if style != "completion":
            raise SystemExit(
                f"error: stage scored builds completion prompts; sentences are asked {style}-style"
            )

    def plan(self, task: PairTask, arm: str | None, text: str, reverse: bool = False):
        """The server's plan of one `/v1/translate` text (`reverse`: target → source); None for an empty
        text (the server refuses it)."""
        from bridgex_serve.options import TRANSLATE_OPTIONS, RequestError, parse_options
        from bridgex_serve.plan import plan_request

        if reverse:
            task = dataclasses.replace(task, source=task.target, target=task.source)
        body = arm_options(self.cfg, task, arm)
        options = parse_options({k: body[k] for k in TRANSLATE_OPTIONS if k in body})
        rt = self.runtime
        try:
            return plan_request(
                options,
                text,
                index=rt.index,
                low_resource=rt.low_resource,
                detect=rt.detect,  # type: ignore[arg-type]
                force=True,
                prompt_style=rt.prompt_styles,
            )
        except RequestError:
            return None

    def direct(self, task: PairTask, text: str, reverse: bool = False) -> str | None:
        """The direct route's prompt (`{S}:"text"→{T}:"` after its demonstrations)."""
        from bridgex_serve.prompts import bridge_prompt

        plan = self.plan(task, None, text, reverse)
        return None if plan is None else bridge_prompt(plan)

    def calls(self, task: PairTask, route: str, text: str, reply: WordAnswer) -> list[tuple[str, str]]:
        """(prompt, generated text) of each upstream call the cached `reply` took, rebuilt (the cache keeps
        no token counts): direct one call; chain one call writing `b"→{T}:"t`, or a second call for the
        answer when the first stopped after the bridge; the copy fallback one more direct call (the bridged
        answer it replaced is not cached: counted as long as the answer). Generation ends with the
        answer's closing quote (direct, answer calls) or line end (chain)."""
        from bridgex_serve.prompts import answer_prompt, bridge_close, bridge_prompt

        direct = self.direct(task, text) or ""
        if route == DIRECT:
            return [(direct, reply.answer + '"')]
        plan = self.plan(task, route, text)
        assert plan is not None
        bridge = reply.bridge_text or ""
        fallback = reply.fallback == "copy"
        if reply.calls - fallback <= 1:
            out = [(bridge_prompt(plan), bridge + bridge_close(plan) + reply.answer + CLOSE)]
        else:
            out = [(bridge_prompt(plan), bridge + '"'), (answer_prompt(plan, bridge), reply.answer + '"')]
        if fallback:
            out.append((direct, reply.answer + '"'))
        return out


@dataclass
class Forced:
    """One scoring prompt: the prompt a request would use, then the scored text forced after it."""

    prefix: list[int]
    full: list[int]
    score: float = -np.inf  # mean log-probability of the scored text's tokens (`best_of.mean_logprob`)


def prompt_logprobs(ids: Sequence[int], reply: Sequence) -> list[float | None]:
    """Per prompt token its log-probability, from vLLM's `prompt_logprobs` (token id → {logprob, ...} per
    position, None first)."""
    if len(reply) != len(ids):
        raise RuntimeError(f"vLLM scored {len(reply)} of {len(ids)} prompt tokens")
    return [None if row is None else row[str(t)]["logprob"] for t, row in zip(ids, reply, strict=True)]


async def force(
    url: str,
    model: str,
    prompts: Sequence[Forced],
    batch: int,
    concurrency: int,
    timeout: float,
    progress: Callable[[int], None],
) -> None:
    """Score every prompt's forced text through vLLM's completions API (`prompt_logprobs: 0`: each prompt
    token's own log-probability; one generated token, unused), `batch` prompts per request (token ids, as
    tokenized here), at most `concurrency` requests in flight."""
    import httpx

    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(timeout, connect=10.0)) as client:

        async def one(chunk: Sequence[Forced]) -> None:
            body = {
                "model": model,
                "prompt": [f.full for f in chunk],
                "max_tokens": 1,
                "temperature": 0.0,
                "prompt_logprobs": 0,
            }
            async with gate:
                response = await client.post("/v1/completions", json=body)
            if response.status_code != 200:
                raise RuntimeError(f"vLLM answered {response.status_code}: {response.text[:500]}")
            choices = sorted(response.json()["choices"], key=lambda c: c["index"])
            for f, choice in zip(chunk, choices, strict=True):
                logprobs = prompt_logprobs(f.full, choice["prompt_logprobs"])
                f.score = mean_logprob(logprobs, span_start(f.prefix, f.full))
            progress(len(chunk))

        await asyncio.gather(*(one(prompts[i : i + batch]) for i in range(0, len(prompts), batch)))


@dataclass
class Scored:
    """Per pair: route → per sentence, the forward and round-trip scoring prompts (None: no prompt, an
    empty answer) and the tokens of the candidate's own upstream calls (prompt, generated)."""

    forward: dict[str, list[Forced | None]]
    roundtrip: dict[str, list[Forced | None]]
    tokens: dict[str, list[tuple[int, int]]]

    def scores(self, kind: str) -> dict[str, list[float]]:
        table = self.forward if kind == "forward" else self.roundtrip
        return {r: [-np.inf if f is None else f.score for f in col] for r, col in table.items()}


def scoring_prompts(
    j: Judged, prompts: ServerPrompts, encode: Callable[[str], list[int]], unique: dict[str, Forced]
) -> Scored:
    """A pair's scoring prompts for its best-of candidates (identical ones shared through `unique`):
    forward: the direct prompt of the source sentence, the candidate forced as the answer; round-trip: the
    direct prompt translating the candidate back (target → source), the source sentence forced."""
    p = j.pair
    assert p.task is not None

    def forced(prefix: str | None, text: str) -> Forced | None:
        if prefix is None:
            return None
        if prefix + text not in unique:
            unique[prefix + text] = Forced(encode(prefix), encode(prefix + text))
        return unique[prefix + text]

    out = Scored({}, {}, {})
    for r in j.top:
        direct = [prompts.direct(p.task, s) for s in p.sources]
        out.forward[r] = [forced(d, a + CLOSE) for d, a in zip(direct, p.answers[r], strict=True)]
        back = [prompts.direct(p.task, a, reverse=True) for a in p.answers[r]]
        out.roundtrip[r] = [forced(b, s + CLOSE) for b, s in zip(back, p.sources, strict=True)]
        out.tokens[r] = [
            (sum(len(encode(a)) for a, _g in calls), sum(len(encode(g)) for _a, g in calls))
            for calls in (
                prompts.calls(p.task, r, s, reply) for s, reply in zip(p.sources, p.replies[r], strict=True)
            )
        ]
    return out


def select(j: Judged, s: Scored, detect: Callable[[str], str | None]) -> None:
    """The three model-scored selections of a pair into `j.choices` and `j.hyps`: forward, round-trip and
    their sum, flagged answers (copies, wrong language) never taken while a clean candidate is there."""
    f = flags(j.pair, detect)
    flagged = {r: [c or w for c, w in f[r]] for r in j.top}
    tables = {"forward": s.scores("forward"), "roundtrip": s.scores("roundtrip")}
    tables["sum"] = combined(tables["forward"], tables["roundtrip"])
    for name in SELECTORS:
        j.choices[name] = scored_choice(tables[name], flagged)
        j.hyps[name] = pick(j.pair.answers, j.choices[name])


def report_scored(judged: Sequence[Judged], cfg: EvalConfig, args: argparse.Namespace) -> None:
    """Stage `scored`: the candidates scored by the model itself through vLLM; its RESULT line."""
    from transformers import AutoTokenizer

    if args.model_dir is None:
        raise SystemExit(
            "error: stage scored needs --model-dir (its tokenizer; vLLM is started on it "
            "unless --endpoint names a running server)"
        )
    t0 = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)

    def encode(text: str) -> list[int]:
        return list(tokenizer(text)["input_ids"])

    prompts = ServerPrompts(cfg)
    unique: dict[str, Forced] = {}
    scored = [scoring_prompts(j, prompts, encode, unique) for j in judged]
    todo = sorted(unique.values(), key=lambda f: len(f.full))  # similar lengths in one request
    n = sum(len(j.pair.references) for j in judged)
    asked = sum(1 for s in scored for t in (s.forward, s.roundtrip) for col in t.values() for f in col if f)
    print(
        f"== stage scored: {asked} scoring prompts ({len(todo)} distinct, {sum(len(f.full) for f in todo)}"
        f" tokens) for {n} sentences, built in {time.perf_counter() - t0:.0f} s",
        flush=True,
    )
    with contextlib.ExitStack() as stack:
        t_start = time.perf_counter()
        endpoint = args.endpoint
        if endpoint is None:
            from bridgex_serve.launch import VllmServer

            log = Path(tempfile.gettempdir()) / "beyond_route_scored.vllm.log"
            endpoint = stack.enter_context(
                VllmServer(args.model_dir, name=args.name, log=log, start_timeout=900)
            ).url
            print(f"  vLLM started in {time.perf_counter() - t_start:.0f} s (log {log})", flush=True)
        t_score = time.perf_counter()
        done = [0]
        step = max(1, len(todo) // 10)

        def progress(k: int) -> None:
            done[0] += k
            if done[0] // step != (done[0] - k) // step or done[0] == len(todo):
                print(f"  scored {done[0]}/{len(todo)} in {time.perf_counter() - t_score:.0f} s", flush=True)

        asyncio.run(
            force(base_url(endpoint), args.name, todo, args.batch, args.concurrency, args.timeout, progress)
        )
        scoring_seconds = time.perf_counter() - t_score
    detect = make_detector({code for j in judged for code in (j.pair.source, j.pair.target)})
    for j, s in zip(judged, scored, strict=True):
        select(j, s, detect)
    boot, seed = args.boot, args.seed
    print(
        "== model-scored selection (forward: mean log P(candidate + closing quote | the direct prompt);"
        " round-trip: mean log P(source + closing quote | the direct prompt target → source, candidate);"
        " sum: both; flagged candidates out while a clean one is there; ties → direct), chrF++"
    )
    print(f"  {'pair':6} {'direct':>6} {'best single':>12} " + " ".join(f"{x:>28}" for x in SELECTORS))
    for j in judged:
        cells = []
        for name in SELECTORS:
            c = compare_pair(j, name, "best", boot, seed)
            cells.append(f"{j.score(name):5.1f} {interval(c):>22}")
        best = f"{j.best} {j.scores[j.best]:.1f}"
        print(
            f"  {j.pair.name:6} {j.scores[DIRECT]:6.1f} {best:>12} " + " ".join(f"{c:>28}" for c in cells),
            flush=True,
        )
    names = ("direct", "english", "best", "oracle", "mbr", *SELECTORS)
    refs = [r for j in judged for r in j.pair.references]
    pooled_scores = {
        name: corpus_score(CHRF_PP, [h for j in judged for h in j.hyps[name]], refs, POOLED) for name in names
    }
    mean_scores = {name: float(np.mean([j.score(name) for j in judged])) for name in names}
    pooled = {label: compare_pooled(judged, a, b, boot, seed) for label, a, b in SCORED_COMPARISONS}
    mean = {label: compare_mean(judged, a, b, boot, seed) for label, a, b in SCORED_COMPARISONS}
    for title, scores, comps in (("pooled", pooled_scores, pooled), ("mean over pairs", mean_scores, mean)):
        print(f"== overall, {title}: " + ", ".join(f"{k} {v:.2f}" for k, v in scores.items()))
        for label, _a, _b in SCORED_COMPARISONS:
            print(f"  {label:20} {interval(comps[label], 2)}")
    print("== which candidate each selector takes (sentences; 'bridge': an HSIC-ranked bridge, not en)")
    tally = {}
    for j in judged:
        f = flags(j.pair, detect)
        for name in SELECTORS:
            for i, r in enumerate(j.choices[name]):
                tally[name, "flagged"] = tally.get((name, "flagged"), 0) + any(f[r][i])
                tally[name, "oracle"] = tally.get((name, "oracle"), 0) + (r == j.choices["oracle"][i])
    for name in SELECTORS:
        kinds = Counter((r if r in (DIRECT, "en") else "bridge") for j in judged for r in j.choices[name])
        print(
            f"  {name:9} {dict(kinds)}; the oracle's candidate on {tally[name, 'oracle']} of {n};"
            f" a copy or wrong-language answer on {tally[name, 'flagged']} (all candidates flagged)"
        )
    # cost: tokens per sentence, prompt + generated, of the candidates' own calls and of the scoring prompts
    direct_tokens = sum(sum(t) for s in scored for t in s.tokens[DIRECT]) / n
    candidate_tokens = sum(sum(t) for s in scored for col in s.tokens.values() for t in col) / n
    scoring = {
        kind: sum(len(f.full) for s in scored for col in getattr(s, kind).values() for f in col if f) / n
        for kind in ("forward", "roundtrip")
    }
    scoring["sum"] = scoring["forward"] + scoring["roundtrip"]
    prompt_share = sum(t[0] for s in scored for col in s.tokens.values() for t in col) / n
    print(
        f"== tokens per sentence (prompt + generated; rebuilt with the model's tokenizer): direct"
        f" {direct_tokens:.1f}; the {args.candidates} candidates {candidate_tokens:.1f}"
        f" ({candidate_tokens / direct_tokens:.2f}x direct; prompts {prompt_share:.1f});"
        " scoring prompts (prefill only, one token generated each): "
        + ", ".join(f"{k} {v:.1f}" for k, v in scoring.items())
    )
    ratio = {name: (candidate_tokens + scoring[name]) / direct_tokens for name in SELECTORS}
    print("  best-of with scoring / direct: " + ", ".join(f"{k} {v:.2f}x" for k, v in ratio.items()))
    print(
        f"== wall time: scoring {scoring_seconds:.0f} s for {len(todo)} distinct prompts ({args.batch} per"
        f" request, {args.concurrency} requests in flight); stage {time.perf_counter() - t0:.0f} s"
    )
    fields = []
    for name in SELECTORS:
        fields += [f"{name}={mean_scores[name]:.2f}"]
        for base in ("best", "direct"):
            c = mean[f"{name} − {base}"]
            fields += [
                f"{name}_vs_{base}={c.delta:.2f}",
                f"{name}_vs_{base}_lo={c.low:.2f}",
                f"{name}_vs_{base}_hi={c.high:.2f}",
            ]
        fields += [f"pooled_{name}_vs_best={pooled[f'{name} − best'].delta:.2f}"]
    print(
        f"RESULT stage=scored pairs={len(judged)} sentences={n} candidates={args.candidates}"
        f" direct={mean_scores['direct']:.2f} best_single={mean_scores['best']:.2f} "
        + " ".join(fields)
        + f" tokens_direct={direct_tokens:.1f} tokens_candidates_ratio={candidate_tokens / direct_tokens:.2f}"
        + "".join(f" tokens_{name}_ratio={ratio[name]:.2f}" for name in SELECTORS)
        + f" scoring_prompts={asked} scoring_seconds={scoring_seconds:.0f}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--stage",
        choices=("oracle", "scored"),
        default="oracle",
        help="scored: oracle, then the model-scored",
    )
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--name", required=True, help="the served model name the answers were cached under")
    ap.add_argument("--pairs", required=True)
    ap.add_argument("--limit", type=int, default=40, help="sentences per pair, as in the route-policy run")
    ap.add_argument("--top", type=int, default=2, help="the route-policy run's --top (measured bridges)")
    ap.add_argument("--candidates", type=int, default=3, help="best-of candidates (default 3)")
    ap.add_argument("--prompt-style", default="auto")
    ap.add_argument("--boot", type=int, default=DEFAULT_BOOTSTRAP)
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--model-dir", type=Path, help="scored: the model folder (tokenizer; vLLM started on it)")
    ap.add_argument(
        "--endpoint", help="scored: a running vLLM server on the same model (else one is started)"
    )
    ap.add_argument("--batch", type=int, default=16, help="scored: prompts per completions request")
    ap.add_argument("--concurrency", type=int, default=2, help="scored: requests in flight")
    ap.add_argument("--timeout", type=float, default=1800.0)
    args = ap.parse_args(argv)
    cfg = EvalConfig(
        index=args.index,
        endpoint=NOWHERE,
        model=args.name,
        pairs=parse_pairs(args.pairs),
        dictionaries="",
        strategies=("direct", "english", "all-bridges"),
        top_bridges=args.top,
        limit=args.limit or None,
        prompt_style=args.prompt_style,
        task="translate",
    )
    with index_copy(cfg) as cfg:
        pairs = load(cfg)
        judged = [judge(p, args.candidates) for p in pairs]
        report_oracle(judged, args)
        if args.stage == "scored":
            report_scored(judged, cfg, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
