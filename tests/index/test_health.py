"""Index health verdicts on hand-made indexes, in memory, on disk, through the CLI and the proxy's loader."""

from __future__ import annotations

import itertools
import json
import logging

import pytest
from click.testing import CliRunner

from bridgex_index.health import health_from_tables
from bridgex_index.store import write_index
from index_builder.cli import main

LANGS = ["de", "en", "fr", "sw"]
BAND = [2, 3]


def tables(
    *,
    shared: int,
    own: int,
    p_shared: float = 1.0,
    similarities: list[float | None] | None = None,
    bridge_set: int = 30,
    overlap_set: int = 30,
    rank1: dict[tuple[str, str], str] | None = None,
) -> dict[str, dict[str, list]]:
    """An index of LANGS: each language has `shared` neurons common to all (p = p_shared) and `own`
    neurons of its own (p = 0.6); HSIC rows of every pair, candidate and band layer with the given sizes."""
    neuron = {"language": [], "layer": [], "neuron": [], "probability": []}
    for i, code in enumerate(LANGS):
        cells = [(0, j, p_shared) for j in range(shared)] + [(1, 100 * i + j, 0.6) for j in range(own)]
        for layer, j, p in cells:
            neuron["language"].append(code)
            neuron["layer"].append(layer)
            neuron["neuron"].append(j)
            neuron["probability"].append(p)
    pairs = list(itertools.combinations(LANGS, 2))
    sims = similarities if similarities is not None else [0.1 * k - 0.2 for k in range(len(pairs))]
    hsic = {
        k: [] for k in ("source", "target", "bridge", "layer", "n_overlap", "n_bridge", "score", "in_band")
    }
    ranked = {k: [] for k in ("source", "target", "bridge", "score", "probability", "rank")}
    rank1 = rank1 or {}
    for s, t in pairs:
        cands = [c for c in LANGS if c not in (s, t)]
        first = rank1.get((s, t), cands[(LANGS.index(s) + LANGS.index(t)) % 2])
        order = [first] + [c for c in cands if c != first]
        for c, layer in itertools.product(cands, BAND):
            for key, val in zip(hsic, (s, t, c, layer, overlap_set, bridge_set, 0.5, True), strict=True):
                hsic[key].append(val)
        for rank, c in enumerate(order, start=1):
            for a, b in ((s, t), (t, s)):
                for key, val in zip(ranked, (a, b, c, 1.0 / rank, 0.5 / rank, rank), strict=True):
                    ranked[key].append(val)
    return {
        "languages": {
            "code": LANGS,
            "prompt_name": LANGS,
            "english_name": LANGS,
            "low_resource": [c == "sw" for c in LANGS],
            "n_tokens": [100] * len(LANGS),
            "n_neurons": [shared + own] * len(LANGS),
        },
        "language_neurons": neuron,
        "language_similarity": {
            "lang_a": [a for a, _ in pairs],
            "lang_b": [b for _, b in pairs],
            "n_overlap": [shared] * len(pairs),
            "jaccard": [0.1] * len(pairs),
            "similarity": sims,
        },
        "layer_hsic": hsic,
        "bridges": ranked,
    }


def test_a_language_specific_index_is_ok():
    report = health_from_tables(tables(shared=1, own=40, p_shared=0.7), BAND, min_set=5)
    assert report.verdict == "ok", report.reasons
    assert report.shared_by_all == 1 and report.shared_share == pytest.approx(1 / 41)
    assert report.band_bridge_median == 30 and report.voting_share == 1.0
    assert report.ranked_pairs == report.pairs == 6


def test_the_authors_index_on_gemma_is_degenerate():
    """The measured failure: always-on neurons shared by every language and a similarity of 1.0 everywhere."""
    report = health_from_tables(tables(shared=30, own=3, similarities=[1.0] * 6, bridge_set=2), BAND, 5)
    assert report.verdict == "degenerate"
    text = " ".join(report.reasons)
    assert "shared by every language" in text and "flat" in text and "median bridge-specific set" in text
    assert report.always_on_share["de"] == pytest.approx(30 / 33)


def test_an_index_without_any_ranking_is_degenerate_and_says_why():
    data = tables(shared=0, own=40, bridge_set=3)
    data["bridges"] = {k: [] for k in data["bridges"]}
    report = health_from_tables(data, BAND, min_set=5)
    assert report.verdict == "degenerate"
    assert any("no pair has a bridge ranking" in r for r in report.reasons)


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"shared": 4, "own": 36}, "shared by every language (target ≤ 5%)"),
        ({"similarities": [0.50, 0.52, 0.51, 0.49, 0.50, 0.53]}, "similarity varies little"),
        ({"bridge_set": 12}, "median bridge-specific set in the band is 12"),
        (
            {"rank1": {pair: "fr" for pair in [("de", "en"), ("de", "sw"), ("en", "sw")]}},
            "fr is rank 1 for 50%",
        ),
    ],
)
def test_one_missed_target_makes_a_weak_index_with_its_reason(change, needle):
    args = {"shared": 1, "own": 40, "p_shared": 0.7, **change}
    report = health_from_tables(tables(**args), BAND, min_set=5)
    assert report.verdict == "weak"
    assert any(needle in r for r in report.reasons), report.reasons


def _write(path, data):
    prov = {"parameters": json.dumps({"min_set": 5}), "middle_band_layers": json.dumps(BAND)}
    write_index(path, prov, data)
    return path


def test_health_and_show_json_read_the_verdict_from_the_file(tmp_path):
    path = _write(tmp_path / "bad.duckdb", tables(shared=30, own=3, similarities=[1.0] * 6, bridge_set=2))
    runner = CliRunner()
    text = runner.invoke(main, ["health", str(path)])
    assert text.exit_code == 0 and "verdict                 DEGENERATE" in text.output
    shown = json.loads(runner.invoke(main, ["show", str(path), "--json"]).output)
    assert shown["health"]["verdict"] == "degenerate" and shown["health"]["min_set"] == 5
    as_json = json.loads(runner.invoke(main, ["health", str(path), "--json"]).output)
    assert as_json["band_bridge_median"] == 2


def test_health_of_a_missing_file_exits_2(tmp_path):
    result = CliRunner().invoke(main, ["health", str(tmp_path / "none.duckdb")])
    assert result.exit_code == 2 and "error:" in result.output


def test_the_proxy_warns_when_it_loads_a_degenerate_index(tmp_path, caplog):
    from bridgex_serve.index import load_index

    bad = _write(tmp_path / "bad.duckdb", tables(shared=30, own=3, similarities=[1.0] * 6, bridge_set=2))
    good = _write(tmp_path / "good.duckdb", tables(shared=1, own=40, p_shared=0.7))
    with caplog.at_level(logging.WARNING, logger="bridgex_serve.index"):
        load_index(good)
        assert not caplog.records
        load_index(bad)
    assert len(caplog.records) == 1 and "degenerate" in caplog.records[0].getMessage()
