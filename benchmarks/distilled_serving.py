"""The distilled mode as shipped (issue 20): `bridgex-index distill`, then direct, the English pivot and the
distilled mode through a real bridgex-serve on vLLM, quality and cost side by side in one run.

1. `--index` is copied into `--work` (the distilled sets, answer caches and results go there; `--index` is
   never written). vLLM is started on `--model-dir` with its statistics on (prefix-cache counters).
2. Distil: `index_builder.evaluation.distill` (the command's own function) for every pair: sentences of the
   calibration half of the shipped set asked through the English pivot, the first `--k` clean answers kept.
   The command's check (default 40 other calibration-half sentences) stores a pair's set only when it beats
   direct there.
3. Quality: `bridgex-index eval`'s `evaluate` with strategies direct, english and calibrated (`served`:
   the server's own route, `route: auto`: distilled where a set was stored, else the route policy's route)
   on the evaluation half (every sentence of it unless `--limit`): the half the demonstrations and the check
   were not taken from. chrF++ per pair, the mean over pairs, gains over direct and served − english with
   95% paired-bootstrap intervals (stratified by pair), and the share of the English pivot's gain kept.
4. Cost: a bridgex-serve in front of the same vLLM; passes over the first `--cost-limit` evaluation sentences
   of every pair through its `/v1/translate`, ONE text per request (a production client's shape),
   `--concurrency` in flight: direct (`route: direct`) and served (`route: auto`) twice in ABBA order,
   the English pivot once. Before each pass vLLM's prefix cache is emptied and each pair's prompt warmed by
   one untimed request. Answers/s, prompt and generated tokens per answer (the proxy's usage), and vLLM's
   prefix-cache hit rate during the pass.

Ends with `RESULT ...`. Run (Qwen2.5-Coder-1.5B; about an hour on 2 CPU cores):
    .venv/bin/python benchmarks/distilled_serving.py --index artifacts/policy/qwen.duckdb \
        --model-dir .cache/bridgex/models/qwen2.5-coder-1.5b-instruct --name qwen2.5-coder-1.5b-instruct \
        --pairs ar-fr,ar-de,he-fr,he-de,sw-fr,sw-es,ja-fr,id-fr --work artifacts/distilled-serving
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from index_builder.evaluation import sentence_scoring  # noqa: E402
from index_builder.evaluation.config import EvalConfig, parse_pairs  # noqa: E402
from index_builder.evaluation.tasks import DISTILLED_ARM  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from beyond_route import prefix_counters  # noqa: E402  (vLLM's prefix-cache counters, one reader)

# strategy → eval arm; `served` is eval's `calibrated` strategy, the server's own route (`route: auto`): the
# distilled mode for a pair whose set `distill` stored, else the route policy's route
ARMS = {"direct": None, "english": "en", "served": None}
PASS_OPTIONS = {
    "direct": {"route": "direct"},
    "served": {},
    "english": {"bridge": "en"},
}
PASS_ORDER = ("direct", "served", "served", "direct", "english")


async def translate_pass(
    proxy: str, model: str, jobs: list[tuple[str, str, str]], options: dict, concurrency: int
) -> tuple[float, Counter, list[str]]:
    """Every (source, target, text) as its own `/v1/translate` request, `concurrency` in flight: wall seconds,
    summed usage, the answers' modes."""
    import httpx

    usage: Counter = Counter()
    modes: list[str] = []
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=proxy, timeout=httpx.Timeout(900.0, connect=10.0)) as client:

        async def one(source: str, target: str, text: str) -> None:
            body = {"q": [text], "source": source, "target": target, "model": model, "task": "translate"}
            async with gate:
                response = await client.post("/v1/translate", json={**body, **options, "temperature": 0.0})
            response.raise_for_status()
            answer = response.json()
            usage.update({k: int(v) for k, v in answer["usage"].items() if k.endswith("_tokens")})
            modes.append(answer["translations"][0]["mode"])

        t0 = time.perf_counter()
        await asyncio.gather(*(one(*job) for job in jobs))
        return time.perf_counter() - t0, usage, modes


