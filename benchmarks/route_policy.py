"""Route regret of the route policy, leave-one-pair-out, next to the rules a user would try first.

In one run:
1. every route of every pair (direct and each candidate bridge of the index) is measured on the same items
   through a real bridgex-serve (`bridgex-index eval`'s machinery, strategies `direct,all-bridges`; answers
   are cached in the index, so a re-run asks nothing): words of the shipped word set (P@1) or sentences of
   the shipped sentence set (chrF++);
2. per pair, the best measured route (the oracle) and each rule's choice; regret = oracle score − the
   chosen route's score, on all the pair's items. Rules: always direct, always English, random (expected
   over the measured routes, direct included), the typologically nearest bridge, the index's HSIC rank-1,
   leg quality only (the bridge whose weaker leg has the best first-token top-1, if better than the direct
   leg), and the policy's prior **leave-one-pair-out** (fitted on the other pairs' evidence only, the
   judged pair never seen) under its decision rule (`policy`) and by its expected gain alone
   (`policy_mean`: the best route whose expected gain is positive);
3. sequential calibration (the policy's rule, pooled across pairs, budget `--budget` items a pair, steps
   of 10) on the calibration half of each pair's items, the chosen route then judged on the evaluation half
   against direct (paired bootstrap interval), with the English pivot's gain beside it.

Ends with `RESULT ...`. Run (vLLM started by the script, or `--endpoint URL` of a running server):
    .venv/bin/python benchmarks/route_policy.py --index IDX --model-dir MODEL_DIR --name NAME \
        --task word --pairs ar-fr,he-de,... --limit 60
"""

from __future__ import annotations

import argparse
import contextlib
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from index_builder.evaluation.calibrate import item_points
from index_builder.evaluation.config import EvalConfig, parse_pairs
from index_builder.evaluation.decision import split_words
from index_builder.evaluation.route_policy import (
    DEFAULT_RULE,
    DENSE,
    EVIDENCE_FLOORS,
    LEG_FEATURES,
    MARGINS,
    Evidence,
    Rule,
    Signals,
    belief,
    choose,
    fit_prior,
    paired_evidence,
    sequential,
)
from index_builder.evaluation.route_signals import read_signals
from index_builder.evaluation.run import evaluate
from index_builder.evaluation.sentence_scoring import CHRF_PP, corpus_score

DIRECT = "direct"
BOOT = 1000
# The policy as shipped (`policy`: its feature set chosen by leave-one-pair-out likelihood inside each fit,
# so within each judged pair's fold too; the highest positive expected gain) and fixed-feature variants
# measured beside it: the leg qualities only (`policy_legs`, shipped before), the confident rule with every
# feature (`policy_strict`: P(gain) >= 0.95 and P(loss beyond the margin) <= 0.05), the expected-gain rule
# with every feature, and with the language indicators only (pure pooling).
VARIANTS = {
    "policy": DEFAULT_RULE,
    "policy_legs": Rule((LEG_FEATURES,), 0.5, 0.5),
    "policy_strict": Rule((DENSE,), 0.95, 0.05),
    "policy_mean": Rule((DENSE,), 0.5, 0.5),
    "pooling_mean": Rule(((),), 0.5, 0.5),
}


@dataclass
class PairData:
    """One pair's items and every measured route's answers and per-item points."""

    source: str
    target: str
    items: list[str]  # source words or sentences, in the stable order
    golds: list[tuple[str, ...]]
    answers: dict[str, list[str]]  # route → answer per item
    points: dict[str, np.ndarray]  # route → (n,) points per item: 100 × hit, or sentence chrF++

    @property
    def pair(self) -> tuple[str, str]:
        return self.source, self.target

    def score(self, route: str, task: str, idx: Sequence[int] | None = None) -> float:
        """P@1 (%) or corpus chrF++ of `route` on the items `idx` (all by default)."""
        idx = range(len(self.items)) if idx is None else idx
        if task == "word":
            return float(np.mean(self.points[route][list(idx)]))
        hyps = [self.answers[route][i] for i in idx]
        return corpus_score(CHRF_PP, hyps, [self.golds[i][0] for i in idx], self.target)


