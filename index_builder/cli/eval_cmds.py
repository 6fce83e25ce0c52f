"""`bridgex-index eval` and `calibrate`: parse the options into one `EvalConfig` (`_config`), hand it to one
function (`evaluation.run.evaluate`, `evaluation.calibrate.calibrate`), and echo what the reporting room
(`reporting.run_report`) prints and writes."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .common import EXIT_USAGE, distill_options, fails_cleanly, measuring_options


def _config(index: Path, pairs: list, dict_source, dict_dir, task, test_dir, test_dict_dir, **fields):
    """The one configuration object of a run, from the options both commands share (checked to fit
    together first) and the command's own `fields`."""
    from ..evaluation.config import EvalConfig

    _check_test_source(task, dict_source, dict_dir, test_dir, test_dict_dir, pairs)
    return EvalConfig(
        index=index,
        pairs=pairs or [],
        dictionaries="cldr" if dict_source else str(dict_dir or ""),
        task=task,
        test_dir=str(test_dir) if test_dir is not None else None,
        test_dict_dir=test_dict_dir,
        **fields,
    )


def _fails_as_usage(run):
    """Run `run()`; an EvaluationError is one `error:` line and exit 2."""
    from ..evaluation.client import EvaluationError

    try:
        return run()
    except EvaluationError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(EXIT_USAGE)


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
    "route the server takes: the stored decision, else the best bridge), all-bridges, distilled (one direct "
    "call with the pair's distilled demonstrations: `bridgex-index distill`; pairs without a set skip it).",
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
def eval_cmd(index: Path, pairs, strategies, out, quiet, dry_run, **opts) -> None:
    """Bilingual lexicon induction through an endpoint: does the index's bridge beat the alternatives?"""
    from ..evaluation.config import parse_pairs, parse_strategies
    from ..evaluation.run import count_requests, evaluate
    from ..reporting.run_report import report_sentences, report_words

    log = (lambda _m: None) if quiet else None

    def run():
        chosen = parse_pairs(pairs) if pairs is not None else None
        cfg = _config(index, chosen, strategies=parse_strategies(strategies), **opts)
        cfg.out = _report_dir(out, cfg)
        cfg.command = cfg.command_line("eval")
        if dry_run:
            return cfg, count_requests(cfg, log)
        return cfg, evaluate(cfg, quiet=quiet, log=log)

    cfg, result = _fails_as_usage(run)
    if dry_run:
        needed, cached = result
        click.echo(f"{needed} words to ask bridgex-serve ({cached} cached)")
        return
    for line in report_sentences(cfg, result) if cfg.task == "translate" else report_words(cfg, result):
        click.echo(line)


def _report_dir(out: Path | None, cfg) -> Path:
    """`--out`, or `./bli-<model>-<mode>`; an existing file there is an EvaluationError."""
    import re

    from ..evaluation.client import EvaluationError

    safe_model = re.sub(r"[^A-Za-z0-9._-]+", "_", cfg.model)
    out = out or Path(f"bli-{safe_model}-{cfg.mode}")
    if out.exists() and not out.is_dir():
        raise EvaluationError(f"--out {out} exists and is not a directory")
    return out


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


@click.command(name="calibrate")
@measuring_options(
    "Comma-separated source-target pairs (e.g. sw-he,he-sw), or `all` (every ranked pair; slow); with "
    "--test-dict-dir: default its pairs of the index's languages.",
    pairs_required=False,
)
@click.option(
    "--top",
    default=3,
    show_default=True,
    type=int,
    help="HSIC bridges tested per pair (rank 1..N), besides English (always tested unless the pair has it).",
)
@click.option(
    "--decision",
    "rule",
    type=click.Choice(["pooled", "strict"]),
    default="pooled",
    show_default=True,
    help="pooled: the route policy's rule (the route with the highest positive expected gain, each pair's "
    "evidence pooled with the other pairs'), measured in steps of 10 items up to --limit; a pair stops once "
    "settled (a route surely better: P(gain>0) >= 0.95 and P(loss beyond the margin) <= 0.05; or none still "
    "likely to gain); strict: every item, then the per-pair Holm-McNemar rule.",
)
@fails_cleanly
def calibrate_cmd(
    index: Path, pairs: str | None, task: str, top: int, rule: str, quiet: bool, **opts
) -> None:
    """Decide each pair's route (direct or a bridge) on the calibration half of the held-out words (or of
    a word test set, --test-dict-dir; or, with --task translate, of a sentence set) and store it in the
    index's `routing_decisions` under its task, with the test set it was measured on (what `bridgex-serve`
    follows after a reload: word decisions for single words, translate decisions for sentences, chat and
    qa)."""
    from ..evaluation.calibrate import CANDIDATE_STRATEGIES, calibrate
    from ..reporting.run_report import calibration_lines

    def run():
        everything = pairs is not None and pairs.strip().lower() == "all"
        cfg = _config(
            index,
            _calibration_pairs(index, pairs, top),
            task=task,
            strategies=("direct", *CANDIDATE_STRATEGIES),
            words="calibration",
            top_bridges=top,
            all_pairs=everything,
            **opts,
        )
        cfg.command = cfg.command_line("calibrate")
        return calibrate(cfg, quiet=quiet, log=(lambda _m: None) if quiet else None, rule=rule)

    for line in calibration_lines(_fails_as_usage(run), task, index):
        click.echo(line)