def cost(args, vllm: str, proxy: str, sentences: dict, warm: dict) -> list[dict]:
    """The timed passes (module docstring, step 4)."""
    import httpx

    jobs = [(s, t, text) for (s, t), texts in sentences.items() for text in texts[: args.cost_limit]]
    runs = []
    for arm in PASS_ORDER:
        reset = httpx.post(f"{vllm}/reset_prefix_cache", timeout=60.0).status_code == 200
        asyncio.run(
            translate_pass(proxy, args.name, list(warm.values()), PASS_OPTIONS[arm], args.concurrency)
        )
        before = prefix_counters(vllm)
        seconds, usage, modes = asyncio.run(
            translate_pass(proxy, args.name, jobs, PASS_OPTIONS[arm], args.concurrency)
        )
        after = prefix_counters(vllm)
        hit = (
            (after["hits"] - before["hits"]) / max(1.0, after["queries"] - before["queries"])
            if after
            else None
        )
        run = {
            "arm": arm,
            "seconds": seconds,
            "n": len(jobs),
            "usage": dict(usage),
            "hit": hit,
            "reset": reset,
        }
        run["modes"] = dict(Counter(modes))
        runs.append(run)
        print(
            f"  pass {arm}: {len(jobs) / seconds:.3f} answers/s, usage {dict(usage)}, prefix hit {hit}",
            flush=True,
        )
    return runs


def arm_of(task, strategy: str) -> str | None:
    """The eval arm of a strategy for one pair (`served`: the route the server took for it)."""
    return task.served if strategy == "served" else ARMS[strategy]


def served_label(task) -> str:
    """What the server served the pair: distilled, a bridge, or direct."""
    return "distilled" if task.served == DISTILLED_ARM else task.served or "direct"


def check_of(r) -> str:
    """A pair's check as the table shows it: the gain on the check sentences, `-` when unchecked."""
    return f"{r.checked.delta:+.1f}" if r.checked is not None else "-"


def reused(runs: list[dict], result) -> list[dict]:
    """The passes of an earlier run: its `served` passes as they are (the same sets, the same route), or
    an older run's distilled passes (`mode: distilled`) when every pair is served distilled now. Else an
    error: the passes must be run again."""
    if any(r["arm"] == "distilled" for r in runs):
        if any(task.served != DISTILLED_ARM for task in result.tasks):
            raise SystemExit("error: --reuse-cost: not every pair is served distilled now; run the passes")
        return [{**r, "arm": "served" if r["arm"] == "distilled" else r["arm"]} for r in runs]
    return runs


