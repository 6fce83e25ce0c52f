"""The real Gemma 3 270M through `bridgex-index build` on four languages (slow: about a minute on a CPU)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from bridgex_index.store import open_index, provenance, records

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent / "bridgex-index"
LANGS = ["en", "de", "sw", "he"]
N_LAYERS, N_NEURONS = 18, 2048  # Gemma 3 270M: 18 layers, MLP intermediate size 2048


@pytest.fixture(scope="module")
def gemma_index(gemma_folder, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("gemma-index") / "gemma.duckdb"
    done = subprocess.run(
        [BIN, "build", "--model", gemma_folder, "--langs", ",".join(LANGS), "--dictionaries", "cldr",
         "--max-pairs", "15", "--device", "cpu", "--out", out, "--quiet"],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return out, done


def _read(path: Path):
    con = open_index(path)
    try:
        return (
            provenance(con),
            records(con, "SELECT * FROM bridges"),
            records(con, "SELECT * FROM language_neurons"),
            records(con, "SELECT * FROM languages"),
            records(con, "SELECT * FROM language_similarity"),
        )
    finally:
        con.close()


def test_gemma_build_reports_and_records_the_model(gemma_index, gemma_folder):
    path, done = gemma_index
    assert done.stdout.startswith(f"wrote {path}: 180 probes, 6 pairs")
    prov, *_ = _read(path)
    assert (prov["n_layers"], prov["n_neurons"]) == (str(N_LAYERS), str(N_NEURONS))
    assert prov["architecture"] == "Gemma3ForCausalLM"
    assert prov["model_folder"] == str(gemma_folder)
    assert json.loads(prov["middle_band_layers"]) == list(range(6, 12))
    assert json.loads(prov["parameters"])["max_pairs"] == 15


def test_gemma_ranked_pairs_rank_every_other_language(gemma_index):
    """Pairs without a band layer of --min-set neurons on both sides have no rows (served directly)."""
    _, bridges, *_ = _read(gemma_index[0])
    by_pair = defaultdict(list)
    for r in bridges:
        by_pair[(r["source"], r["target"])].append(r)
    assert by_pair, "no pair has a bridge ranking"
    assert set(by_pair) <= set(itertools.permutations(LANGS, 2))
    for (s, t), rows in by_pair.items():
        assert (t, s) in by_pair
        assert {r["bridge"] for r in rows} <= set(LANGS) - {s, t}
        assert sorted(r["rank"] for r in rows) == list(range(1, len(rows) + 1))
        assert sum(r["probability"] for r in rows) == pytest.approx(1.0, abs=1e-9)
        best = min(rows, key=lambda r: r["rank"])
        assert best["probability"] == max(r["probability"] for r in rows)


def test_gemma_language_neurons_are_specific_and_at_most_five_percent_per_layer(gemma_index):
    """The default selector: p_a - mean of the others' p >= 0.05, at most round(0.05 * 2048) per layer."""
    _, _, neurons, languages, similarity = _read(gemma_index[0])
    per_layer = defaultdict(int)
    for r in neurons:
        per_layer[(r["language"], r["layer"])] += 1
        assert 0 <= r["layer"] < N_LAYERS and 0 <= r["neuron"] < N_NEURONS
        assert r["probability"] >= 0.05  # at least its specificity
    assert max(per_layer.values()) <= round(0.05 * N_NEURONS) == 102
    assert {r["code"] for r in languages} == set(LANGS) and all(r["n_tokens"] > 0 for r in languages)
    assert {r["code"]: r["n_neurons"] for r in languages} == {
        c: sum(n for (lang, _), n in per_layer.items() if lang == c) for c in LANGS
    }
    assert len(similarity) == len(LANGS) * (len(LANGS) - 1) // 2
    assert all(r["similarity"] is not None and -1 <= r["similarity"] <= 1 for r in similarity)


@pytest.mark.slow
def test_converted_gemma_tokenizer_adds_bos(gemma_folder):
    """The GGUF asks for <bos>; without it Gemma mostly repeats a demonstration's answer."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gemma_folder)
    assert tok('Kiswahili:"maji"')["input_ids"][0] == tok.bos_token_id
