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

Stage `distilled` (issue 20's one-call bridge; a model, unless cached): the English pivot's answers to other
sentences of the pair, given as demonstrations to ONE direct call.
1. Distillation sentences: per pair the next `--distil-limit` shipped sentences after the evaluated `--limit`
   ones (stable order), asked by the direct route and the English pivot through a real bridgex-serve on vLLM
   (`bridgex-index eval`'s machinery, cached in a copy of the index in `--work`; `--index` is never
   written). Kept: the sentences whose pivot answer is the pivot's own (no copy fallback) and whose pivot
   and direct answers are both clean (not empty, not a copy of the source, no `"`, detected as the target
   by the proxy's lingua detector over the pairs' languages and English); no reference is read. The first
   k of them in the stable order are the pair's demonstrations, the same for every evaluated sentence.
2. Arms, each ONE completion call per evaluated sentence, the server's own direct translate prompt
   (`plan_request`, 3 word demonstrations, `steps.first_step`, answer read by `steps.read_direct`) with k
   sentence demonstrations in front (`prompts.with_examples`): `distilledK` (targets: the pivot's answers),
   `controlK` (the same sources, targets: the direct route's own answers) or, with `--control gold`,
   `goldK` (targets: the references of those non-evaluated sentences).
3. Passes on one vLLM (started with its statistics on): each arm over all evaluated sentences, one request
   per sentence, `--concurrency` in flight; before each pass the prefix cache is emptied and each pair's
   prompt warmed by one untimed request on a non-evaluated sentence. Direct and `distilled{--cost-k}` are
   timed twice in ABBA order (answers/s, usage tokens per answer, vLLM's prefix-cache counters); the other
   arms once. Passes are cached in `--work/passes.json` (a re-run with the same demonstrations asks
   nothing).
4. Scores: chrF++ per pair, mean over pairs and pooled, for direct and English (the cached answers of the
   route-policy run) and every arm; gains over direct with 95% paired-bootstrap intervals; the share of the
   English pivot's gain each arm keeps ((arm − direct) / (English − direct)); the cost of the timed arm
   against direct. Ends with `RESULT stage=distilled ...` (the oracle stage's report is not printed); with
   every answer and pass cached in `--work` no model is needed (and `--model-dir` may be left out):
    .venv/bin/python benchmarks/beyond_route.py --stage distilled --index artifacts/policy/qwen.duckdb \
        --name qwen2.5-coder-1.5b-instruct --pairs ar-fr,ar-de,he-fr,he-de,sw-fr,sw-es,ja-fr,id-fr \
        --limit 40 --top 2 --model-dir .cache/bridgex/models/qwen2.5-coder-1.5b-instruct \
        --work artifacts/distil
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import re
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
    fallbacks: dict[str, list[bool]] = field(default_factory=dict)  # route → answered by the copy fallback

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


def load(cfg: EvalConfig, ask: bool = False) -> list[PairAnswers]:
    """Every measured answer of the run `cfg` describes, from the answer cache of its index (give a copy:
    `index_copy`, or one the caller owns); a missing answer is an error, never a call. With `ask`, missing
    answers are asked at `cfg.endpoint` and cached in `cfg.index` (evaluation's progress printed)."""
    if not ask:
        asked, cached = count_requests(cfg, log=lambda msg: None)
        if cached < asked:
            raise SystemExit(
                f"error: {asked - cached} of {asked} answers are not cached in the index; run "
                "benchmarks/route_policy.py --task translate with the same pairs, --limit and --top first"
            )
    result = evaluate(
        cfg, quiet=True, log=(lambda msg: print(f"  {msg}", flush=True)) if ask else (lambda msg: None)
    )
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
                {r: [a.fallback is not None for a in said[r]] for r in routes},
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


def pooled_corpus(judged: Sequence[Judged], names: Sequence[str]) -> dict[str, float]:
    """Corpus chrF++ of each selection `name` over every pair's sentences together."""
    references = [r for j in judged for r in j.pair.references]
    return {
        name: corpus_score(CHRF_PP, [h for j in judged for h in j.hyps[name]], references, POOLED)
        for name in names
    }


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


def overall(
    judged: Sequence[Judged],
    names: Sequence[str],
    comparisons: Sequence[tuple[str, str, str]],
    boot: int,
    seed: int,
) -> tuple[dict[str, float], dict[str, float], dict[str, Comparison], dict[str, Comparison]]:
    """Over all pairs: each name's pooled corpus chrF++ and its mean over pairs, and each comparison
    (label, selection, baseline) pooled and as a mean over pairs, with bootstrap intervals."""
    pooled_scores = pooled_corpus(judged, names)
    mean_scores = {name: float(np.mean([j.score(name) for j in judged])) for name in names}
    pooled = {label: compare_pooled(judged, a, b, boot, seed) for label, a, b in comparisons}
    mean = {label: compare_mean(judged, a, b, boot, seed) for label, a, b in comparisons}
    return pooled_scores, mean_scores, pooled, mean


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
    pooled_scores, mean_scores, pooled, mean = overall(judged, names, COMPARISONS, boot, seed)
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
    pooled_scores, mean_scores, pooled, mean = overall(judged, names, SCORED_COMPARISONS, boot, seed)
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


# ------------------------------------------------------------------------------------- stage distilled

SOURCE_STRATEGIES = ("direct", "english")  # what the distillation sentences are asked (a real bridgex-serve)
WORD_SHOTS = 3  # the server's word demonstrations of a translate prompt, as in the route-policy run
ARM_DIRECT = "direct"


@dataclass(frozen=True)
class Example:
    """One distillation sentence of a pair (not an evaluated one): its source, the English pivot's answer,
    the direct route's answer and the reference (read by the gold control only)."""

    source: str
    pivot: str
    direct: str
    reference: str


def is_clean(source: str, answer: str, target: str, detect: Callable[[str], str | None]) -> bool:
    """Reference-free: the answer is not empty, not a copy of the source (`diagnose` given no reference),
    has no `"` (it would close the prompt's answer) and is detected as the target language."""
    if '"' in answer:
        return False
    d = diagnose([source], [answer], [""], target, normalise_word, detect)
    return not (d.empty or d.copies or d.wrong_language or d.undetected)


def clean_examples(p: PairAnswers, skip: int, detect: Callable[[str], str | None]) -> list[Example]:
    """The pair's distillation sentences (stable order, after the first `skip` evaluated ones) whose English
    answer (the pivot's own: no copy fallback) and direct answer are both clean, in the stable order; the
    first k of them are the demonstrations. Never reads a reference."""
    out = []
    for i in range(skip, len(p.sources)):
        pivot, direct = p.answers["en"][i], p.answers[DIRECT][i]
        if p.fallbacks["en"][i] or not is_clean(p.sources[i], pivot, p.target, detect):
            continue
        if not is_clean(p.sources[i], direct, p.target, detect):
            continue
        out.append(Example(p.sources[i], pivot, direct, p.references[i]))
    return out


def arm_examples(arm: str, examples: Sequence[Example]) -> list[tuple[str, str]]:
    """The (source, target) sentence demonstrations of an arm: `direct` none; `distilledK` the first K
    examples with the pivot's answers; `controlK` the same sources with the direct route's answers;
    `goldK` with the references."""
    if arm == ARM_DIRECT:
        return []
    kind, k = arm.rstrip("0123456789"), int(arm[len(arm.rstrip("0123456789")) :])
    side = {"distilled": "pivot", "control": "direct", "gold": "reference"}[kind]
    return [(e.source, getattr(e, side)) for e in examples[:k]]


def direct_plans(index: Path, pairs: Sequence[PairAnswers]) -> dict[str, list]:
    """Per pair, the server's own direct translate plan of every evaluated sentence (`/v1/translate` with
    `route: direct`, 3 word demonstrations: `plan_request` as `BridgeService` calls it)."""
    from bridgex_serve.options import parse_options
    from bridgex_serve.plan import plan_request
    from bridgex_serve.service import Runtime

    runtime = Runtime.load(str(index))
    out = {}
    for p in pairs:
        options = parse_options(
            {
                "task": "translate",
                "source": p.source,
                "target": p.target,
                "route": "direct",
                "shots": WORD_SHOTS,
            }
        )
        out[p.name] = [
            plan_request(
                options,
                text,
                index=runtime.index,
                low_resource=runtime.low_resource,
                detect=runtime.detect,
                force=True,
                prompt_style=runtime.prompt_styles,
            )
            for text in p.sources
        ]
    return out


def arm_steps(plans: Sequence, examples: Sequence[tuple[str, str]], name: str) -> list[tuple]:
    """(plan, upstream step) per sentence: the server's direct prompt with the sentence examples in front
    (`prompts.with_examples`), the server's own step (`steps.first_step`, temperature 0)."""
    from bridgex_serve.prompts import with_examples
    from bridgex_serve.steps import first_step
    from bridgex_serve.wire import ClientRequest

    req = ClientRequest("completions", name, {"temperature": 0.0}, None)
    out = []
    for plan in plans:
        plan = with_examples(plan, examples)
        out.append((plan, first_step(plan, req)))
    return out


async def ask_steps(url: str, jobs: Sequence[tuple], concurrency: int) -> tuple[list[str], dict, float]:
    """Send every step to vLLM, one request per sentence, at most `concurrency` in flight, in order; the
    answers as the server reads them (`steps.read_direct`), the usage summed, and the wall seconds."""
    import httpx

    from bridgex_serve.orchestrate import checked
    from bridgex_serve.steps import choice_text, read_direct

    answers = [""] * len(jobs)
    usage = Counter()
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(900.0, connect=10.0)) as client:

        async def one(i: int) -> None:
            plan, step = jobs[i]
            async with gate:
                response = await client.post(step.path, json=step.body)
            response.raise_for_status()
            body = checked(response.json())
            usage.update({k: int(v) for k, v in (body.get("usage") or {}).items() if k.endswith("_tokens")})
            answers[i] = read_direct(plan, choice_text(step, body)[0])

        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(len(jobs))))
        seconds = time.perf_counter() - t0
    return answers, dict(usage), seconds


PREFIX_METRIC = re.compile(r"^vllm:prefix_cache_(queries|hits)(?:_total)?(?:\{[^}]*\})?\s+(\S+)$")


def prefix_counters(url: str) -> dict[str, float] | None:
    """vLLM's prefix-cache counters (tokens queried, tokens hit) from its /metrics, None when absent."""
    import httpx

    try:
        text = httpx.get(f"{url}/metrics", timeout=10.0).text
    except httpx.HTTPError:
        return None
    found: Counter = Counter()
    for line in text.splitlines():
        m = PREFIX_METRIC.match(line)
        if m:
            found[m.group(1)] += float(m.group(2))
    return dict(found) if "queries" in found else None


def reset_prefix_cache(url: str) -> bool:
    import httpx

    try:
        return httpx.post(f"{url}/reset_prefix_cache", timeout=60.0).status_code == 200
    except httpx.HTTPError:
        return False


def run_pass(
    url: str, arm: str, jobs: dict[str, list[tuple]], warm: dict[str, tuple], concurrency: int
) -> dict:
    """One timed pass of an arm over every evaluated sentence: vLLM's prefix cache emptied, each pair's
    prompt prefix warmed by one untimed request on a non-evaluated sentence (the steady state of a server
    whose demonstrations never change), then every pair's sentences in order, `concurrency` in flight."""
    reset = reset_prefix_cache(url)
    asyncio.run(ask_steps(url, list(warm.values()), concurrency))
    before = prefix_counters(url)
    flat = [job for pair in jobs.values() for job in pair]
    answers, usage, seconds = asyncio.run(ask_steps(url, flat, concurrency))
    after = prefix_counters(url)
    out, start = {}, 0
    for name, pair in jobs.items():
        out[name] = answers[start : start + len(pair)]
        start += len(pair)
    prefix = {k: after[k] - before.get(k, 0.0) for k in after} if before is not None and after else None
    print(
        f"  pass {arm}: {len(flat)} answers in {seconds:.1f} s ({len(flat) / seconds:.3f}/s), usage {usage}, "
        f"prefix cache {prefix}, reset {reset}",
        flush=True,
    )
    return {"arm": arm, "seconds": seconds, "answers": out, "usage": usage, "prefix": prefix, "reset": reset}


def pass_order(ks: Sequence[int], cost_k: int, control: str) -> list[str]:
    """Direct and the `cost_k` distilled arm timed twice in ABBA order; then once each (answers only) the
    control of `cost_k`, the other distilled arms and their controls."""
    timed = f"distilled{cost_k}"
    rest = [arm for k in ks if k != cost_k for arm in (f"distilled{k}", f"{control}{k}")]
    return [ARM_DIRECT, timed, timed, ARM_DIRECT, f"{control}{cost_k}", *rest]


def distil(args, cfg: EvalConfig, evaluated: Sequence[PairAnswers]) -> tuple[list, dict[str, list], list]:
    """The distillation sentences' answers (asked through a real bridgex-serve when missing), each pair's
    clean examples, and every pass (run on one vLLM when missing); answers and passes cached in `--work`."""
    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    index = work / cfg.index.name  # a copy: the distillation answers are cached here, never in --index
    if not index.exists():
        shutil.copyfile(cfg.index, index)
    passes_file = work / "passes.json"
    order = pass_order(args.ks, args.cost_k, args.control)
    saved = json.loads(passes_file.read_text()) if passes_file.exists() else {}
    source_cfg = dataclasses.replace(
        cfg,
        index=index,
        strategies=SOURCE_STRATEGIES,
        top_bridges=None,
        limit=args.limit + args.distil_limit,
        concurrency=args.concurrency,
        timeout=900.0,
    )
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        url: list[str] = []

        def vllm() -> str:
            if not url:
                if args.model_dir is None:
                    raise SystemExit("error: answers or passes are missing: give --model-dir to start vLLM")
                from bridgex_serve.launch import VllmServer

                # the prefix cache is emptied before each pass (`/reset_prefix_cache`: vLLM's dev-mode route)
                os.environ["VLLM_SERVER_DEV_MODE"] = "1"
                server = VllmServer(
                    args.model_dir, name=cfg.model, log=work / "vllm.log", start_timeout=900, stats=True
                )
                t0 = time.perf_counter()
                url.append(stack.enter_context(server).url)
                print(f"== vLLM up in {time.perf_counter() - t0:.0f} s at {url[0]}", flush=True)
            return url[0]

        asked, cached = count_requests(source_cfg, log=lambda msg: None)
        print(f"== distillation sentences: {asked - cached} of {asked} answers to ask", flush=True)
        endpoint = vllm() if cached < asked else NOWHERE.removesuffix("/v1")
        t0 = time.perf_counter()
        source = load(dataclasses.replace(source_cfg, endpoint=endpoint + "/v1"), ask=True)
        print(f"   done in {time.perf_counter() - t0:.0f} s", flush=True)
        detect = make_detector({"en"} | {c for p in source for c in (p.source, p.target)})
        examples = {p.name: clean_examples(p, args.limit, detect) for p in source}
        shown = {name: [list(dataclasses.astuple(e)) for e in ex] for name, ex in examples.items()}  # as JSON
        runs = saved.get("runs", [])[: len(order)] if saved.get("examples") == shown else []
        if [r["arm"] for r in runs] != order[: len(runs)]:
            runs = []
        todo = order[len(runs) :][: args.passes]
        if args.source_only or not todo:
            return source, examples, runs
        plans = direct_plans(index, evaluated)
        warm_pairs = [dataclasses.replace(p, sources=p.sources[args.limit :][:1]) for p in source]
        warm_plans = direct_plans(index, warm_pairs)
        for arm in todo:
            jobs, warm = {}, {}
            for p in evaluated:
                demos = arm_examples(arm, examples[p.name])
                jobs[p.name] = arm_steps(plans[p.name], demos, cfg.model)
                warm[p.name] = arm_steps(warm_plans[p.name], demos, cfg.model)[0]
            runs.append(run_pass(vllm(), arm, jobs, warm, args.concurrency))
            record = {"order": order, "examples": shown, "runs": runs}
            passes_file.write_text(json.dumps(record, ensure_ascii=False, indent=1))
            spent = time.perf_counter() - started
            if args.budget and len(runs) >= 4 and spent + runs[-1]["seconds"] * 1.2 > args.budget * 60:
                print(f"== stopping after {spent / 60:.0f} min (--budget {args.budget:g})", flush=True)
                break
    return source, examples, runs


def share(gain: float, english_gain: float) -> float:
    """The share of the English pivot's gain kept (gain / English's gain); nan when English gains nothing."""
    return gain / english_gain if english_gain > 0 else float("nan")


def pct(x: float) -> str:
    return "n/a" if np.isnan(x) else f"{100 * x:.0f}%"


def report_distilled(args, judged: Sequence[Judged], examples: dict[str, list], runs: Sequence[dict]) -> int:
    """Quality of every arm against direct and the English pivot (the cached answers), and the cost of the
    timed arm against direct, from the passes."""
    boot, seed, k_cost = args.boot, args.seed, args.cost_k
    first = {}
    for run in runs:
        first.setdefault(run["arm"], run)
    kinds = ("distilled", args.control)
    arms = [f"{kind}{k}" for kind in kinds for k in args.ks if f"{kind}{k}" in first]
    for j in judged:
        for arm in arms:
            j.hyps[arm] = first[arm]["answers"][j.pair.name]
    n = sum(len(j.pair.references) for j in judged)
    print(f"== distilled: {len(judged)} pairs, {n} evaluated sentences; demonstrations per pair (clean of)")
    for j in judged:
        ex = examples[j.pair.name]
        shown = "; ".join(f"{e.source[:40]} → {e.pivot[:40]}" for e in ex[: max(args.ks)])
        print(f"  {j.pair.name}: {len(ex)} clean; {shown}")
    names = ["direct", "english", *arms]
    labels = {a: a for a in names}
    comps = [(f"{a} − direct", a, DIRECT) for a in ["english", *arms]]
    comps += [(f"{a} − english", a, "english") for a in arms if a.startswith("distilled")]
    comps += [
        (f"distilled{k} − {args.control}{k}", f"distilled{k}", f"{args.control}{k}")
        for k in args.ks
        if f"{args.control}{k}" in first
    ]
    print(f"  {'pair':6} " + " ".join(f"{labels[a]:>11}" for a in names))
    for j in judged:
        scores = {a: j.score(a) for a in names}
        c = {label: compare_pair(j, a, b, boot, seed) for label, a, b in comps}
        print(f"  {j.pair.name:6} " + " ".join(f"{scores[a]:11.1f}" for a in names))
        eng = scores["english"] - scores["direct"]
        for label, _a, _b in comps:
            kept = ""
            if label.endswith("− direct") and not label.startswith("english"):
                kept = f"  kept {pct(share(c[label].delta, eng))}"
            print(f"      {label:24} {interval(c[label])}{kept}")
    pooled_scores, mean_scores, pooled, mean = overall(judged, names, comps, boot, seed)
    kept_mean, kept_pooled = {}, {}
    for title, scores, c, kept in (
        ("mean over pairs", mean_scores, mean, kept_mean),
        ("pooled", pooled_scores, pooled, kept_pooled),
    ):
        print(f"== overall, {title}: " + ", ".join(f"{a} {v:.2f}" for a, v in scores.items()))
        for label, a, _b in comps:
            line = f"  {label:24} {interval(c[label], 2)}"
            if label.endswith("− direct") and a != "english":
                kept[a] = share(c[label].delta, c["english − direct"].delta)
                line += f"  kept {pct(kept[a])} of English's gain"
            print(line)
    detect = make_detector({c for j in judged for c in (j.pair.source, j.pair.target)})
    print("== copies / wrong-language answers (as eval counts them)")
    for a in names:
        rows = [
            r for j in judged for r in flags(dataclasses.replace(j.pair, answers={a: j.hyps[a]}), detect)[a]
        ]
        print(f"  {a:12} {sum(c for c, _w in rows)} copies, {sum(w for _c, w in rows)} wrong language of {n}")
    print(f"== cost: direct vs distilled{k_cost}, {args.concurrency} requests in flight, ABBA")
    timed = [r for r in runs if r["arm"] in (ARM_DIRECT, f"distilled{k_cost}")]
    for r in runs:
        answered = sum(len(v) for v in r["answers"].values())
        hit = f"{r['prefix']['hits'] / r['prefix']['queries']:.3f}" if r["prefix"] else "n/a"
        print(
            f"  {r['arm']:12} {answered / r['seconds']:.3f} answers/s ({r['seconds']:.0f} s); per answer "
            f"{r['usage'].get('prompt_tokens', 0) / answered:.0f} prompt, "
            f"{r['usage'].get('completion_tokens', 0) / answered:.1f} generated tokens; "
            f"prefix-cache hit rate {hit}"
        )

    def rate(arm: str) -> float:
        rs = [r for r in timed if r["arm"] == arm]
        return sum(sum(len(v) for v in r["answers"].values()) for r in rs) / sum(r["seconds"] for r in rs)

    ratio = rate(f"distilled{k_cost}") / rate(ARM_DIRECT)
    rounds = [timed[0]["seconds"] / timed[1]["seconds"], timed[3]["seconds"] / timed[2]["seconds"]]
    print(
        f"  distilled{k_cost} / direct answers/s: {ratio:.3f} (first AB {rounds[0]:.3f}, "
        f"second BA {rounds[1]:.3f})"
    )
    same_direct = sum(
        a == b
        for j in judged
        for a, b in zip(first[ARM_DIRECT]["answers"][j.pair.name], j.pair.answers[DIRECT], strict=True)
    )
    twice = [r for r in timed if r["arm"] == f"distilled{k_cost}"]
    same_twice = sum(
        a == b
        for name in twice[0]["answers"]
        for a, b in zip(*(r["answers"][name] for r in twice), strict=True)
    )
    print(
        f"  checks: the direct pass repeats {same_direct} of {n} cached direct answers; the two "
        f"distilled{k_cost} passes agree on {same_twice} of {n}"
    )
    fields = " ".join(
        f"{a}={mean_scores[a]:.2f} {a}_gain={mean[f'{a} − direct'].delta:.2f}"
        f" {a}_gain_lo={mean[f'{a} − direct'].low:.2f} {a}_gain_hi={mean[f'{a} − direct'].high:.2f}"
        f" {a}_kept={kept_mean[a]:.2f}"
        for a in arms
    )
    fields += "".join(
        f" {a}_vs_{b}={mean[label].delta:.2f} {a}_vs_{b}_lo={mean[label].low:.2f}"
        f" {a}_vs_{b}_hi={mean[label].high:.2f}"
        for label, a, b in comps
        if b != DIRECT
    )
    prefix = next((r["prefix"] for r in timed[::-1] if r["arm"] != ARM_DIRECT and r["prefix"]), None)
    hit = f"{prefix['hits'] / prefix['queries']:.3f}" if prefix else "n/a"
    per_answer = next(r for r in timed if r["arm"] == f"distilled{k_cost}")
    direct_run = timed[0]
    print(
        f"RESULT stage=distilled pairs={len(judged)} sentences={n} direct={mean_scores['direct']:.2f}"
        f" english={mean_scores['english']:.2f} english_gain={mean['english − direct'].delta:.2f} {fields}"
        f" pooled_kept_{k_cost}={kept_pooled[f'distilled{k_cost}']:.2f}"
        f" answers_per_s_direct={rate(ARM_DIRECT):.3f}"
        f" answers_per_s_distilled{k_cost}={rate(f'distilled{k_cost}'):.3f}"
        f" speed_ratio={ratio:.3f} speed_ratio_ab={rounds[0]:.3f} speed_ratio_ba={rounds[1]:.3f}"
        f" prompt_tokens_direct={direct_run['usage'].get('prompt_tokens', 0) / n:.0f}"
        f" prompt_tokens_distilled{k_cost}={per_answer['usage'].get('prompt_tokens', 0) / n:.0f}"
        f" prefix_hit_distilled{k_cost}={hit}"
    )
    return 0


def run_distilled(args, cfg: EvalConfig, judged: Sequence[Judged]) -> int:
    """Stage `distilled`: the distillation answers and passes (missing ones on a model), then its report;
    with `--source-only` or passes still missing, what was done so far."""
    _source, examples, runs = distil(args, cfg, [j.pair for j in judged])
    if args.source_only or len(runs) < len(pass_order(args.ks, args.cost_k, args.control)):
        for name, ex in examples.items():
            print(f"  {name}: {len(ex)} clean distillation sentences")
        print(f"{len(runs)} passes done: {', '.join(r['arm'] for r in runs)}")
        return 0
    return report_distilled(args, judged, examples, runs)


CONCURRENCY = {"scored": 2, "distilled": 8}  # --concurrency's default per stage (as the docs' runs used)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--stage",
        choices=("oracle", "scored", "distilled"),
        default="oracle",
        help="scored: oracle, then the model-scored; distilled: the distilled one-call bridge alone",
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
    model = ap.add_argument_group("stages scored and distilled (a model)")
    model.add_argument(
        "--model-dir",
        type=Path,
        help="the model folder (scored: its tokenizer); vLLM (CPU) is started on it when needed",
    )
    model.add_argument(
        "--concurrency",
        type=int,
        help="requests in flight (default: scored 2, distilled 8)",
    )
    scored = ap.add_argument_group("stage scored")
    scored.add_argument("--endpoint", help="a running vLLM server on the same model (else one is started)")
    scored.add_argument("--batch", type=int, default=16, help="prompts per completions request")
    scored.add_argument("--timeout", type=float, default=1800.0)
    distilled = ap.add_argument_group("stage distilled")
    distilled.add_argument(
        "--work", type=Path, default=Path("artifacts/distil"), help="a copy of --index and the passes"
    )
    distilled.add_argument(
        "--distil-limit", type=int, default=40, help="distillation sentences per pair, after the --limit ones"
    )
    distilled.add_argument("--ks", type=lambda t: [int(k) for k in t.split(",")], default=[3, 6])
    distilled.add_argument("--cost-k", type=int, default=6, help="the distilled arm timed against direct")
    distilled.add_argument("--control", choices=("control", "gold"), default="control")
    distilled.add_argument("--source-only", action="store_true", help="ask the distillation sentences only")
    distilled.add_argument("--passes", type=int, help="run at most this many missing passes (default: all)")
    distilled.add_argument(
        "--budget", type=float, help="minutes: after the ABBA passes, start no pass that would end later"
    )
    args = ap.parse_args(argv)
    if args.concurrency is None:
        args.concurrency = CONCURRENCY.get(args.stage, 1)
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
    with index_copy(cfg) as copy:
        judged = [judge(p, args.candidates) for p in load(copy)]
        if args.stage == "distilled":  # its own copy of --index in --work (cfg: the original)
            return run_distilled(args, cfg, judged)
        report_oracle(judged, args)  # stage scored: the oracle stage first
        if args.stage == "scored":
            report_scored(judged, copy, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