def groups(result, strategy: str, baseline: str, pair: tuple[str, str] | None = None) -> list[tuple]:
    """Per pair (answers, baseline answers, references, target) for `paired_bootstrap_mean`; one pair's
    only when `pair` is given."""
    out = []
    for task in result.tasks:
        if pair is not None and task.pair != pair:
            continue
        n = len(task.words)
        a = [result.answers[(task.pair, i, arm_of(task, strategy))].answer for i in range(n)]
        b = [result.answers[(task.pair, i, arm_of(task, baseline))].answer for i in range(n)]
        out.append((a, b, [w.golds[0] for w in task.words], task.target))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--model-dir", type=Path, help="the model folder (not with --cached)")
    ap.add_argument("--name", required=True, help="the served model name")
    ap.add_argument("--pairs", required=True)
    ap.add_argument("--work", type=Path, default=Path("artifacts/distilled-serving"))
    ap.add_argument("--k", type=int, default=6, help="distilled demonstrations per pair")
    ap.add_argument("--limit", type=int, help="evaluation sentences per pair (default: the whole half)")
    ap.add_argument("--cost-limit", type=int, default=40, help="sentences per pair in each timed pass")
    ap.add_argument("--concurrency", type=int, default=8, help="requests in flight in the timed passes")
    ap.add_argument("--boot", type=int, default=2000)
    ap.add_argument(
        "--reuse-cost",
        action="store_true",
        help="the passes of an earlier run (--work/runs.json), its distilled passes the served route now",
    )
    ap.add_argument(
        "--cached",
        action="store_true",
        help="the report again from --work (every answer cached, the passes in runs.json): no model",
    )
    args = ap.parse_args()
    if args.model_dir is None and not args.cached:
        ap.error("--model-dir is required (unless --cached)")

    from bridgex_serve.launch import VllmServer
    from index_builder.evaluation.client import bridgex_server
    from index_builder.evaluation.distill import DistillConfig, distill
    from index_builder.evaluation.run import evaluate

    args.work.mkdir(parents=True, exist_ok=True)
    index = args.work / args.index.name
    if not index.exists():
        shutil.copyfile(args.index, index)
    pairs = parse_pairs(args.pairs)
    os.environ["VLLM_SERVER_DEV_MODE"] = "1"  # /reset_prefix_cache between passes
    with contextlib.ExitStack() as stack:
        if args.cached:
            vllm = "http://127.0.0.1:9"  # never asked: a missing answer fails the run
        else:
            t0 = time.perf_counter()
            server = VllmServer(
                args.model_dir, name=args.name, log=args.work / "vllm.log", start_timeout=900, stats=True
            )
            vllm = stack.enter_context(server).url
            print(f"== vLLM up in {time.perf_counter() - t0:.0f} s", flush=True)

        def config(**fields) -> EvalConfig:
            return EvalConfig(
                index=index,
                endpoint=vllm + "/v1",
                model=args.name,
                pairs=pairs,
                dictionaries="",
                task="translate",
                concurrency=8,
                timeout=900.0,
                **fields,
            )

        t0 = time.perf_counter()
        made = distill(DistillConfig(config(), k=args.k))
        print(f"== distilled in {time.perf_counter() - t0:.0f} s", flush=True)
        for r in made:
            print(f"  {r.name}: {len(r.kept)} of {r.asked} asked, rejected {r.rejected}")

        t0 = time.perf_counter()
        cfg = config(strategies=("direct", "english", "calibrated"), words="evaluation", limit=args.limit)
        result = evaluate(cfg, quiet=True, log=lambda _m: None)
        print(f"== evaluated in {time.perf_counter() - t0:.0f} s ({result.upstream_calls} asked)", flush=True)

        if args.cached or args.reuse_cost:
            runs = json.loads((args.work / "runs.json").read_text())
            if args.reuse_cost:
                runs = reused(runs, result)
        else:
            sentences = {task.pair: [w.word for w in task.words] for task in result.tasks}
            warm = {pair: (pair[0], pair[1], texts[-1]) for pair, texts in sentences.items()}  # never timed
            proxy = stack.enter_context(bridgex_server(vllm + "/v1", index, None, 64, print))
            runs = cost(args, vllm, proxy, sentences, warm)

    return report(args, result, made, runs)