def _calibration_pairs(index: Path, pairs: str | None, top: int) -> list | None:
    """`--pairs` of calibrate: a list, `all` (every pair the index ranks), or None (a word test set's own
    pairs, filled in when it is read)."""
    from ..evaluation.calibrate import all_pairs
    from ..evaluation.client import EvaluationError
    from ..evaluation.config import parse_pairs
    from ..evaluation.tasks import read_index

    if top < 1:
        raise EvaluationError(f"--top must be at least 1, got {top}")
    if pairs is None:
        return None
    if pairs.strip().lower() == "all":
        chosen = all_pairs(read_index(index).bridges)
        if not chosen:
            raise EvaluationError(f"--pairs all: {index} ranks no bridges")
        return chosen
    return parse_pairs(pairs)


@click.command(name="distill")
@distill_options
@click.option("--pairs", required=True, help="Comma-separated source-target pairs, e.g. ar-fr,sw-es.")
@click.option(
    "--task",
    default="translate",
    show_default=True,
    type=click.Choice(["translate", "word"]),
    help="translate: sentence demonstrations (what the server serves by default for a pair with a set); "
    "word: word demonstrations (served only to requests with bridgex.mode distilled).",
)
@click.option(
    "--text-dir",
    type=click.Path(path_type=Path),
    help="Monolingual source text: DIR/<source>.txt, one text per line (default: sentences from the "
    "calibration half of the shipped sentence set; words from the index's probe dictionaries).",
)
@click.option("--bridge", default="en", show_default=True, help="The bridge whose answers are distilled.")
@click.option("--k", default=6, show_default=True, type=int, help="Demonstrations per pair.")
@click.option(
    "--max-texts",
    default=40,
    show_default=True,
    type=int,
    help="Texts asked per pair at most (2k at a time).",
)
@click.option(
    "--check",
    default=40,
    show_default=True,
    type=int,
    help="Sentences of the shipped set (--task translate, no --text-dir): store a pair's set only when, on "
    "this many other calibration-half sentences, it beats direct in chrF++ (0: no check).",
)
@click.option("--remove", is_flag=True, help="Delete the pairs' sets for --task instead (nothing is asked).")
@fails_cleanly
def distill_cmd(
    index: Path, pairs: str, task: str, text_dir, bridge, k, max_texts, check, remove, quiet, **opts
) -> None:
    """Distil a bridged route into demonstrations: ask source texts through the bridge (--bridge) at a
    BridgeX server, keep the first k clean answers per pair, check them against direct (--check) and store
    them in the index (`distilled_demonstrations`), so that the server answers the pair in ONE direct call
    with them in front (after /admin/reload or a restart). Exit 1 when a pair got no demonstration."""
    from ..evaluation.client import EvaluationError
    from ..evaluation.config import EvalConfig, parse_pairs
    from ..evaluation.distill import DistillConfig, distill, remove_sets, report_lines

    def run():
        chosen = parse_pairs(pairs)
        if remove:
            return remove_sets(index, chosen, task)
        for flag in ("endpoint", "model"):
            if not opts.get(flag):
                raise EvaluationError(f"--{flag} is required (unless --remove)")
        cfg = DistillConfig(
            EvalConfig(index=index, pairs=chosen, dictionaries="", task=task, copy_fallback=True, **opts),
            bridge=bridge.strip().lower(),
            k=k,
            max_texts=max_texts,
            text_dir=text_dir,
            check=check,
        )
        return distill(cfg, say=(lambda _m: None) if quiet else None)

    result = _fails_as_usage(run)
    if remove:
        click.echo(f"removed {result} {task} demonstrations")
        return
    for line in report_lines(result):
        click.echo(line)
    if not all(r.kept for r in result):
        sys.exit(1)