def measure(cfg: EvalConfig) -> list[PairData]:
    """Ask every route of every pair once (cached), and score each answer."""
    result = evaluate(cfg, quiet=False)
    out = []
    for task in result.tasks:
        routes = [DIRECT if arm is None else arm for arm in task.arms]
        answers = {
            r: [result.answers[(task.pair, i, arm)].answer for i in range(len(task.words))]
            for r, arm in zip(routes, task.arms, strict=True)
        }
        golds = [w.golds for w in task.words]
        points = {r: np.array(item_points(cfg.task, task, result.answers, arm))
                  for r, arm in zip(routes, task.arms, strict=True)}  # fmt: skip
        out.append(PairData(task.source, task.target, [w.word for w in task.words], golds, answers, points))
    return out


def evidence(data: PairData, idx: Sequence[int], task: str) -> list[Evidence]:
    """The pair's evidence (every measured bridge against direct) on the items `idx`."""
    floor = EVIDENCE_FLOORS[task]
    idx = list(idx)
    return [
        paired_evidence(data.source, data.target, r, data.points[r][idx], data.points[DIRECT][idx], floor)
        for r in data.points
        if r != DIRECT
    ]


# ----------------------------------------------------------------------------------------------- rules


def rules(signals: Signals, pairs: Sequence[PairData], task: str) -> dict[str, Callable[[PairData], str]]:
    """Each rule: pair → the route it takes (a measured route of the pair)."""
    all_rows = {p.pair: evidence(p, range(len(p.items)), task) for p in pairs}

    def measured(p: PairData) -> list[str]:
        return [r for r in p.points if r != DIRECT]

    def english(p: PairData) -> str:
        return "en" if "en" in p.points else DIRECT

    def nearest(p: PairData) -> str:
        def sim(a: str, b: str) -> float:
            return signals.typology.get((min(a, b), max(a, b)), 0.0)

        return max(measured(p), key=lambda c: ((sim(p.source, c) + sim(p.target, c)) / 2, c == "en", c),
                   default=DIRECT)  # fmt: skip

    def hsic(p: PairData) -> str:
        ranked = signals.hsic.get(p.pair, {})
        return max(ranked, key=lambda b: ranked[b]) if ranked else DIRECT

    def legs(p: PairData) -> str:
        direct = signals.legs.get(p.pair)
        if direct is None:
            return DIRECT

        def weaker(b: str) -> float:
            return min(
                signals.legs.get((p.source, b), (0, -1))[1], signals.legs.get((b, p.target), (0, -1))[1]
            )

        best = max(measured(p), key=lambda b: (weaker(b), b), default=None)
        return best if best is not None and weaker(best) > direct[1] else DIRECT

    def policy(p: PairData, rule: Rule) -> str:
        rows = [e for q, r in all_rows.items() if q != p.pair for e in r]
        prior = fit_prior(rows, signals, rule)
        if rule is DEFAULT_RULE:
            reads = "+".join(prior.dense) or "languages only"
            print(f"  {p.source}→{p.target} held out: the prior reads {reads} (lambda {prior.lam:g})")
        beliefs = [belief(prior, signals, p.source, p.target, r, None) for r in measured(p)]
        return choose(beliefs, MARGINS[task], rule.p_gain, rule.p_loss).route

    chosen: dict[str, Callable[[PairData], str]] = {
        "direct": lambda p: DIRECT,
        "english": english,
        "nearest": nearest,
        "hsic": hsic,
        "legs": legs,
    }
    for name, rule in VARIANTS.items():
        chosen[name] = lambda p, rule=rule: policy(p, rule)
    return chosen


def regret_table(
    signals: Signals, pairs: Sequence[PairData], task: str
) -> tuple[dict[str, list[float]], dict[str, list[str]]]:
    """Per rule, the regret on each pair (oracle − chosen; `random`: the expected regret) and the route it
    chose on each pair."""
    table: dict[str, list[float]] = {}
    routes: dict[str, list[str]] = {}
    chosen_by = rules(signals, pairs, task)
    for p in pairs:
        scores = {r: p.score(r, task) for r in p.points}
        best_route = max(scores, key=lambda r: (scores[r], r == DIRECT))
        best = scores[best_route]
        line = [f"{p.source}→{p.target}: oracle {best_route} {best:.1f}, direct {scores[DIRECT]:.1f}"]
        table.setdefault("random", []).append(best - float(np.mean(list(scores.values()))))
        for name, rule in chosen_by.items():
            route = rule(p)
            table.setdefault(name, []).append(best - scores[route])
            routes.setdefault(name, []).append(route)
            line.append(f"{name} {route} {scores[route]:.1f}")
        print("  " + "; ".join(line), flush=True)
    return table, routes