def report(args, result, made, runs) -> int:
    """The quality table, the comparisons, the cost table and the RESULT line."""
    chrf = sentence_scoring.CHRF_PP
    per_pair = {}
    for cell in result.sentence_cells:
        strategy = "served" if cell.strategy == "calibrated" else cell.strategy
        per_pair.setdefault(f"{cell.source}-{cell.target}", {})[strategy] = cell.scores[chrf]
    print(f"\n== chrF++ on the evaluation half ({sum(len(t.words) for t in result.tasks)} sentences)")
    print(
        f"{'pair':7} {'n':>4} {'direct':>7} {'english':>8} {'served':>7} {'as':>9} {'demos':>5} "
        f"{'check':>6}  "
        f"{'english − direct':>20} {'served − direct':>20} {'served − english':>20}"
    )
    made_by = {r.name.replace("→", "-"): r for r in made}
    for task in result.tasks:
        name = f"{task.source}-{task.target}"
        s = per_pair[name]
        shown = []
        for a, b in (("english", "direct"), ("served", "direct"), ("served", "english")):
            c = sentence_scoring.paired_bootstrap_mean(
                chrf, groups(result, a, b, task.pair), n_boot=args.boot
            )
            shown.append(f"{c.delta:+.2f} [{c.low:+.2f}, {c.high:+.2f}]")
        print(
            f"{name:7} {len(task.words):>4} {s['direct']:>7.2f} {s['english']:>8.2f} {s['served']:>7.2f} "
            f"{served_label(task):>9} {len(made_by[name].kept):>5} {check_of(made_by[name]):>6}  "
            + " ".join(f"{x:>20}" for x in shown)
        )
    means = {k: float(np.mean([s[k] for s in per_pair.values()])) for k in ARMS}
    comps = {
        label: sentence_scoring.paired_bootstrap_mean(chrf, groups(result, a, b), n_boot=args.boot)
        for label, a, b in (
            ("english_gain", "english", "direct"),
            ("served_gain", "served", "direct"),
            ("served_vs_english", "served", "english"),
        )
    }
    kept = (
        comps["served_gain"].delta / comps["english_gain"].delta
        if comps["english_gain"].delta > 0
        else float("nan")
    )
    print(
        f"mean over pairs: direct {means['direct']:.2f}, english {means['english']:.2f}, "
        f"served {means['served']:.2f}"
    )
    for label, c in comps.items():
        print(f"  {label}: {c.delta:+.2f} [{c.low:+.2f}, {c.high:+.2f}]")
    print(f"  the served route keeps {100 * kept:.0f}% of the English pivot's gain")

    print(f"\n== cost: {runs[0]['n']} answers a pass, {args.concurrency} requests in flight, one text each")
    print(f"{'pass':10} {'answers/s':>9} {'prompt tok/ans':>14} {'gen tok/ans':>11} {'prefix hit':>10}")
    for r in runs:
        u = r["usage"]
        hit = f"{r['hit']:.3f}" if r["hit"] is not None else "-"
        print(
            f"{r['arm']:10} {r['n'] / r['seconds']:>9.3f} {u.get('prompt_tokens', 0) / r['n']:>14.0f} "
            f"{u.get('completion_tokens', 0) / r['n']:>11.1f} {hit:>10}"
        )

    def rate(arm: str) -> float:
        return float(np.mean([r["n"] / r["seconds"] for r in runs if r["arm"] == arm]))

    ratio = rate("served") / rate("direct")
    stored = sum(r.stored for r in made)
    first = runs[1]["n"] / runs[1]["seconds"] / (runs[0]["n"] / runs[0]["seconds"])
    second = runs[2]["n"] / runs[2]["seconds"] / (runs[3]["n"] / runs[3]["seconds"])
    print(f"served / direct answers/s: {ratio:.3f} (AB {first:.3f}, BA {second:.3f})")
    hits = [r["hit"] for r in runs if r["arm"] == "served" and r["hit"] is not None]
    hit = float(np.mean(hits)) if hits else float("nan")
    (args.work / "runs.json").write_text(json.dumps(runs, indent=1))
    c = comps
    print(
        f"RESULT pairs={len(result.tasks)} sentences={sum(len(t.words) for t in result.tasks)} k={args.k}"
        f" sets_stored={stored}"
        f" direct={means['direct']:.2f} english={means['english']:.2f} served={means['served']:.2f}"
        f" english_gain={c['english_gain'].delta:.2f} english_gain_lo={c['english_gain'].low:.2f}"
        f" english_gain_hi={c['english_gain'].high:.2f}"
        f" served_gain={c['served_gain'].delta:.2f} served_gain_lo={c['served_gain'].low:.2f}"
        f" served_gain_hi={c['served_gain'].high:.2f} kept={kept:.2f}"
        f" served_vs_english={c['served_vs_english'].delta:.2f}"
        f" served_vs_english_lo={c['served_vs_english'].low:.2f}"
        f" served_vs_english_hi={c['served_vs_english'].high:.2f}"
        f" answers_per_s_direct={rate('direct'):.3f} answers_per_s_served={rate('served'):.3f}"
        f" answers_per_s_english={rate('english'):.3f} speed_ratio={ratio:.3f} speed_ratio_ab={first:.3f}"
        f" speed_ratio_ba={second:.3f} prefix_hit_served={hit:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
