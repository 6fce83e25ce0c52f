"""`bridgex-index`: build a bridge index and read it (bridges, similarity, plots, provenance).

Commands parse and validate, then hand over to `pipeline`, `store` and `plots`. Every user error ends in
one line on stderr and exit code 2; nothing half-written is left behind.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path

import click

from . import __version__

EXIT_USAGE = 2


def _user_errors() -> tuple[type[BaseException], ...]:
    from .dictionaries import DictionaryError
    from .languages import UnknownLanguageError
    from .pipeline import BuildError
    from .store import IndexReadError

    errors: list[type[BaseException]] = [BuildError, DictionaryError, UnknownLanguageError, IndexReadError]
    try:
        from .models import ModelError

        errors.append(ModelError)
    except ImportError:  # torch not installed: the read-only commands still work
        pass
    return tuple(errors)


def fails_cleanly(fn: Callable) -> Callable:
    """Turn the package's user-facing errors into `error: <message>` on stderr and exit code 2."""

    @wraps(fn)
    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except _user_errors() as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(EXIT_USAGE)

    return run


def _codes(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [c.strip() for c in value.split(",") if c.strip()]


def _band(_ctx, _param, value: str) -> tuple[float, float]:
    try:
        lo, hi = (float(x) for x in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not two fractions like 0.3,0.7") from None
    if not 0 <= lo < hi <= 1:
        raise click.BadParameter(f"{value!r}: expected 0 <= start < end <= 1")
    return lo, hi


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bridgex-index")
def main() -> None:
    """Build and inspect BridgeX bridge indexes (language neurons, overlaps, HSIC bridge scores)."""


@main.command()
@click.option(
    "--model", required=True, help="Model folder, .gguf file (converted once and cached) or hub id."
)
@click.option("--langs", required=True, help="Comma-separated ISO 639-1 codes, e.g. en,de,sw,he.")
@click.option(
    "--dictionaries", "dict_source", type=click.Choice(["cldr"]), help="Built-in CLDR dictionaries."
)
@click.option(
    "--dict-dir",
    type=click.Path(path_type=Path),
    help="Directory of MUSE files <src>-<trg>.txt (instead of --dictionaries cldr).",
)
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Index file to write (.duckdb).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option(
    "--dtype",
    default="auto",
    show_default=True,
    type=click.Choice(["auto", "float32", "bfloat16", "float16"]),
    help="Model dtype; auto is float32 on CPU, bfloat16 on CUDA.",
)
@click.option("--batch-size", default=32, show_default=True, type=int, help="Probes per forward pass.")
@click.option(
    "--max-batch-tokens", default=8192, show_default=True, type=int, help="Padded tokens per forward pass."
)
@click.option(
    "--top-rate",
    type=float,
    help="Share of neurons per language: specific 0.05 of each layer; top-rate and lape 0.01 of the whole "
    "model (the defaults).",
)
@click.option(
    "--selector",
    default="specific",
    show_default=True,
    type=click.Choice(["specific", "top-rate", "lape"]),
    help="How language neurons are chosen: specific (p_a minus the other languages' mean, per layer), "
    "top-rate (the authors' selector, for reproduction) or lape (Tang et al. 2024).",
)
@click.option(
    "--min-specificity",
    default=0.05,
    show_default=True,
    type=float,
    help="specific: least p_a minus the other languages' mean p for a language neuron.",
)
@click.option(
    "--min-set",
    default=5,
    show_default=True,
    type=int,
    help="A band layer votes for a bridge only when its overlap and bridge-specific sets have this many "
    "neurons; a pair with no voting layer gets no ranking.",
)
@click.option(
    "--probe-half",
    type=click.IntRange(0, 1),
    help="Probe only the even (0) or odd (1) entries of each pair: two indexes from disjoint halves.",
)
@click.option("--strict", is_flag=True, help="Fail (exit 2, nothing written) when the index is degenerate.")
@click.option(
    "--middle-band",
    default="0.3,0.7",
    show_default=True,
    callback=_band,
    help="Depth fractions of the layers that score bridges.",
)
@click.option(
    "--bridges", "bridge_list", help="Comma-separated candidate bridges (default: every other language)."
)
@click.option(
    "--mode",
    default="teacher-forced",
    show_default=True,
    type=click.Choice(["teacher-forced", "generate"]),
    help="Probe mode: one forward pass per probe, or the model's greedy continuation (paper-faithful).",
)
@click.option(
    "--max-pairs", default=100, show_default=True, type=int, help="Probe entries per language pair."
)
@click.option(
    "--test-fraction", default=0.2, show_default=True, type=float, help="Held-out share per dictionary."
)
@click.option(
    "--temperature", default=1.0, show_default=True, type=float, help="Selection softmax temperature."
)
@click.option(
    "--low-resource", help="Comma-separated languages to mark low-resource (default: all but major ones)."
)
@click.option("--cache-dir", type=click.Path(path_type=Path), help="Where converted models are cached.")
@click.option(
    "--device-map",
    type=click.Choice(["auto"]),
    help="auto: spread a model larger than one GPU over all visible GPUs (accelerate).",
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
@fails_cleanly
def build(model, langs, dict_source, dict_dir, out, quiet, bridge_list, low_resource, **opts) -> None:
    """Build a bridge index from a model and bilingual dictionaries."""
    from .pipeline import BuildConfig, BuildError, build_index

    if (dict_source is None) == (dict_dir is None):
        raise BuildError("give exactly one of --dictionaries cldr or --dict-dir DIR")
    if not out.parent.is_dir():
        raise BuildError(f"output directory does not exist: {out.parent}")
    if out.is_dir():
        raise BuildError(
            f"--out {out} is a directory; give the index file's path, e.g. {out / 'index.duckdb'}"
        )
    if not os.access(out.parent, os.W_OK):
        raise BuildError(f"cannot write to {out.parent}")
    if quiet:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    cfg = BuildConfig(
        model=model,
        langs=_codes(langs) or [],
        out=out,
        dictionaries="cldr" if dict_source else str(dict_dir),
        bridges=_codes(bridge_list),
        low_resource=_codes(low_resource),
        **opts,
    )
    summary = build_index(cfg, progress=not quiet)
    if "written" not in summary:  # other ranks of a torchrun build: rank 0 reports
        return
    click.echo(
        f"wrote {out}: {summary['probes']} probes, {summary['pairs']} pairs, seconds {summary['seconds']};"
        f" health {summary['health']['verdict']} (bridgex-index health {out})"
    )


@main.command()
@click.argument("gguf", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Hugging Face folder to write.")
@click.option(
    "--dtype", default="bfloat16", show_default=True, type=click.Choice(["float32", "bfloat16", "float16"])
)
@fails_cleanly
def convert(gguf: Path, out: Path, dtype: str) -> None:
    """Convert a .gguf model once into a Hugging Face folder (which vLLM can serve)."""
    from .models import DTYPES, convert_gguf

    click.echo(str(convert_gguf(gguf, out, DTYPES[dtype])))


def _open(index: Path):
    from .store import open_index

    return open_index(index)


def _check_language(con, code: str | None, flag: str) -> None:
    from .pipeline import BuildError

    if code is None:
        return
    known = [r[0] for r in con.execute("SELECT code FROM languages ORDER BY code").fetchall()]
    if code not in known:
        raise BuildError(f"{flag} {code!r} is not in this index (languages: {', '.join(known)})")


@main.command(name="bridges")
@click.argument("index", type=click.Path(path_type=Path))
@click.option("--source", help="Only this source language.")
@click.option("--target", help="Only this target language.")
@click.option("--top", type=int, help="Only the best N bridges per pair.")
@click.option("--json", "as_json", is_flag=True, help="A JSON list of objects instead of a table.")
@fails_cleanly
def bridges_cmd(index: Path, source, target, top, as_json: bool) -> None:
    """The ranked bridges per (source, target) pair, and the pair's calibrated decision where stored
    (`bridgex-index calibrate`): `direct`, a bridge, or `-` (uncalibrated: the server takes rank 1)."""
    from .store import records, routing_decisions

    con = _open(index)
    _check_language(con, source, "--source")
    _check_language(con, target, "--target")
    rows = records(
        con,
        "SELECT source, target, bridge, score, probability, rank FROM bridges"
        " WHERE ($1 IS NULL OR source = $1) AND ($2 IS NULL OR target = $2) AND ($3 IS NULL OR rank <= $3)"
        " ORDER BY source, target, rank",
        [source, target, top],
    )
    decisions = routing_decisions(con)
    for r in rows:
        stored = decisions.get((r["source"], r["target"]))
        r["decision"] = stored["decision"] if stored else None
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=1))
        return
    click.echo(
        f"{'source':6} {'target':6} {'rank':>4} {'bridge':6} {'probability':>11} {'score':>10} "
        f"{'decision':>8}"
    )
    for r in rows:
        click.echo(
            f"{r['source']:6} {r['target']:6} {r['rank']:>4} {r['bridge']:6} "
            f"{r['probability']:>11.3f} {r['score']:>10.5f} {r['decision'] or '-':>8}"
        )


@main.command()
@click.argument("index", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="A JSON list of objects instead of a table.")
@fails_cleanly
def similarity(index: Path, as_json: bool) -> None:
    """Overlap neuron counts, Jaccard and similarity per language pair."""
    from .store import records

    rows = records(
        _open(index),
        "SELECT lang_a, lang_b, n_overlap, jaccard, similarity FROM language_similarity"
        " ORDER BY similarity DESC NULLS LAST, lang_a, lang_b",
    )
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=1))
        return
    click.echo(f"{'pair':7} {'overlap':>7} {'jaccard':>8} {'similarity':>10}")
    for r in rows:
        sim = "-" if r["similarity"] is None else f"{r['similarity']:.6f}"
        click.echo(f"{r['lang_a']}-{r['lang_b']:4} {r['n_overlap']:>7} {r['jaccard']:>8.3f} {sim:>10}")


