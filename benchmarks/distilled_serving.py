"""The distilled mode as shipped (issue 20): `bridgex-index distill`, then direct, the English pivot and the
distilled mode through a real bridgex-serve on vLLM, quality and cost side by side in one run.

1. `--index` is copied into `--work` (the distilled sets, answer caches and results go there; `--index` is
   never written). vLLM is started on `--model-dir` with its statistics on (prefix-cache counters).
2. Distil: `index_builder.evaluation.distill` (the command's own function) for every pair: sentences of the
   calibration half of the shipped set asked through the English pivot, the first `--k` clean answers kept.
3. Quality: `bridgex-index eval`'s `evaluate` with strategies direct, english and distilled on the
   evaluation half (every sentence of it unless `--limit`): the half the demonstrations were not taken from.
   chrF++ per pair, the mean over pairs, gains over direct and distilled − english with 95% paired-bootstrap
   intervals (stratified by pair), and the share of the English pivot's gain the distilled mode keeps.
4. Cost: a bridgex-serve in front of the same vLLM; passes over the first `--cost-limit` evaluation sentences
   of every pair through its `/v1/translate`, ONE text per request (a production client's shape),
   `--concurrency` in flight: direct (`route: direct`) and distilled (`mode: distilled`) twice in ABBA order,
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
import re
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

ARMS = {"direct": None, "english": "en", "distilled": DISTILLED_ARM}  # strategy → eval arm
PASS_OPTIONS = {
    "direct": {"route": "direct"},
    "distilled": {"mode": "distilled"},
    "english": {"bridge": "en"},
}
PASS_ORDER = ("direct", "distilled", "distilled", "direct", "english")
PREFIX_METRIC = re.compile(r"^vllm:prefix_cache_(queries|hits)(?:_total)?(?:\{[^}]*\})?\s+(\S+)$")


def prefix_counters(url: str) -> dict[str, float] | None:
    """vLLM's prefix-cache counters (tokens queried, tokens hit), None when its /metrics has none."""
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


def groups(result, strategy: str, baseline: str, pair: tuple[str, str] | None = None) -> list[tuple]:
    """Per pair (answers, baseline answers, references, target) for `paired_bootstrap_mean`; one pair's
    only when `pair` is given."""
    out = []
    for task in result.tasks:
        if pair is not None and task.pair != pair:
            continue
        n = len(task.words)
        a = [result.answers[(task.pair, i, ARMS[strategy])].answer for i in range(n)]
        b = [result.answers[(task.pair, i, ARMS[baseline])].answer for i in range(n)]
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
        "--cached",
        action="store_true",
        help="the report again from --work (every answer cached, the passes in runs.json): no model",
    )
    args = ap.parse_args()

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
        cfg = config(strategies=("direct", "english", "distilled"), words="evaluation", limit=args.limit)
        result = evaluate(cfg, quiet=True, log=lambda _m: None)
        print(f"== evaluated in {time.perf_counter() - t0:.0f} s ({result.upstream_calls} asked)", flush=True)

        if args.cached:
            runs = json.loads((args.work / "runs.json").read_text())
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
        per_pair.setdefault(f"{cell.source}-{cell.target}", {})[cell.strategy] = cell.scores[chrf]
    print(f"\n== chrF++ on the evaluation half ({sum(len(t.words) for t in result.tasks)} sentences)")
    print(
        f"{'pair':7} {'n':>4} {'direct':>7} {'english':>8} {'distilled':>9} {'demos':>5}  "
        f"{'english − direct':>20} {'distilled − direct':>20} {'distilled − english':>20}"
    )
    demos = {r.name.replace("→", "-"): len(r.kept) for r in made}
    for task in result.tasks:
        name = f"{task.source}-{task.target}"
        s = per_pair[name]
        shown = []
        for a, b in (("english", "direct"), ("distilled", "direct"), ("distilled", "english")):
            c = sentence_scoring.paired_bootstrap_mean(
                chrf, groups(result, a, b, task.pair), n_boot=args.boot
            )
            shown.append(f"{c.delta:+.2f} [{c.low:+.2f}, {c.high:+.2f}]")
        print(
            f"{name:7} {len(task.words):>4} {s['direct']:>7.2f} {s['english']:>8.2f} {s['distilled']:>9.2f} "
            f"{demos.get(name, 0):>5}  " + " ".join(f"{x:>20}" for x in shown)
        )
    means = {k: float(np.mean([s[k] for s in per_pair.values()])) for k in ARMS}
    comps = {
        label: sentence_scoring.paired_bootstrap_mean(chrf, groups(result, a, b), n_boot=args.boot)
        for label, a, b in (
            ("english_gain", "english", "direct"),
            ("distilled_gain", "distilled", "direct"),
            ("distilled_vs_english", "distilled", "english"),
        )
    }
    kept = (
        comps["distilled_gain"].delta / comps["english_gain"].delta
        if comps["english_gain"].delta > 0
        else float("nan")
    )
    print(
        f"mean over pairs: direct {means['direct']:.2f}, english {means['english']:.2f}, "
        f"distilled {means['distilled']:.2f}"
    )
    for label, c in comps.items():
        print(f"  {label}: {c.delta:+.2f} [{c.low:+.2f}, {c.high:+.2f}]")
    print(f"  distilled keeps {100 * kept:.0f}% of the English pivot's gain")

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

    ratio = rate("distilled") / rate("direct")
    first = runs[1]["n"] / runs[1]["seconds"] / (runs[0]["n"] / runs[0]["seconds"])
    second = runs[2]["n"] / runs[2]["seconds"] / (runs[3]["n"] / runs[3]["seconds"])
    print(f"distilled / direct answers/s: {ratio:.3f} (AB {first:.3f}, BA {second:.3f})")
    hits = [r["hit"] for r in runs if r["arm"] == "distilled" and r["hit"] is not None]
    hit = float(np.mean(hits)) if hits else float("nan")
    (args.work / "runs.json").write_text(json.dumps(runs, indent=1))
    c = comps
    print(
        f"RESULT pairs={len(result.tasks)} sentences={sum(len(t.words) for t in result.tasks)} k={args.k}"
        f" direct={means['direct']:.2f} english={means['english']:.2f} distilled={means['distilled']:.2f}"
        f" english_gain={c['english_gain'].delta:.2f} english_gain_lo={c['english_gain'].low:.2f}"
        f" english_gain_hi={c['english_gain'].high:.2f}"
        f" distilled_gain={c['distilled_gain'].delta:.2f} distilled_gain_lo={c['distilled_gain'].low:.2f}"
        f" distilled_gain_hi={c['distilled_gain'].high:.2f} kept={kept:.2f}"
        f" distilled_vs_english={c['distilled_vs_english'].delta:.2f}"
        f" distilled_vs_english_lo={c['distilled_vs_english'].low:.2f}"
        f" distilled_vs_english_hi={c['distilled_vs_english'].high:.2f}"
        f" answers_per_s_direct={rate('direct'):.3f} answers_per_s_distilled={rate('distilled'):.3f}"
        f" answers_per_s_english={rate('english'):.3f} speed_ratio={ratio:.3f} speed_ratio_ab={first:.3f}"
        f" speed_ratio_ba={second:.3f} prefix_hit_distilled={hit:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
