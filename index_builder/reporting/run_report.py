"""What an `eval` or `calibrate` run prints and the report it writes: the run's metadata (model, endpoint,
index, test set, settings, timing), the lines shown on the terminal, and the files (`markdown`).

The commands (`cli/eval_cmds`) only echo what these functions return.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .markdown import summary_lines, table, write_report, write_sentence_report


def word_meta(cfg, result) -> dict[str, str]:
    """The settings table of a word (P@1) report: `cfg` an `EvalConfig`, `result` its `RunResult`."""
    prov = result.provenance
    model_name = Path(prov.get("model", "?")).name  # a committed report must not name this machine's paths
    return {
        "model": cfg.model,
        "endpoint": cfg.endpoint,
        "index": f"{Path(cfg.index).name} (built from {model_name}, {prov.get('created_at', '?')})",
        "dictionaries": word_test_set_line(cfg.test_set) if cfg.test_set else cfg.dictionaries,
        "mode": cfg.mode,
        "shots": str(cfg.shots),
        "test words per pair": str(cfg.limit) if cfg.limit else "all",
        "strategies": ", ".join(cfg.strategies),
        "prompt style": cfg.prompt_style,
        "copy fallback": "on (as the proxy serves)"
        if cfg.copy_fallback
        else "off (the bridged answer as is)",
        "answers": "bridgex-serve /v1/translate (its prompts, demonstrations, routes and copy fallback)",
        **_run_lines(result, "words asked"),
    }


def sentence_meta(cfg, result) -> dict[str, str]:
    """The settings list of a `--task translate` report."""
    test_set = cfg.test_set or {}
    return {
        "model": cfg.model,
        "endpoint": cfg.endpoint,
        "index": str(cfg.index),
        "test set": f"{test_set.get('name')} ({test_set.get('kind')}, sha256 {test_set.get('sha256')})",
        "sentences per pair": str(cfg.limit) if cfg.limit else "all",
        "mode": cfg.mode,
        "shots": str(cfg.shots),
        "prompt style": cfg.prompt_style,
        "strategies": ", ".join(cfg.strategies),
        "answers": "bridgex-serve /v1/translate, task translate (the proxy's prompts and routes)",
        **_run_lines(result, "sentences asked"),
    }


def _run_lines(result, asked: str) -> dict[str, str]:
    return {
        "run": f"{result.run_id}, {result.created_at:%Y-%m-%d %H:%M} UTC, {result.seconds:.0f} s",
        asked: f"{result.upstream_calls} (+{result.cached_calls} answered from the cache)",
    }


def word_test_set_line(test_set: dict) -> str:
    """The report's line for a `--test-dict-dir` test set: its name (which says how many probe words were
    dropped, `WordTestSet.without`), where it is and its hash."""
    where = "shipped in index_builder/data/words" if test_set.get("kind") == "shipped" else test_set["path"]
    return f"test set {test_set['name']} ({where}, sha256 {str(test_set['sha256'])[:16]}…)"


def calibrated_lines(result, strategies: Sequence[str] = ()) -> list[str]:
    """Per pair and pooled: the calibrated strategy's accuracy next to direct's (empty when not asked), and
    pooled, its paired gain over direct with a 95% bootstrap interval when `strategies` asked both."""
    from ..evaluation.results import paired_gains

    cells = {(c.source, c.target, c.strategy): c for c in result.cells}
    lines, hits, direct_hits, n = [], 0, 0, 0
    for task in result.tasks:
        cal, direct = cells.get((*task.pair, "calibrated")), cells.get((*task.pair, "direct"))
        if cal is None:
            continue
        served = task.served or "direct"
        route = f"{served} (stored)" if task.decision else f"uncalibrated → {served}"
        versus = f", direct {direct.accuracy:.1f}" if direct else ""
        lines.append(
            f"calibrated {task.source}→{task.target}: {cal.accuracy:.1f} via {route}{versus} (n={cal.n})"
        )
        hits, n = hits + cal.hits, n + cal.n
        direct_hits += direct.hits if direct else 0
    if n:
        gain = paired_gains(result.tasks, strategies, result.answers, mine="calibrated").get("direct")
        versus = (
            f"; {gain[0]:+.2f} [{gain[1]:+.2f}, {gain[2]:+.2f}] points, 95% paired bootstrap" if gain else ""
        )
        pooled = f"calibrated pooled: {100 * hits / n:.2f} over {n} words"
        lines.append(f"{pooled} (direct {100 * direct_hits / n:.2f}{versus})")
    return lines


def report_words(cfg, result) -> list[str]:
    """Write a word run's `report.md` and chart into `cfg.out`; return the lines to print (the table, the
    summary, the calibrated routes, what was written)."""
    from ..evaluation.results import category_breakdown, paired_gains

    gains = paired_gains(result.tasks, cfg.strategies, result.answers)
    lines = [table(result.summaries, result.overall), "", *summary_lines(result.overall, gains)]
    lines += calibrated_lines(result, cfg.strategies)
    if "calibrated" in cfg.strategies and cfg.words != "evaluation" and any(t.decision for t in result.tasks):
        lines.append(
            "note: calibrated routes scored on words they may have been calibrated on; use --words evaluation"
        )
    breakdown = category_breakdown(result.tasks, cfg.strategies, result.answers)
    meta = word_meta(cfg, result)
    summaries, overall = result.summaries, result.overall
    report, chart = write_report(cfg.out, summaries, overall, meta, cfg.command, breakdown, gains)
    lines.append(
        f"wrote {report} and {chart}; {result.upstream_calls} upstream calls, {result.cached_calls} cached"
    )
    return lines


def report_sentences(cfg, result) -> list[str]:
    """Write a `--task translate` run's `report.md` into `cfg.out`; return the lines to print."""
    from ..evaluation.sentence_results import cell_lines

    lines = cell_lines(result.sentence_cells)
    report = write_sentence_report(cfg.out, lines, sentence_meta(cfg, result), cfg.command)
    return [*lines, f"wrote {report}; {result.upstream_calls} upstream calls, {result.cached_calls} cached"]


