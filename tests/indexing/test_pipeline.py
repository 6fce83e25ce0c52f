"""Whole index builds on a tiny model: what the written DuckDB index holds, checked against the method."""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from bridgex_index.store import open_index, provenance, records
from index_builder.indexing.bridges import middle_band
from index_builder.indexing.config import BuildConfig
from index_builder.indexing.dictionaries import cldr_dictionaries
from index_builder.indexing.models import config_hash
from index_builder.indexing.pipeline import build_index

LANGS = ["en", "de", "sw", "he"]
N_LAYERS, N_NEURONS = 6, 128  # tests/tinymodels.py


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _quiet(_msg: str) -> None:
    pass


def _build(cfg: BuildConfig) -> Path:
    build_index(cfg, log=_quiet, progress=False)
    return cfg.out


def _rows(path: Path, sql: str) -> list[dict]:
    con = open_index(path)
    try:
        return records(con, sql)
    finally:
        con.close()


def _prov(path: Path) -> dict[str, str]:
    con = open_index(path)
    try:
        return provenance(con)
    finally:
        con.close()


def _cldr_config(model: Path, out: Path) -> BuildConfig:
    """The authors' selector and min_set=1: a random tiny model has few language-specific neurons, and
    these tests check the machinery against the method (the default selector: tests/test_specific_neurons)."""
    return BuildConfig(
        model=str(model),
        langs=LANGS,
        out=out,
        device="cpu",
        max_pairs=20,
        top_rate=0.1,
        selector="top-rate",
        min_set=1,
    )


@pytest.fixture(scope="module")
def cldr(tiny_llama, tmp_path_factory) -> tuple[BuildConfig, Path]:
    cfg = _cldr_config(tiny_llama, tmp_path_factory.mktemp("cldr") / "index.duckdb")
    return cfg, _build(cfg)