@main.command()
@click.argument("index", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Directory for the PNG files.")
@fails_cleanly
def plot(index: Path, out: Path) -> None:
    """PNG heatmap of language similarity and histogram of overlap neurons per layer."""
    from .plots import overlap_layer_histogram, similarity_heatmap

    con = _open(index)
    out.mkdir(parents=True, exist_ok=True)
    for path in (similarity_heatmap(con, out), overlap_layer_histogram(con, out)):
        click.echo(str(path))


@main.command()
@click.argument("index", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="JSON instead of text.")
@fails_cleanly
def show(index: Path, as_json: bool) -> None:
    """Provenance (model, parameters, versions) and row counts of an index."""
    from .health import health_from_connection
    from .schema import TABLES
    from .store import provenance

    con = _open(index)
    prov = provenance(con)
    counts = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}
    report = health_from_connection(con)
    if as_json:
        prov["parameters"] = json.loads(prov.get("parameters", "{}"))
        out = {"provenance": prov, "counts": counts, "health": report.as_dict()}
        click.echo(json.dumps(out, ensure_ascii=False, indent=1))
        return
    for key, value in prov.items():
        click.echo(f"{key:22} {value}")
    click.echo("")
    for table, n in counts.items():
        click.echo(f"{table:22} {n} rows")
    click.echo(f"\nhealth {report.verdict} ({'; '.join(report.reasons)}): bridgex-index health {index}")