def calibration_lines(done, task: str, index: Path) -> list[str]:
    """What `calibrate` prints: one line per decision, what it was measured on, what was written."""
    lines = ["scores: " + ("corpus chrF++ / 100" if task == "translate" else "P@1 (fraction of words)")]
    lines.append(
        f"{'pair':7} {'decision':8} {'n':>4} {'direct':>6} {'bridge':>10} {'gain':>7} {'95% CI':>15} {'p':>8}"
    )
    for (s, t), d in done.decisions.items():
        bridge = f"{d.bridge_accuracy:.3f} {d.bridge}" if d.bridge else "-"
        gain = f"{d.gain:+.3f}" if d.gain is not None else "-"
        ci = f"[{d.ci_low:+.2f},{d.ci_high:+.2f}]" if d.ci_low is not None else "-"
        p = f"{d.p_value:.3g}" if d.p_value is not None else "-"
        lines.append(
            f"{s}-{t:4} {d.decision:8} {d.n:>4} {d.direct_accuracy:>6.3f} {bridge:>10} {gain:>7} "
            f"{ci:>15} {p:>8}"
        )
    for (s, t), settled in done.settled.items():
        lines.append(f"{s}-{t}: {settled.items} items measured, stopped: {settled.reason}")
    lines.append(f"measured on {done.measured_on}; decision rule {done.rule}")
    lines.append(
        f"wrote {len(done.rows)} {task} routing decisions to {index}; {done.upstream_calls} upstream calls, "
        f"{done.cached_calls} cached"
    )
    lines.append(
        f"route policy ({task}) refitted for {done.policy_pairs} pairs, {done.policy_bridged} of them bridged"
        f" (bridgex-index route {index} --source S --target T --task {task} --explain)"
    )
    return lines