@pytest.fixture(scope="module")
def muse_dir(tmp_path_factory) -> Path:
    """MUSE files for en, de, sw, he (no de-he file; sw-en written from sw, the other way round)."""
    directory = tmp_path_factory.mktemp("muse")
    for (a, b), d in cldr_dictionaries(LANGS, categories=("month", "weekday", "territory")).items():
        if (a, b) == ("de", "he"):
            continue
        pairs = [(e.source_word, e.target_word) for e in d.entries][:60]
        if (a, b) == ("en", "sw"):
            lines = [f"{w_b}\t{w_a}" for w_a, w_b in pairs]
            (directory / "sw-en.txt").write_text("\n".join(lines) + "\n\n", encoding="utf-8")
        else:
            lines = [f"{w_a} {w_b}" for w_a, w_b in pairs]
            (directory / f"{a}-{b}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def muse(tiny_llama, muse_dir, tmp_path_factory) -> tuple[BuildConfig, Path]:
    cfg = BuildConfig(
        model=str(tiny_llama),
        langs=LANGS,
        out=tmp_path_factory.mktemp("muse-index") / "index.duckdb",
        dictionaries=str(muse_dir),
        device="cpu",
        max_pairs=15,
        top_rate=0.1,
        middle_band=(0.2, 0.9),
        bridges=["en", "de"],
        selector="top-rate",
        min_set=1,
    )
    return cfg, _build(cfg)


def _ordered_pairs(rows) -> dict[tuple[str, str], list[dict]]:
    by_pair: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in rows:
        by_pair[(r["source"], r["target"])].append(r)
    return by_pair


# --------------------------------------------------------------------------------------------- bridges


def test_every_ordered_pair_has_ranked_bridges(cldr):
    _, path = cldr
    by_pair = _ordered_pairs(_rows(path, "SELECT * FROM bridges"))
    assert set(by_pair) == {(s, t) for s, t in itertools.permutations(LANGS, 2)}
    for (s, t), rows in by_pair.items():
        assert sorted(r["rank"] for r in rows) == list(range(1, len(rows) + 1))
        assert all(r["bridge"] not in (s, t) for r in rows)
        assert len({r["bridge"] for r in rows}) == len(rows)


def test_bridges_are_stored_in_both_orders_with_the_same_numbers(cldr):
    _, path = cldr
    rows = _rows(path, "SELECT source, target, bridge, score, probability, rank FROM bridges")
    as_set = {(r["source"], r["target"], r["bridge"], r["score"], r["probability"], r["rank"]) for r in rows}
    assert {(t, s, *rest) for s, t, *rest in as_set} == as_set


def test_probabilities_sum_to_one_and_follow_the_ranks(cldr):
    _, path = cldr
    by_pair = _ordered_pairs(_rows(path, "SELECT * FROM bridges"))
    assert by_pair
    for rows in by_pair.values():
        assert sum(r["probability"] for r in rows) == pytest.approx(1.0, abs=1e-9)
        ranked = sorted(rows, key=lambda r: r["rank"])
        assert [r["score"] for r in ranked] == sorted((r["score"] for r in rows), reverse=True)
        assert [r["probability"] for r in ranked] == sorted((r["probability"] for r in rows), reverse=True)
        assert all(0 < r["probability"] <= 1 for r in rows)


def test_bridge_score_is_the_mean_of_its_in_band_layer_scores(cldr):
    _, path = cldr
    hsic = _rows(path, "SELECT source, target, bridge, score FROM layer_hsic WHERE in_band")
    layer_scores = defaultdict(list)
    for r in hsic:
        layer_scores[(r["source"], r["target"], r["bridge"])].append(r["score"])
    ranked = _rows(path, "SELECT * FROM bridges WHERE source < target")
    assert ranked and layer_scores
    for r in ranked:
        expected = np.mean(layer_scores[(r["source"], r["target"], r["bridge"])])
        assert r["score"] == pytest.approx(expected, rel=1e-12)


def test_candidate_list_is_honoured(muse):
    _, path = muse
    by_pair = _ordered_pairs(_rows(path, "SELECT * FROM bridges"))
    assert {r["bridge"] for rows in by_pair.values() for r in rows} <= {"en", "de"}
    assert ("en", "de") not in by_pair and ("de", "en") not in by_pair  # no candidate left
    assert {r["bridge"] for r in by_pair[("sw", "he")]} == {"en", "de"}
    assert {r["bridge"] for r in by_pair[("en", "sw")]} == {"de"}
    assert {r["bridge"] for r in _rows(path, "SELECT bridge FROM layer_hsic")} <= {"en", "de"}


def test_layer_hsic_in_band_follows_the_configured_middle_band(cldr, muse):
    for cfg, path in (cldr, muse):
        band = middle_band(N_LAYERS, cfg.middle_band)
        rows = _rows(path, "SELECT layer, in_band, n_overlap, n_bridge FROM layer_hsic")
        assert rows
        assert all(r["in_band"] == (r["layer"] in band) for r in rows)
        assert all(r["n_overlap"] > 0 and r["n_bridge"] > 0 for r in rows)
        assert json.loads(_prov(path)["middle_band_layers"]) == band
    assert middle_band(N_LAYERS, muse[0].middle_band) != middle_band(N_LAYERS, cldr[0].middle_band)


# ------------------------------------------------------------------------------------ neurons, overlaps


def _neuron_sets(path: Path) -> tuple[dict[str, dict[tuple[int, int], float]], int]:
    sets: dict[str, dict[tuple[int, int], float]] = defaultdict(dict)
    for r in _rows(path, "SELECT * FROM language_neurons"):
        sets[r["language"]][(r["layer"], r["neuron"])] = r["probability"]
    return sets, len(sets)


def test_each_language_has_the_top_rate_share_of_all_neurons(cldr):
    cfg, path = cldr
    sets, _ = _neuron_sets(path)
    expected = round(cfg.top_rate * N_LAYERS * N_NEURONS)
    assert {code: len(s) for code, s in sets.items()} == dict.fromkeys(LANGS, expected)
    languages = {r["code"]: r for r in _rows(path, "SELECT * FROM languages")}
    assert {code: r["n_neurons"] for code, r in languages.items()} == dict.fromkeys(LANGS, expected)
    assert all(r["n_tokens"] > 0 for r in languages.values())
    assert all(0 <= p <= 1 for s in sets.values() for p in s.values())


def test_similarity_jaccard_and_overlap_recompute_from_language_neurons(cldr):
    _, path = cldr
    sets, _ = _neuron_sets(path)
    per_layer = defaultdict(int)
    for r in _rows(path, "SELECT * FROM overlap_layers"):
        per_layer[(r["lang_a"], r["lang_b"], r["layer"])] = r["n_overlap"]
    rows = _rows(path, "SELECT * FROM language_similarity")
    assert {(r["lang_a"], r["lang_b"]) for r in rows} == {
        tuple(sorted(p)) for p in itertools.combinations(LANGS, 2)
    }
    for r in rows:
        a, b = sets[r["lang_a"]], sets[r["lang_b"]]
        common = sorted(set(a) & set(b))
        assert r["n_overlap"] == len(common)
        assert r["jaccard"] == pytest.approx(len(common) / len(set(a) | set(b)), rel=1e-12)
        for layer in range(N_LAYERS):
            assert per_layer[(r["lang_a"], r["lang_b"], layer)] == sum(1 for n in common if n[0] == layer)
        assert r["similarity"] is None or -1 - 1e-9 <= r["similarity"] <= 1 + 1e-9
        if not common:
            assert r["cosine"] is None
            continue
        va, vb = np.array([a[n] for n in common]), np.array([b[n] for n in common])
        assert r["cosine"] == pytest.approx(va @ vb / np.linalg.norm(va) / np.linalg.norm(vb), rel=1e-9)


# ------------------------------------------------------------------------------ dictionaries, provenance


def _words(rows, split: str) -> set[tuple[str, str]]:
    """(language, word) of every entry of `split`, both sides."""
    chosen = [r for r in rows if r["split"] == split]
    return {(r["source"], r["source_word"]) for r in chosen} | {
        (r["target"], r["target_word"]) for r in chosen
    }


def test_probe_and_test_entries_share_no_word_within_a_pair(cldr, muse):
    for _, path in (cldr, muse):
        rows = _rows(path, "SELECT * FROM dictionary_entries")
        pairs = {(r["source"], r["target"]) for r in rows}
        assert len(pairs) >= 5, path  # cldr: all 6 pairs; muse: no de-he file
        for pair in pairs:
            in_pair = [r for r in rows if (r["source"], r["target"]) == pair]
            assert _words(in_pair, "probe") and _words(in_pair, "test")
            assert not _words(in_pair, "probe") & _words(in_pair, "test"), pair


def test_no_probe_word_is_a_test_word_anywhere_in_the_index(cldr, muse):
    """Evaluation on the test entries of any pair must never meet a word the probes used in another pair.

    This once failed while split_entries decided per pair (MUSE: `Belgium` an English test word in de-en
    and probed in en-he; CLDR: German `Tibetisch` naming a test concept and a probed one); the build now
    holds out every word any dictionary holds out (`held_out_words`).
    """
    for _, path in (muse, cldr):
        rows = _rows(path, "SELECT * FROM dictionary_entries")
        assert _words(rows, "probe") and _words(rows, "test"), path
        leaked = sorted(_words(rows, "probe") & _words(rows, "test"))
        assert not leaked, f"{path.parent.name}: probe words held out as test words elsewhere: {leaked}"


def test_probes_follow_the_probe_entries_and_max_pairs(cldr):
    cfg, path = cldr
    sql = "SELECT source, target, count(*) AS n FROM dictionary_entries WHERE split = 'probe' GROUP BY ALL"
    rows = _rows(path, sql)
    assert len(rows) == 6  # every pair of the four languages probed
    assert all(0 < r["n"] <= cfg.max_pairs for r in rows)
    assert int(_prov(path)["n_probes"]) == 2 * sum(r["n"] for r in rows)


def test_leg_quality_covers_every_probed_direction_with_its_probe_count(cldr):
    _cfg, path = cldr
    entries = _rows(path, "SELECT source, target, count(*) AS n FROM dictionary_entries WHERE split = 'probe'"
                    " GROUP BY ALL")  # fmt: skip
    legs = {(r["source"], r["target"]): r for r in _rows(path, "SELECT * FROM pair_quality")}
    assert entries
    # every entry gives one probe in each direction
    expected = {}
    for r in entries:
        for key in ((r["source"], r["target"]), (r["target"], r["source"])):
            expected[key] = expected.get(key, 0) + r["n"]
    assert {k: v["n_probes"] for k, v in legs.items()} == expected
    assert all(v["mean_logprob"] < 0 and 0 <= v["first_top1"] <= 1 for v in legs.values())


def test_provenance_records_every_parameter_and_the_model(cldr, tiny_llama):
    from transformers import AutoConfig

    cfg, path = cldr
    prov = _prov(path)
    assert json.loads(prov["parameters"]) == json.loads(json.dumps(cfg.parameters()))
    assert set(json.loads(prov["parameters"])) == {f.name for f in cfg.__dataclass_fields__.values()}
    assert prov["model_config_hash"] == config_hash(AutoConfig.from_pretrained(tiny_llama))
    assert prov["architecture"] == "LlamaForCausalLM"
    assert (prov["n_layers"], prov["n_neurons"], prov["dtype"]) == (str(N_LAYERS), str(N_NEURONS), "float32")
    assert prov["dictionaries"] == "cldr"
    assert prov["schema_version"] == "1"


def test_muse_entries_come_from_the_files_oriented_by_language_code(muse, muse_dir):
    cfg, path = muse
    file_entries = set()
    for f in muse_dir.glob("*.txt"):
        a, b = f.stem.split("-")
        for line in f.read_text(encoding="utf-8").splitlines():
            if line.strip():
                w_a, w_b = line.split()
                file_entries.add((a, b, w_a, w_b) if a < b else (b, a, w_b, w_a))
    rows = _rows(path, "SELECT * FROM dictionary_entries")
    stored = {(r["source"], r["target"], r["source_word"], r["target_word"]) for r in rows}
    assert stored <= file_entries
    assert {(s, t) for s, t, *_ in stored} == {
        ("de", "en"),
        ("en", "sw"),
        ("en", "he"),
        ("de", "sw"),
        ("he", "sw"),
    }
    assert all(r["concept"] is None and r["category"] is None for r in rows)
    assert _prov(path)["dictionaries"] == cfg.dictionaries


def test_same_config_twice_gives_identical_tables(cldr, tiny_llama, tmp_path):
    _, first = cldr
    second = _build(_cldr_config(tiny_llama, tmp_path / "again.duckdb"))
    for sql in (
        "SELECT * FROM bridges ORDER BY ALL",
        "SELECT * FROM layer_hsic ORDER BY ALL",
        "SELECT * FROM language_neurons ORDER BY ALL",
        "SELECT * FROM dictionary_entries ORDER BY ALL",
    ):
        expected = _rows(first, sql)
        assert expected, sql
        assert _rows(second, sql) == expected


# ----------------------------------------------------------------------------------- selectors and modes


def test_lape_selector_builds_an_index(tiny_llama, tmp_path):
    cfg = BuildConfig(
        model=str(tiny_llama),
        langs=["en", "de", "sw"],
        out=tmp_path / "lape.duckdb",
        device="cpu",
        max_pairs=10,
        top_rate=0.1,
        selector="lape",
    )
    path = _build(cfg)
    assert json.loads(_prov(path)["parameters"])["selector"] == "lape"
    rows = _rows(path, "SELECT * FROM language_neurons")
    kept = {(r["layer"], r["neuron"]) for r in rows}
    assert 0 < len(kept) <= round(0.1 * N_LAYERS * N_NEURONS)
    counts = {r["code"]: r["n_neurons"] for r in _rows(path, "SELECT * FROM languages")}
    assert counts == {c: sum(1 for r in rows if r["language"] == c) for c in ["en", "de", "sw"]}


def test_generate_mode_builds_an_index(tiny_llama, tmp_path):
    cfg = BuildConfig(
        model=str(tiny_llama),
        langs=["en", "de", "sw"],
        out=tmp_path / "generate.duckdb",
        device="cpu",
        max_pairs=3,
        top_rate=0.1,
        mode="generate",
        max_new_tokens=4,
    )
    path = _build(cfg)
    prov = _prov(path)
    assert json.loads(prov["parameters"])["mode"] == "generate"
    probes = _rows(path, "SELECT count(*) AS n FROM dictionary_entries WHERE split = 'probe'")[0]["n"]
    assert int(prov["n_probes"]) == 2 * probes == 2 * 3 * 3
    # the second word of a generate-mode probe is the model's own, not a gold translation: no leg quality
    assert _rows(path, "SELECT count(*) AS n FROM pair_quality")[0]["n"] == 0
    languages = _rows(path, "SELECT * FROM languages")
    assert len(languages) == len(cfg.langs) and all(r["n_tokens"] > 0 for r in languages)
