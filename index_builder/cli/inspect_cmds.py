"""`bridgex-index bridges`, `similarity`, `plot` and `show`: read an index through `bridgex_index`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .common import fails_cleanly


def _open(index: Path):
    from bridgex_index.store import open_index

    return open_index(index)


def _check_language(con, code: str | None, flag: str) -> None:
    from ..indexing.config import BuildError

    if code is None:
        return
    from bridgex_index.read import languages

    known = [lang.code for lang in languages(con)]
    if code not in known:
        raise BuildError(f"{flag} {code!r} is not in this index (languages: {', '.join(known)})")


@click.command(name="bridges")
@click.argument("index", type=click.Path(path_type=Path))
@click.option("--source", help="Only this source language.")
@click.option("--target", help="Only this target language.")
@click.option("--top", type=int, help="Only the best N bridges per pair.")
@click.option("--json", "as_json", is_flag=True, help="A JSON list of objects instead of a table.")
@fails_cleanly
def bridges_cmd(index: Path, source, target, top, as_json: bool) -> None:
    """The ranked bridges per (source, target) pair, and the pair's calibrated decision where stored
    (`bridgex-index calibrate`): `direct`, a bridge, or `-` (uncalibrated: the server takes rank 1); one
    column for words (`decision`), one for sentences (`translate`, `calibrate --task translate`)."""
    from bridgex_index.read import bridges
    from bridgex_index.store import routing_decisions

    con = _open(index)
    _check_language(con, source, "--source")
    _check_language(con, target, "--target")
    rows = [row._asdict() for row in bridges(con, source, target, top)]
    decisions, sentence_decisions = routing_decisions(con, "word"), routing_decisions(con, "translate")
    for r in rows:
        stored = decisions.get((r["source"], r["target"]))
        r["decision"] = stored["decision"] if stored else None
        stored = sentence_decisions.get((r["source"], r["target"]))
        r["translate_decision"] = stored["decision"] if stored else None
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=1))
        return
    click.echo(
        f"{'source':6} {'target':6} {'rank':>4} {'bridge':6} {'probability':>11} {'score':>10} "
        f"{'decision':>8} {'translate':>9}"
    )
    for r in rows:
        click.echo(
            f"{r['source']:6} {r['target']:6} {r['rank']:>4} {r['bridge']:6} "
            f"{r['probability']:>11.3f} {r['score']:>10.5f} {r['decision'] or '-':>8} "
            f"{r['translate_decision'] or '-':>9}"
        )


@click.command()
@click.argument("index", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="A JSON list of objects instead of a table.")
@fails_cleanly
def similarity(index: Path, as_json: bool) -> None:
    """Overlap neuron counts, Jaccard and similarity per language pair."""
    from bridgex_index.store import records

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


@click.command()
@click.argument("index", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Directory for the PNG files.")
@fails_cleanly
def plot(index: Path, out: Path) -> None:
    """PNG heatmap of language similarity and histogram of overlap neurons per layer."""
    from ..reporting.charts import overlap_layer_histogram, similarity_heatmap

    con = _open(index)
    out.mkdir(parents=True, exist_ok=True)
    for path in (similarity_heatmap(con, out), overlap_layer_histogram(con, out)):
        click.echo(str(path))


@click.command()
@click.argument("index", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="JSON instead of text.")
@fails_cleanly
def show(index: Path, as_json: bool) -> None:
    """Provenance (model, parameters, versions) and row counts of an index."""
    from bridgex_index.health import health_from_connection
    from bridgex_index.read import pair_quality
    from bridgex_index.schema import OPTIONAL_TABLES, TABLES
    from bridgex_index.store import has_table, provenance

    con = _open(index)
    prov = provenance(con)
    counts = {
        t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
        for t in (*TABLES, *OPTIONAL_TABLES)
        if has_table(con, t)
    }
    report = health_from_connection(con)
    if as_json:
        prov["parameters"] = json.loads(prov.get("parameters", "{}"))
        legs = [row._asdict() for row in pair_quality(con)]
        out = {"provenance": prov, "counts": counts, "health": report.as_dict(), "pair_quality": legs}
        click.echo(json.dumps(out, ensure_ascii=False, indent=1))
        return
    for key, value in prov.items():
        click.echo(f"{key:22} {value}")
    click.echo("")
    for table, n in counts.items():
        click.echo(f"{table:22} {n} rows")
    click.echo(f"\nhealth {report.verdict} ({'; '.join(report.reasons)}): bridgex-index health {index}")


@click.command()
@click.argument("index", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="JSON instead of text.")
@fails_cleanly
def health(index: Path, as_json: bool) -> None:
    """Does the index measure languages? Always-on share, neurons shared by every language, similarity
    spread, band set sizes, rank-1 concentration, and a verdict (ok, weak, degenerate) with its reasons."""
    from bridgex_index.health import health_from_connection

    report = health_from_connection(_open(index))
    if as_json:
        click.echo(json.dumps(report.as_dict(), ensure_ascii=False, indent=1))
        return
    for line in report.lines():
        click.echo(line)