@main.command()
@click.argument("index", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="JSON instead of text.")
@fails_cleanly
def health(index: Path, as_json: bool) -> None:
    """Does the index measure languages? Always-on share, neurons shared by every language, similarity
    spread, band set sizes, rank-1 concentration, and a verdict (ok, weak, degenerate) with its reasons."""
    from .health import health_from_connection

    report = health_from_connection(_open(index))
    if as_json:
        click.echo(json.dumps(report.as_dict(), ensure_ascii=False, indent=1))
        return
    for line in report.lines():
        click.echo(line)


# ---------------------------------------------------------------------------------------------- evaluation


def _eval_command(cfg, out: Path) -> str:
    """The canonical command line of an evaluation (what the report quotes to reproduce it)."""
    import shlex

    args = ["bridgex-index", "eval", "--index", str(cfg.index), "--endpoint", cfg.endpoint]
    args += ["--model", cfg.model, "--pairs", ",".join(f"{s}-{t}" for s, t in cfg.pairs)]
    args += ["--dictionaries", "cldr"] if cfg.dictionaries == "cldr" else ["--dict-dir", cfg.dictionaries]
    args += ["--strategies", ",".join(cfg.strategies), "--mode", cfg.mode, "--shots", str(cfg.shots)]
    if cfg.words != "all":
        args += ["--words", cfg.words]
    if cfg.limit is not None:
        args += ["--limit", str(cfg.limit)]
    if not cfg.copy_fallback:
        args += ["--no-copy-fallback"]
    if cfg.demo_bridges != "gold":
        args += ["--demo-bridges", cfg.demo_bridges]
    args += ["--concurrency", str(cfg.concurrency), "--out", str(out)]
    return shlex.join(args)


