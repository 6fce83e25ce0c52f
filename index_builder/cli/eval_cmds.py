"""`bridgex-index eval` and `calibrate`: parse, hand over to `evaluation.run` / `evaluation.calibrate`, and
print and write what they measured (`reporting.markdown`)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .common import EXIT_USAGE, fails_cleanly, measuring_options

# ---------------------------------------------------------------------------------------------- evaluation


def _eval_command(cfg, out: Path) -> str:
    """The canonical command line of an evaluation (what the report quotes to reproduce it)."""
    import shlex

    args = ["bridgex-index", "eval", "--index", str(cfg.index), "--endpoint", cfg.endpoint]
    args += ["--model", cfg.model, "--task", cfg.task]
    if cfg.pairs:  # none: a --test-dict-dir's own pairs
        args += ["--pairs", ",".join(f"{s}-{t}" for s, t in cfg.pairs)]
    args += _test_source_args(cfg)
    args += ["--strategies", ",".join(cfg.strategies), "--mode", cfg.mode, "--shots", str(cfg.shots)]
    if cfg.words != "all":
        args += ["--words", cfg.words]
    if cfg.limit is not None:
        args += ["--limit", str(cfg.limit)]
    if not cfg.copy_fallback:
        args += ["--no-copy-fallback"]
    if cfg.prompt_style != "auto":
        args += ["--prompt-style", cfg.prompt_style]
    args += ["--concurrency", str(cfg.concurrency), "--out", str(out)]
    return shlex.join(args)


def _test_source_args(cfg) -> list[str]:
    """The test-set flags of a command line: a sentence set, a word test set or the index's dictionaries."""
    if cfg.task == "translate":
        return ["--test-dir", cfg.test_dir] if cfg.test_dir is not None else []
    if cfg.test_dict_dir is not None:
        return ["--test-dict-dir", cfg.test_dict_dir]
    return ["--dictionaries", "cldr"] if cfg.dictionaries == "cldr" else ["--dict-dir", cfg.dictionaries]


@click.command(name="eval")
@measuring_options(
    "Comma-separated source-target pairs, e.g. sw-he,id-ja (with --test-dict-dir: default its files' pairs).",
    pairs_required=False,
)
@click.option(
    "--strategies",
    default="direct,english,bridgex,all-bridges",
    show_default=True,
    help="Any of direct (no bridge), english (pivot), bridgex (the index's best bridge), calibrated (the "
    "route the server takes: the stored decision, else the best bridge), all-bridges.",
)
@click.option(
    "--words",
    default="all",
    show_default=True,
    type=click.Choice(["all", "calibration", "evaluation"]),
    help="Test words: all, or a half of the salted split; judge `calibrated` on `evaluation` (words "
    "`calibrate` did not decide on).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Report directory for report.md and accuracy.png (default: ./bli-<model>-<mode>).",
)
@click.option("--dry-run", is_flag=True, help="Count the requests (and how many are cached); call nothing.")
@fails_cleanly
def eval_cmd(
    index: Path,
    dict_source,
    dict_dir,
    task,
    test_dir,
    test_dict_dir,
    pairs,
    strategies,
    out,
    quiet,
    dry_run,
    **opts,
) -> None:
    """Bilingual lexicon induction through an endpoint: does the index's bridge beat the alternatives?"""
    import re

    from ..evaluation.client import EvaluationError
    from ..evaluation.config import EvalConfig, parse_pairs, parse_strategies
    from ..evaluation.results import category_breakdown, paired_gains
    from ..evaluation.run import count_requests, evaluate
    from ..reporting.markdown import summary_lines, table, write_report

    try:
        _check_test_source(task, dict_source, dict_dir, test_dir, test_dict_dir, pairs)
        cfg = EvalConfig(
            index=index,
            pairs=parse_pairs(pairs) if pairs is not None else [],
            dictionaries="cldr" if dict_source else str(dict_dir or ""),
            strategies=parse_strategies(strategies),
            task=task,
            test_dir=str(test_dir) if test_dir is not None else None,
            test_dict_dir=test_dict_dir,
            **opts,
        )
        safe_model = re.sub(r"[^A-Za-z0-9._-]+", "_", cfg.model)
        out = out or Path(f"bli-{safe_model}-{cfg.mode}")
        if out.exists() and not out.is_dir():
            raise EvaluationError(f"--out {out} exists and is not a directory")
        cfg.command = _eval_command(cfg, out)
        log = (lambda _m: None) if quiet else None
        if dry_run:
            needed, cached = count_requests(cfg, log)
            click.echo(f"{needed} words to ask bridgex-serve ({cached} cached)")
            return
        result = evaluate(cfg, quiet=quiet, log=log)
    except EvaluationError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(EXIT_USAGE)
    if cfg.task == "translate":
        _report_sentences(cfg, result, out)
        return
    gains = paired_gains(result.tasks, cfg.strategies, result.answers)
    click.echo(table(result.summaries, result.overall))
    click.echo("")
    for line in summary_lines(result.overall, gains):
        click.echo(line)
    for line in _calibrated_lines(result):
        click.echo(line)
    if "calibrated" in cfg.strategies and cfg.words != "evaluation" and any(t.decision for t in result.tasks):
        click.echo(
            "note: calibrated routes scored on words they may have been calibrated on; use --words evaluation"
        )
    prov = result.provenance
    model_name = Path(prov.get("model", "?")).name  # a committed report must not name this machine's paths
    meta = {
        "model": cfg.model,
        "endpoint": cfg.endpoint,
        "index": f"{index.name} (built from {model_name}, {prov.get('created_at', '?')})",
        "dictionaries": _test_set_line(cfg.test_set) if cfg.test_set else cfg.dictionaries,
        "mode": cfg.mode,
        "shots": str(cfg.shots),
        "test words per pair": str(cfg.limit) if cfg.limit else "all",
        "strategies": ", ".join(cfg.strategies),
        "prompt style": cfg.prompt_style,
        "copy fallback": "on (as the proxy serves)"
        if cfg.copy_fallback
        else "off (the bridged answer as is)",
        "answers": "bridgex-serve /v1/translate (its prompts, demonstrations, routes and copy fallback)",
        "run": f"{result.run_id}, {result.created_at:%Y-%m-%d %H:%M} UTC, {result.seconds:.0f} s",
        "words asked": f"{result.upstream_calls} (+{result.cached_calls} answered from the cache)",
    }
    breakdown = category_breakdown(result.tasks, cfg.strategies, result.answers)
    report, chart = write_report(out, result.summaries, result.overall, meta, cfg.command, breakdown, gains)
    click.echo(
        f"wrote {report} and {chart}; {result.upstream_calls} upstream calls, {result.cached_calls} cached"
    )