def difference_interval(
    pairs: Sequence[PairData], a: Sequence[str], b: Sequence[str], task: str, seed: int = 0
) -> tuple[float, float, float]:
    """Mean over pairs of score(b's route) − score(a's route) (= regret of a − regret of b), with a 95%
    bootstrap interval over each pair's items (resampled within pairs, the same items for both routes; the
    routes each rule chose are held fixed: the measurement noise of the comparison, not the fit's)."""
    differing = [(p, ra, rb) for p, ra, rb in zip(pairs, a, b, strict=True) if ra != rb]
    point = sum(p.score(rb, task) - p.score(ra, task) for p, ra, rb in differing) / len(pairs)
    if not differing:
        return 0.0, 0.0, 0.0
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(BOOT if task == "word" else 300):
        total = 0.0
        for p, ra, rb in differing:
            idx = rng.integers(0, len(p.items), len(p.items))
            total += p.score(rb, task, idx) - p.score(ra, task, idx)
        draws.append(total / len(pairs))
    low, high = np.percentile(draws, [2.5, 97.5])
    return point, float(low), float(high)


# ----------------------------------------------------------------------------------------- calibration


def halves(p: PairData) -> tuple[list[int], list[int]]:
    """Item indices of the calibration and evaluation halves (the split `calibrate` uses), in stable order."""
    keys = [f"{p.source}:{item}" for item in p.items]
    cal, _ev = split_words(keys)
    cal_set = set(cal)
    first = [i for i, k in enumerate(keys) if k in cal_set]
    return first, [i for i, k in enumerate(keys) if k not in cal_set]


def paired_interval(
    p: PairData, route: str, idx: Sequence[int], task: str, seed: int = 0
) -> tuple[float, float, float]:
    """Gain of `route` over direct on `idx` and its 95% paired-bootstrap interval."""
    idx = np.asarray(idx)
    gain = p.score(route, task, idx) - p.score(DIRECT, task, idx)
    if route == DIRECT:
        return 0.0, 0.0, 0.0
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(BOOT if task == "word" else 300):
        sample = idx[rng.integers(0, len(idx), len(idx))]
        draws.append(p.score(route, task, sample) - p.score(DIRECT, task, sample))
    low, high = np.percentile(draws, [2.5, 97.5])
    return gain, float(low), float(high)


