"""Per-pair tables with intervals from a finished `bridgex-index eval` run, replayed from the index's answer
cache (no server needed; a word missing from the cache is an error): P@1 per strategy with Wilson 95%
intervals, each route's paired-bootstrap gain over direct with its 95% interval and a verdict (helps / hurts
/ no difference: the interval excludes zero or not), the measured-best bridge and the rank the index gave it.

    python scripts/results_tables.py --index artifacts/qwen/eval.duckdb --model qwen2.5-coder-1.5b-instruct \
        --pairs sw-fr,he-es --strategies direct,english,bridgex,all-bridges --limit 60
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from index_builder import evaluation as ev  # noqa: E402
from index_builder import scoring  # noqa: E402


def wilson(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion, in percent."""
    if n == 0:
        return 0.0, 0.0
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return 100 * max(0.0, centre - half), 100 * min(1.0, centre + half)


def replay(args) -> tuple[list[ev.PairTask], dict]:
    cfg = ev.EvalConfig(
        index=args.index,
        endpoint="http://127.0.0.1:9/v1",
        model=args.model,
        pairs=ev.parse_pairs(args.pairs),
        dictionaries="cldr",
        strategies=ev.parse_strategies(args.strategies),
        words=args.words,
        limit=args.limit,
        mode=args.mode,
    )
    _data, tasks, jobs = ev.prepare(cfg, lambda m: None)
    cache = ev.AnswerCache(ev.ResultStore(args.index), cfg.model)
    answers: dict = {}
    err = asyncio.run(ev._run_all(jobs, ev._request(cfg), ev.Upstream(cfg, cache), answers, True, True))
    if err is not None or cache.misses:
        raise SystemExit(f"the cache does not hold this run ({cache.misses} answers missing): {err}")
    return tasks, answers


def verdict(lo: float, hi: float) -> str:
    return "helps" if lo > 0 else "hurts" if hi < 0 else "no difference"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--pairs", required=True)
    parser.add_argument("--strategies", default="direct,english,bridgex,all-bridges")
    parser.add_argument("--words", default="all")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--mode", default="chain")
    args = parser.parse_args()
    tasks, answers = replay(args)
    strategies = [s for s in ev.parse_strategies(args.strategies) if s != "all-bridges"]
    routes = [s for s in strategies if s != "direct"]
    head = ["pair", "n", *(f"{s} P@1 [95%]" for s in strategies)]
    head += [f"{s} − direct [95%]" for s in routes]
    if "all-bridges" in args.strategies:
        head += ["best bridge (P@1), index rank", "index rank-1 measured rank"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    pooled: dict[str, list[bool]] = {s: [] for s in strategies}
    verdicts: dict[str, list[str]] = {s: [] for s in routes}
    for task in tasks:
        hits: dict[str, list[bool]] = {}
        arms: dict[str, str | None] = {}
        for strategy, arm in task.strategy_arms(strategies):
            hits[strategy] = [
                scoring.is_hit(answers[(task.pair, i, arm)].answer, w.golds) for i, w in enumerate(task.words)
            ]
            arms[strategy] = arm
        n = len(task.words)
        cells = [f"{task.source}→{task.target}", str(n)]
        for s in strategies:
            if s not in hits:
                cells.append("–")
                continue
            k = sum(hits[s])
            lo, hi = wilson(k, n)
            via = f" ({arms[s] or 'direct'})" if s in ("bridgex", "calibrated") else ""
            cells.append(f"{100 * k / n:.1f}{via} [{lo:.0f}, {hi:.0f}]")
        for s in routes:
            if s not in hits:
                cells.append("–")
                continue
            d, lo, hi = scoring.paired_bootstrap(hits[s], hits["direct"])
            verdicts[s].append(verdict(lo, hi))
            cells.append(f"{d:+.1f} [{lo:+.1f}, {hi:+.1f}] {verdict(lo, hi)}")
        if "all-bridges" in args.strategies:
            measured = []
            for c in task.candidates:
                k = sum(scoring.is_hit(answers[(task.pair, i, c.bridge)].answer, w.golds)
                        for i, w in enumerate(task.words))  # fmt: skip
                measured.append((k, -c.rank, c))
            best_k, _, best = max(measured, key=lambda m: (m[0], m[1]))
            chosen_k = next(k for k, _, c in measured if c.rank == 1)
            rank_of_chosen = 1 + sum(k > chosen_k for k, _, _ in measured)
            cells.append(f"{best.bridge} ({100 * best_k / n:.1f}), {best.rank} of {len(measured)}")
            cells.append(f"{rank_of_chosen} of {len(measured)}")
        for s in strategies:
            if s in hits and all(s in hits for s in strategies):
                pooled[s] += hits[s]
        print("| " + " | ".join(cells) + " |")
    n = len(pooled["direct"])
    print(f"\nPooled over the pairs where every strategy applies ({n} words):")
    for s in strategies:
        k = sum(pooled[s])
        lo, hi = wilson(k, n)
        line = f"- {s}: {100 * k / max(n, 1):.1f}% [{lo:.1f}, {hi:.1f}]"
        if s != "direct" and n:
            d, dlo, dhi = scoring.paired_bootstrap(pooled[s], pooled["direct"])
            line += f"; vs direct {d:+.1f} points [{dlo:+.1f}, {dhi:+.1f}]"
        print(line)
    if "english" in pooled and "bridgex" in pooled and n:
        d, lo, hi = scoring.paired_bootstrap(pooled["bridgex"], pooled["english"])
        print(f"- bridgex vs english: {d:+.1f} points [{lo:+.1f}, {hi:+.1f}]")
    for s in routes:
        counts = {v: verdicts[s].count(v) for v in ("helps", "hurts", "no difference")}
        print(f"- {s} per pair: " + ", ".join(f"{v} {c}" for v, c in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