def _check_test_source(task, dict_source, dict_dir, test_dir, test_dict_dir, pairs) -> None:
    """The test-set flags fit together: sentences (`--task translate`, optional `--test-dir`), the index's
    held-out words (exactly one of `--dictionaries cldr` / `--dict-dir`), or `--test-dict-dir` alone."""
    from ..evaluation.client import EvaluationError

    if task == "translate":
        if dict_source is not None or dict_dir is not None or test_dict_dir is not None:
            raise EvaluationError("--task translate reads sentences (--test-dir), not dictionaries")
        if pairs is None:
            raise EvaluationError("--pairs is required with --task translate")
    elif test_dir is not None:
        raise EvaluationError("--test-dir is a sentence set: give --task translate (or --test-dict-dir)")
    elif test_dict_dir is not None:
        if dict_source is not None or dict_dir is not None:
            raise EvaluationError("--test-dict-dir replaces --dictionaries and --dict-dir: give only it")
    elif (dict_source is None) == (dict_dir is None):
        raise EvaluationError("give exactly one of --dictionaries cldr or --dict-dir DIR")
    elif pairs is None:
        raise EvaluationError("--pairs is required (it is optional only with --test-dict-dir)")


def _report_sentences(cfg, result, out: Path) -> None:
    """Print and write what a `--task translate` run measured."""
    from ..evaluation.sentence_results import cell_lines
    from ..reporting.markdown import write_sentence_report

    lines = cell_lines(result.sentence_cells)
    for line in lines:
        click.echo(line)
    test_set = cfg.test_set or {}
    meta = {
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
        "run": f"{result.run_id}, {result.created_at:%Y-%m-%d %H:%M} UTC, {result.seconds:.0f} s",
        "sentences asked": f"{result.upstream_calls} (+{result.cached_calls} answered from the cache)",
    }
    report = write_sentence_report(out, lines, meta, cfg.command)
    click.echo(f"wrote {report}; {result.upstream_calls} upstream calls, {result.cached_calls} cached")


def _test_set_line(test_set: dict) -> str:
    """The report's line for a `--test-dict-dir` test set: its name (which says how many probe words were
    dropped, `WordTestSet.without`), where it is and its hash."""
    where = "shipped in index_builder/data/words" if test_set.get("kind") == "shipped" else test_set["path"]
    return f"test set {test_set['name']} ({where}, sha256 {str(test_set['sha256'])[:16]}…)"


def _calibrated_lines(result) -> list[str]:
    """Per pair and pooled: the calibrated strategy's accuracy next to direct's (empty when not asked)."""
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
        lines.append(
            f"calibrated pooled: {100 * hits / n:.2f} over {n} words (direct {100 * direct_hits / n:.2f})"
        )
    return lines


