"""Direct vs the HSIC rank-1 bridge with gold vs model-made demonstration bridge words on Gemma 3 270M
(docs/results/gemma-3-270m-routing.md): every answer from the index's cache, no server needed."""

from __future__ import annotations

import asyncio
from pathlib import Path

from index_builder import evaluation as ev
from index_builder import scoring

INDEX = Path("artifacts/gemma-3-270m.duckdb")
PAIRS = ev.parse_pairs("sw-he,id-ja,sw-ja,he-ar,fi-hu,ar-sw,hu-id,ja-fi,he-de,sw-fr,fi-es,id-zh")


def run(demo_bridges: str, fallback: bool):
    cfg = ev.EvalConfig(
        index=INDEX,
        endpoint="http://127.0.0.1:9/v1",
        model="gemma-3-270m",
        pairs=PAIRS,
        dictionaries="cldr",
        strategies=("direct", "bridgex"),
        words="evaluation",
        limit=80,
        concurrency=64,
        copy_fallback=fallback,
        demo_bridges=demo_bridges,
    )
    data, tasks, jobs = ev.prepare(cfg, lambda m: None)
    cache = ev.AnswerCache(ev.ResultStore(INDEX), cfg.model)
    up = ev.Upstream(cfg, cache)
    req = ev._request(cfg)
    answers: dict = {}

    async def go():
        nonlocal jobs
        if demo_bridges == "model":
            await ev.make_model_demos(tasks, ev.prompt_names(data), req, up)
            jobs = ev.make_jobs(cfg, tasks, ev.prompt_names(data))
        return await ev._run_all(jobs, req, up, answers, True, fallback)

    err = asyncio.run(go())
    assert err is None and cache.misses == 0, (err, cache.misses)
    out = {}
    for task in tasks:
        row = {}
        for st, arm in task.strategy_arms(cfg.strategies):
            res = [answers[(task.pair, i, arm)] for i in range(len(task.words))]
            row[st] = sum(scoring.is_hit(r.answer, w.golds) for r, w in zip(res, task.words, strict=True))
            if st == "bridgex":
                row["fb"] = sum(r.fallback is not None for r in res)
        made = task.model_demos.get(task.chosen, [])
        row["demo_copies"] = sum(
            ev.rewrite.is_copy(d[task.source], b) for d, b in zip(task.demos, made, strict=False)
        )
        row["demos"] = len(made)
        row["n"] = len(task.words)
        row["bridge"] = task.chosen
        row["made"] = made
        row["gold"] = [d[task.chosen] for d in task.demos]
        out[task.pair] = row
    return out


gold = run("gold", False)
model = run("model", False)
model_fb = run("model", True)
print(
    "| pair | n | direct | HSIC bridge, gold demos | HSIC bridge, model demos | model demos + fallback "
    "| fallback rate | model demo words copying the source |"
)
print("|---|---|---|---|---|---|---|---|")
tot = dict.fromkeys(("n", "d", "g", "m", "f", "fb", "dc", "dn"), 0)
for pair in PAIRS:
    g, m, f = gold[pair], model[pair], model_fb[pair]
    n = g["n"]
    pct = lambda h, n=n: f"{100 * h / n:.1f}"  # noqa: E731
    print(
        f"| {pair[0]}→{pair[1]} | {n} | {pct(g['direct'])} | {pct(g['bridgex'])} ({g['bridge']}) | "
        f"{pct(m['bridgex'])} | {pct(f['bridgex'])} | {100 * f['fb'] / n:.0f}% | "
        f"{m['demo_copies']}/{m['demos']} |"
    )
    for k, v in (
        ("n", n),
        ("d", g["direct"]),
        ("g", g["bridgex"]),
        ("m", m["bridgex"]),
        ("f", f["bridgex"]),
        ("fb", f["fb"]),
        ("dc", m["demo_copies"]),
        ("dn", m["demos"]),
    ):
        tot[k] += v
N = tot["n"]
print(
    f"| pooled | {N} | {100 * tot['d'] / N:.2f} | {100 * tot['g'] / N:.2f} | {100 * tot['m'] / N:.2f} | "
    f"{100 * tot['f'] / N:.2f} | {100 * tot['fb'] / N:.0f}% | {tot['dc']}/{tot['dn']} "
    f"({100 * tot['dc'] / max(tot['dn'], 1):.0f}%) |"
)
print()
for pair in PAIRS:
    print(
        f"{pair[0]}→{pair[1]} via {gold[pair]['bridge']}: "
        f"gold {gold[pair]['gold']} model {model[pair]['made']}"
    )