@main.command(name="eval")
@click.option("--index", required=True, type=click.Path(path_type=Path), help="The index file (.duckdb).")
@click.option(
    "--endpoint", required=True, help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1 (vLLM, proxy)."
)
@click.option("--model", required=True, help="Model name the endpoint serves (the request's `model`).")
@click.option("--pairs", required=True, help="Comma-separated source-target pairs, e.g. sw-he,id-ja.")
@click.option(
    "--dictionaries", "dict_source", type=click.Choice(["cldr"]), help="The index's CLDR dictionaries."
)
@click.option(
    "--dict-dir", type=click.Path(path_type=Path), help="The MUSE directory the index was built from."
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
    "--mode",
    default="chain",
    show_default=True,
    type=click.Choice(["chain", "two-step"]),
    help="Bridged prompt mode, as the proxy serves it (chain: one call; two-step: bridge word first).",
)
@click.option(
    "--shots",
    default=3,
    show_default=True,
    type=int,
    help="Demonstrations per prompt (probe words, the same for every strategy); chain mode needs some.",
)
@click.option("--limit", type=int, help="Test words per pair (a stable pseudo-random sample; default all).")
@click.option(
    "--copy-fallback/--no-copy-fallback",
    default=True,
    show_default=True,
    help="As the proxy: answer again directly when the bridged answer is a copy (off: the bridge alone).",
)
@click.option(
    "--demo-bridges",
    default="gold",
    show_default=True,
    type=click.Choice(["gold", "model"]),
    help="Bridge words of the demonstrations: gold (dictionary) or model (the model's own greedy "
    'rendering, one zero-shot {S}:"a"→{B}:" call per demonstration word and bridge, cached).',
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Report directory for report.md and accuracy.png (default: ./bli-<model>-<mode>).",
)
@click.option("--concurrency", default=32, show_default=True, type=int, help="Requests in flight at once.")
@click.option("--timeout", default=300.0, show_default=True, type=float, help="Seconds per request.")
@click.option(
    "--api-key", envvar="OPENAI_API_KEY", help="Bearer token for hosted APIs (default: $OPENAI_API_KEY)."
)
@click.option("--dry-run", is_flag=True, help="Count the requests (and how many are cached); call nothing.")
@click.option("--quiet", is_flag=True, help="No progress bar or per-pair notes.")
@fails_cleanly
def eval_cmd(index: Path, dict_source, dict_dir, pairs, strategies, out, quiet, dry_run, **opts) -> None:
    """Bilingual lexicon induction through an endpoint: does the index's bridge beat the alternatives?"""
    import re

    from .evaluation import (
        EvalConfig,
        EvaluationError,
        category_breakdown,
        count_requests,
        demo_copy_rate,
        evaluate,
        paired_gains,
        parse_pairs,
        parse_strategies,
    )
    from .report import summary_lines, table, write_report

    try:
        if (dict_source is None) == (dict_dir is None):
            raise EvaluationError("give exactly one of --dictionaries cldr or --dict-dir DIR")
        cfg = EvalConfig(
            index=index,
            pairs=parse_pairs(pairs),
            dictionaries="cldr" if dict_source else str(dict_dir),
            strategies=parse_strategies(strategies),
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
            extra = "one more per bridged word" if cfg.mode == "two-step" else "a few continuation calls"
            click.echo(f"{needed} first-round requests ({cached} cached), plus {extra}")
            return
        result = evaluate(cfg, quiet=quiet, log=log)
    except EvaluationError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(EXIT_USAGE)
    gains = paired_gains(result.tasks, cfg.strategies, result.answers)
    click.echo(table(result.summaries, result.overall))
    click.echo("")
    for line in summary_lines(result.overall, gains):
        click.echo(line)
    for line in _calibrated_lines(result):
        click.echo(line)
    demo_copies, demo_words = demo_copy_rate(result.tasks)
    demo_note = "gold (dictionary words)"
    if cfg.demo_bridges == "model":
        share = 100.0 * demo_copies / demo_words if demo_words else 0.0
        demo_note = f"model-made: {demo_copies} of {demo_words} ({share:.1f}%) copy the source word"
        click.echo(f"demonstration bridge words {demo_note}")
    if "calibrated" in cfg.strategies and cfg.words != "evaluation" and any(t.decision for t in result.tasks):
        click.echo(
            "note: calibrated routes scored on words they may have been calibrated on; use --words evaluation"
        )
    prov = result.provenance
    meta = {
        "model": cfg.model,
        "endpoint": cfg.endpoint,
        "index": f"{index.name} (built from {prov.get('model', '?')}, {prov.get('created_at', '?')})",
        "dictionaries": cfg.dictionaries,
        "mode": cfg.mode,
        "shots": str(cfg.shots),
        "test words per pair": str(cfg.limit) if cfg.limit else "all",
        "strategies": ", ".join(cfg.strategies),
        "copy fallback": "on (as the proxy serves)"
        if cfg.copy_fallback
        else "off (the bridged answer as is)",
        "demonstration bridge words": demo_note,
        "run": f"{result.run_id}, {result.created_at:%Y-%m-%d %H:%M} UTC, {result.seconds:.0f} s",
        "upstream calls": f"{result.upstream_calls} (+{result.cached_calls} answered from the cache)",
    }
    breakdown = category_breakdown(result.tasks, cfg.strategies, result.answers)
    report, chart = write_report(out, result.summaries, result.overall, meta, cfg.command, breakdown, gains)
    click.echo(
        f"wrote {report} and {chart}; {result.upstream_calls} upstream calls, {result.cached_calls} cached"
    )


def _calibrated_lines(result) -> list[str]:
    """Per pair and pooled: the calibrated strategy's accuracy next to direct's (empty when not asked)."""
    cells = {(c.source, c.target, c.strategy): c for c in result.cells}
    lines, hits, direct_hits, n = [], 0, 0, 0
    for task in result.tasks:
        cal, direct = cells.get((*task.pair, "calibrated")), cells.get((*task.pair, "direct"))
        if cal is None:
            continue
        route = task.decision or f"uncalibrated → {task.chosen}"
        route = f"{task.decision} (stored)" if task.decision else route
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


def _calibrate_command(cfg, pairs_arg: str, top: int) -> str:
    import shlex

    args = ["bridgex-index", "calibrate", "--index", str(cfg.index), "--endpoint", cfg.endpoint]
    args += ["--model", cfg.model, "--pairs", pairs_arg, "--top", str(top)]
    args += ["--dictionaries", "cldr"] if cfg.dictionaries == "cldr" else ["--dict-dir", cfg.dictionaries]
    args += ["--mode", cfg.mode, "--shots", str(cfg.shots)]
    if cfg.limit is not None:
        args += ["--limit", str(cfg.limit)]
    if not cfg.copy_fallback:
        args += ["--no-copy-fallback"]
    return shlex.join([*args, "--concurrency", str(cfg.concurrency)])


@main.command(name="calibrate")
@click.option("--index", required=True, type=click.Path(path_type=Path), help="The index file (.duckdb).")
@click.option("--endpoint", required=True, help="OpenAI-compatible server the decisions are for (vLLM).")
@click.option("--model", required=True, help="Model name the endpoint serves.")
@click.option(
    "--pairs",
    required=True,
    help="Comma-separated source-target pairs (e.g. sw-he,he-sw), or `all` (every ranked pair; slow).",
)
@click.option(
    "--dictionaries", "dict_source", type=click.Choice(["cldr"]), help="The index's CLDR dictionaries."
)
@click.option(
    "--dict-dir", type=click.Path(path_type=Path), help="The MUSE directory the index was built from."
)
@click.option(
    "--top", default=3, show_default=True, type=int, help="HSIC bridges tested per pair (rank 1..N)."
)
@click.option("--mode", default="chain", show_default=True, type=click.Choice(["chain", "two-step"]))
@click.option("--shots", default=3, show_default=True, type=int, help="Demonstrations per prompt.")
@click.option("--limit", type=int, help="Calibration words per pair (a stable sample; default all).")
@click.option(
    "--copy-fallback/--no-copy-fallback",
    default=True,
    show_default=True,
    help="Measure bridges as the proxy serves them (a copied answer asked again directly).",
)
@click.option("--concurrency", default=32, show_default=True, type=int, help="Requests in flight at once.")
@click.option("--timeout", default=300.0, show_default=True, type=float, help="Seconds per request.")
@click.option("--api-key", envvar="OPENAI_API_KEY", help="Bearer token (default: $OPENAI_API_KEY).")
@click.option("--quiet", is_flag=True, help="No progress bar or per-pair notes.")
@fails_cleanly
def calibrate_cmd(index: Path, pairs: str, dict_source, dict_dir, top: int, quiet: bool, **opts) -> None:
    """Decide each pair's route (direct or a bridge) on the calibration half of the held-out words and
    store it in the index's `routing_decisions` (what `bridgex-serve` follows after a reload)."""
    from .evaluation import EvalConfig, EvaluationError, parse_pairs, read_index
    from .routing import all_pairs, calibrate

    try:
        if (dict_source is None) == (dict_dir is None):
            raise EvaluationError("give exactly one of --dictionaries cldr or --dict-dir DIR")
        if top < 1:
            raise EvaluationError(f"--top must be at least 1, got {top}")
        if pairs.strip().lower() == "all":
            chosen = all_pairs(read_index(index).bridges)
            if not chosen:
                raise EvaluationError(f"--pairs all: {index} ranks no bridges")
        else:
            chosen = parse_pairs(pairs)
        cfg = EvalConfig(
            index=index,
            pairs=chosen,
            dictionaries="cldr" if dict_source else str(dict_dir),
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
    click.echo(
        f"wrote {len(done.rows)} routing decisions to {index}; {r.upstream_calls} upstream calls, "
        f"{r.cached_calls} cached"
    )