def _calibrate_command(cfg, pairs_arg: str | None, top: int) -> str:
    """The canonical command line of a calibration (`pairs_arg` as given: a list, `all`, or none with a
    word test set, whose pairs it then takes)."""
    import shlex

    args = ["bridgex-index", "calibrate", "--index", str(cfg.index), "--endpoint", cfg.endpoint]
    args += ["--model", cfg.model, "--task", cfg.task]
    args += ["--pairs", pairs_arg] if pairs_arg is not None else []
    args += ["--top", str(top), *_test_source_args(cfg), "--mode", cfg.mode, "--shots", str(cfg.shots)]
    if cfg.limit is not None:
        args += ["--limit", str(cfg.limit)]
    if not cfg.copy_fallback:
        args += ["--no-copy-fallback"]
    if cfg.prompt_style != "auto":
        args += ["--prompt-style", cfg.prompt_style]
    return shlex.join([*args, "--concurrency", str(cfg.concurrency)])


@click.command(name="calibrate")
@measuring_options(
    "Comma-separated source-target pairs (e.g. sw-he,he-sw), or `all` (every ranked pair; slow); with "
    "--test-dict-dir: default its pairs of the index's languages.",
    pairs_required=False,
)
@click.option(
    "--top", default=3, show_default=True, type=int, help="HSIC bridges tested per pair (rank 1..N)."
)
@fails_cleanly
def calibrate_cmd(
    index: Path,
    pairs: str | None,
    dict_source,
    dict_dir,
    task: str,
    test_dir,
    test_dict_dir,
    top: int,
    quiet: bool,
    **opts,
) -> None:
    """Decide each pair's route (direct or a bridge) on the calibration half of the held-out words (or of
    a word test set, --test-dict-dir; or, with --task translate, of a sentence set) and store it in the
    index's `routing_decisions` under its task, with the test set it was measured on (what `bridgex-serve`
    follows after a reload: word decisions for single words, translate decisions for sentences, chat and
    qa)."""
    from ..evaluation.calibrate import all_pairs, calibrate
    from ..evaluation.client import EvaluationError
    from ..evaluation.config import EvalConfig, parse_pairs
    from ..evaluation.tasks import read_index

    try:
        _check_test_source(task, dict_source, dict_dir, test_dir, test_dict_dir, pairs)
        if top < 1:
            raise EvaluationError(f"--top must be at least 1, got {top}")
        if pairs is None:  # a word test set's own pairs (plan_tasks fills them in)
            chosen = []
        elif pairs.strip().lower() == "all":
            chosen = all_pairs(read_index(index).bridges)
            if not chosen:
                raise EvaluationError(f"--pairs all: {index} ranks no bridges")
        else:
            chosen = parse_pairs(pairs)
        cfg = EvalConfig(
            index=index,
            pairs=chosen,
            dictionaries="cldr" if dict_source else str(dict_dir or ""),
            task=task,
            test_dir=str(test_dir) if test_dir is not None else None,
            test_dict_dir=test_dict_dir,
            strategies=("direct", "all-bridges"),
            words="calibration",
            top_bridges=top,
            **opts,
        )
        cfg.command = _calibrate_command(cfg, pairs, top)
        done = calibrate(cfg, quiet=quiet, log=(lambda _m: None) if quiet else None)
    except EvaluationError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(EXIT_USAGE)
    click.echo("scores: " + ("corpus chrF++ / 100" if task == "translate" else "P@1 (fraction of words)"))
    click.echo(
        f"{'pair':7} {'decision':8} {'n':>4} {'direct':>6} {'bridge':>10} {'gain':>7} {'95% CI':>15} {'p':>8}"
    )
    for (s, t), d in done.decisions.items():
        bridge = f"{d.bridge_accuracy:.3f} {d.bridge}" if d.bridge else "-"
        gain = f"{d.gain:+.3f}" if d.gain is not None else "-"
        ci = f"[{d.ci_low:+.2f},{d.ci_high:+.2f}]" if d.ci_low is not None else "-"
        p = f"{d.p_value:.3g}" if d.p_value is not None else "-"
        click.echo(
            f"{s}-{t:4} {d.decision:8} {d.n:>4} {d.direct_accuracy:>6.3f} {bridge:>10} {gain:>7} "
            f"{ci:>15} {p:>8}"
        )
    r = done.result
    click.echo(f"measured on {done.measured_on}")
    click.echo(
        f"wrote {len(done.rows)} {task} routing decisions to {index}; {r.upstream_calls} upstream calls, "
        f"{r.cached_calls} cached"
    )