def calibration(signals: Signals, pairs: Sequence[PairData], task: str, budget: int) -> dict[str, float]:
    by_pair = {p.pair: p for p in pairs}
    split = {p.pair: halves(p) for p in pairs}

    def measure_k(open_pairs, k: int) -> dict[tuple[str, str], list[Evidence]]:
        return {pair: evidence(by_pair[pair], split[pair][0][:k], task) for pair in open_pairs}

    pair_keys = [p.pair for p in pairs]
    settled = sequential(pair_keys, measure_k, signals, task, budget=budget, rule=DEFAULT_RULE)
    gains, english_gains, items = [], [], []
    for p in pairs:
        s = settled[p.pair]
        ev_idx = split[p.pair][1]
        gain, low, high = paired_interval(p, s.choice.route, ev_idx, task)
        eng = paired_interval(p, "en", ev_idx, task) if "en" in p.points else None
        gains.append(gain)
        items.append(s.items)
        if eng is not None:
            english_gains.append(eng[0])
        eng_text = f"; English {eng[0]:+.1f} [{eng[1]:+.1f}, {eng[2]:+.1f}]" if eng else ""
        print(
            f"  {p.source}→{p.target}: {s.choice.route} ({s.choice.origin}, stopped: {s.reason} after"
            f" {s.items} items; expected {s.choice.expected_gain:+.1f}) → on {len(ev_idx)} evaluation items"
            f" {gain:+.1f} [{low:+.1f}, {high:+.1f}] vs direct{eng_text}",
            flush=True,
        )
    return {
        "calibrated_gain": float(np.mean(gains)),
        "english_gain_eval": float(np.mean(english_gains)) if english_gains else float("nan"),
        "calibration_items": float(np.mean(items)),
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--task", choices=("word", "translate"), default="word")
    ap.add_argument("--pairs", required=True)
    ap.add_argument("--limit", type=int, default=60, help="items per pair (default 60; translate: 0 = all)")
    ap.add_argument(
        "--top", type=int, help="measure English and the index's best N bridges only (default: every bridge)"
    )
    ap.add_argument("--budget", type=int, default=40, help="calibration items per pair (default 40)")
    ap.add_argument("--endpoint", help="a running OpenAI-compatible vLLM server (else --model-dir)")
    ap.add_argument("--model-dir", type=Path, help="start vLLM (CPU) on this model folder")
    ap.add_argument("--name", required=True, help="the served model name")
    ap.add_argument("--prompt-style", default="auto")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--timeout", type=float, default=900.0)
    args = ap.parse_args(argv)
    random.seed(0)
    signals = read_signals(args.index)
    print(
        f"index {args.index.name}: {len(signals.languages)} languages, leg quality for {len(signals.legs)}"
        f" directed pairs, typology {'on' if signals.typology else 'unavailable'}",
        flush=True,
    )
    with contextlib.ExitStack() as stack:
        endpoint = args.endpoint
        if endpoint is None:
            from bridgex_serve.launch import VllmServer

            if args.model_dir is None:
                raise SystemExit("error: give --endpoint or --model-dir")
            log = args.index.with_suffix(".vllm.log")
            endpoint = stack.enter_context(
                VllmServer(args.model_dir, name=args.name, log=log, start_timeout=900)
            ).url
        cfg = EvalConfig(
            index=args.index,
            endpoint=endpoint.rstrip("/") + ("" if endpoint.rstrip("/").endswith("/v1") else "/v1"),
            model=args.name,
            pairs=parse_pairs(args.pairs),
            dictionaries="",
            strategies=("direct", "english", "all-bridges"),
            top_bridges=args.top,
            limit=args.limit or None,
            concurrency=args.concurrency,
            timeout=args.timeout,
            prompt_style=args.prompt_style,
            task=args.task,
            test_dict_dir="shipped" if args.task == "word" else None,
        )
        pairs = [p for p in measure(cfg) if len(p.points) > 1]
    unit = "P@1" if args.task == "word" else "chrF++"
    print(f"== route regret ({unit} points), leave-one-pair-out, {len(pairs)} pairs", flush=True)
    table, routes = regret_table(signals, pairs, args.task)
    means = {name: float(np.mean(v)) for name, v in table.items()}
    for name, value in sorted(means.items(), key=lambda kv: kv[1]):
        print(f"  {name:12} mean regret {value:6.2f}")
    gaps = {}
    for baseline in ("english", "direct"):
        gap, low, high = difference_interval(pairs, routes["policy"], routes[baseline], args.task)
        gaps[baseline] = gap
        differ = sum(a != b for a, b in zip(routes["policy"], routes[baseline], strict=True))
        print(f"  policy − {baseline}: regret {gap:+.2f} [{low:+.2f}, {high:+.2f}] (95%, items resampled"
              f" within pairs; the two differ on {differ} pairs)")  # fmt: skip
    oracle = float(np.mean([max(p.score(r, args.task) for r in p.points) for p in pairs]))
    direct = float(np.mean([p.score(DIRECT, args.task) for p in pairs]))
    print(f"  oracle {oracle:.2f}, direct {direct:.2f} (mean over pairs)")
    print(f"== sequential calibration (budget {args.budget}), judged on the evaluation half", flush=True)
    cal = calibration(signals, pairs, args.task, args.budget)
    fields = " ".join(f"regret_{k}={v:.2f}" for k, v in means.items())
    print(
        f"RESULT task={args.task} pairs={len(pairs)} items={int(np.mean([len(p.items) for p in pairs]))}"
        f" {fields} policy_minus_english={gaps['english']:.2f} policy_minus_direct={gaps['direct']:.2f}"
        f" oracle={oracle:.2f} direct={direct:.2f}"
        f" calibrated_gain={cal['calibrated_gain']:.2f} english_gain_eval={cal['english_gain_eval']:.2f}"
        f" calibration_items={cal['calibration_items']:.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
