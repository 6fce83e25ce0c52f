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
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bridgex_index.detect import make_detector
from bridgex_index.words import normalise_word
from index_builder.evaluation.best_of import DIRECT, candidates, consensus_choice, oracle_choice, pick
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

    @property
    def name(self) -> str:
        return f"{self.source}→{self.target}"


def load(cfg: EvalConfig) -> list[PairAnswers]:
    """Every measured answer of the run `cfg` describes, from the cache of a temporary copy of its index."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / cfg.index.name
        shutil.copyfile(cfg.index, copy)
        cfg = dataclasses.replace(cfg, index=copy)
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


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stage", choices=("oracle",), default="oracle")
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--name", required=True, help="the served model name the answers were cached under")
    ap.add_argument("--pairs", required=True)
    ap.add_argument("--limit", type=int, default=40, help="sentences per pair, as in the route-policy run")
    ap.add_argument("--top", type=int, default=2, help="the route-policy run's --top (measured bridges)")
    ap.add_argument("--candidates", type=int, default=3, help="best-of candidates (default 3)")
    ap.add_argument("--prompt-style", default="auto")
    ap.add_argument("--boot", type=int, default=DEFAULT_BOOTSTRAP)
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
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
    pairs = load(cfg)
    judged = [judge(p, args.candidates) for p in pairs]
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
