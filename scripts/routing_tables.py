"""Tables of docs/results/gemma-3-270m-routing.md, read from the index after `calibrate` and `eval` ran.

No upstream call: every answer comes from the index's `eval_answers` cache (asserted), through the public
evaluation API (`prepare`, `served_request`, `follow_served_routes`, `make_jobs`, and the client's cache
lookup).
"""

from pathlib import Path

from bridgex_index.read import bridges
from bridgex_index.results import ResultStore
from bridgex_index.store import open_index, routing_decisions
from index_builder.evaluation import scoring
from index_builder.evaluation.client import AnswerCache, TranslateClient
from index_builder.evaluation.config import EvalConfig
from index_builder.evaluation.run import index_identity, prepare
from index_builder.evaluation.tasks import follow_served_routes, make_jobs, served_request

INDEX = Path("artifacts/gemma-3-270m.duckdb")
PAIRS_ARG = "sw-he,id-ja,sw-ja,he-ar,fi-hu,ar-sw,hu-id,ja-fi,he-de,sw-fr,fi-es,id-zh"
PAIRS = [tuple(p.split("-")) for p in PAIRS_ARG.split(",")]
STRATEGIES = ("direct", "english", "bridgex", "calibrated")
MISSING = "run `bridgex-index eval` first: answers are missing"


def main() -> None:
    calibration_half()
    for fallback in (True, False):
        evaluation_half(fallback)


def _calibration_data(con) -> tuple[dict, dict, dict, dict]:
    """(decision rows, candidate cells, direct accuracy, HSIC ranks) of the latest calibration run."""
    columns = ("decision", "bridge", "direct_accuracy", "bridge_accuracy", "n", "gain", "ci_low", "ci_high")
    dec = {
        pair: (*pair, *(row[c] for c in columns), row["p_value"])
        for pair, row in routing_decisions(con).items()
    }
    cal_run = con.execute(
        "SELECT run_id FROM evaluation_runs WHERE command LIKE 'bridgex-index calibrate%'"
        " ORDER BY created_at DESC LIMIT 1"
    ).fetchone()[0]
    cand: dict = {}
    for s, t, b, acc, n, copies in con.execute(
        "SELECT source,target,bridge,accuracy,n,copies FROM evaluations"
        " WHERE run_id=? AND strategy='all-bridges'",
        [cal_run],
    ).fetchall():
        cand.setdefault((s, t), {})[b] = (acc, n, copies)
    direct_cal = {
        (s, t): a
        for s, t, a in con.execute(
            "SELECT source,target,accuracy FROM evaluations WHERE run_id=? AND strategy='direct'", [cal_run]
        ).fetchall()
    }
    ranks: dict = {}
    for row in bridges(con, top=3):
        ranks.setdefault((row.source, row.target), {})[row.bridge] = (row.rank, row.probability)
    return dec, cand, direct_cal, ranks


def calibration_half() -> None:
    """Per pair: direct and the top-3 bridges on the calibration half, the best measured, the decision."""
    con = open_index(INDEX)
    try:
        dec, cand, direct_cal, ranks = _calibration_data(con)
    finally:
        con.close()
    print("## calibration half")
    print(
        "| pair | n | direct | rank 1 | rank 2 | rank 3 | best measured | decision | gain [95% CI] | Holm p |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    agree = 0
    for pr in PAIRS:
        d = dec[pr]
        cs = cand[pr]
        byrank = sorted(cs, key=lambda b: ranks[pr][b][0])
        cells = [f"{b} {cs[b][0]:.1f}" for b in byrank]
        best = max(cs.values(), key=lambda v: v[0])[0]
        bests = [b for b in byrank if cs[b][0] == best]
        agree += byrank[0] in bests
        gain = f"{100 * d[7]:+.1f} [{100 * d[8]:+.1f}, {100 * d[9]:+.1f}]" if d[7] is not None else "-"
        print(
            f"| {pr[0]}→{pr[1]} | {d[6]} | {direct_cal[pr]:.1f} | "
            + " | ".join(cells)
            + f" | {','.join(bests)} | {d[2]} | {gain} | {d[10]:.3g} |"
        )
    print(f"HSIC rank 1 is (one of) the best measured of the top 3 in {agree} of {len(PAIRS)} pairs")


def _cached_answers(cfg: EvalConfig) -> tuple[list, dict]:
    """The evaluation's tasks (their served routes filled in) and every job's answer, all from the cache."""
    data, tasks = prepare(cfg, lambda m: None)
    client = TranslateClient(
        AnswerCache(ResultStore(INDEX), cfg.model),
        index_identity(data),
        endpoint=cfg.endpoint,
        api_key=None,
        timeout=cfg.timeout,
        concurrency=cfg.concurrency,
    )
    got: dict = {}
    served = [served_request(cfg, task) for task in tasks]
    assert not client.cached(served, got), MISSING
    follow_served_routes(cfg, tasks, served, got)
    jobs = make_jobs(cfg, tasks)
    assert not client.cached([r for _k, r in jobs], got), MISSING
    return tasks, {key: got[request] for key, request in jobs}


def evaluation_half(fallback: bool) -> None:
    """Per pair and pooled: P@1 of every strategy on the evaluation half, with or without copy fallback."""
    cfg = EvalConfig(
        index=INDEX,
        endpoint="http://127.0.0.1:9/v1",
        model="gemma-3-270m",
        pairs=PAIRS,
        dictionaries="cldr",
        strategies=STRATEGIES,
        words="evaluation",
        limit=80,
        concurrency=64,
        copy_fallback=fallback,
    )
    tasks, answers = _cached_answers(cfg)
    print(f"\n## evaluation half, copy fallback {'on' if fallback else 'off'}")
    print("| pair | n | direct | English | BridgeX (rank 1) | calibrated (route) | fallback rate BridgeX |")
    print("|---|---|---|---|---|---|---|")
    tot = {k: [0, 0] for k in STRATEGIES}
    fbs = [0, 0]
    for task in tasks:
        arms = dict(task.strategy_arms(cfg.strategies))
        row = {}
        for st, arm in arms.items():
            res = [answers[(task.pair, i, arm)] for i in range(len(task.words))]
            h = sum(scoring.is_hit(r.answer, w.golds) for r, w in zip(res, task.words, strict=True))
            row[st] = 100 * h / len(res)
            tot[st][0] += h
            tot[st][1] += len(res)
            if st == "bridgex":
                f = sum(r.fallback is not None for r in res)
                fbs[0] += f
                fbs[1] += len(res)
                row["fb"] = 100 * f / len(res)
        route = arms["calibrated"] or "direct"
        print(
            f"| {task.source}→{task.target} | {len(task.words)} | {row['direct']:.1f} | "
            f"{row['english']:.1f} | {row['bridgex']:.1f} ({task.chosen or 'direct'}) | "
            f"{row['calibrated']:.1f} ({route}) | {row.get('fb', 0):.0f}% |"
        )
    pooled = " | ".join(f"{100 * h / n:.2f}" for h, n in tot.values())
    print(f"| pooled | {tot['direct'][1]} | {pooled} | {100 * fbs[0] / fbs[1]:.0f}% |")


if __name__ == "__main__":
    main()
