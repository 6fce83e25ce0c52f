"""The index's tables in the column shapes `bridgex_index.schema` declares, from the build's results, and its
provenance (every parameter, the model's identity, the library versions)."""

from __future__ import annotations

import itertools
import json
import platform
from collections.abc import Sequence
from datetime import datetime, timezone

import numpy as np

from bridgex_index.store import columns_of

from .. import __version__
from . import neurons
from .config import BuildConfig, Plan
from .languages import english_name
from .pair_scores import BRIDGE_COLUMNS, HSIC_COLUMNS


def index_tables(
    plan: Plan,
    tokens: np.ndarray,
    p: np.ndarray,
    masks: np.ndarray,
    hsic_rows: list[tuple],
    bridge_rows: list[tuple],
    legs: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> dict[str, dict[str, list]]:
    """Every table of the index: `tokens` (n_lang,) counted, `p` (n_lang, L, I) activation probabilities,
    `masks` (n_lang, L, I) language neurons, the pairs' `layer_hsic` and `bridges` rows, and `legs`
    ((probes, mean log-prob, top-1 share), each (n_lang, n_lang) for a → b; None in generate mode)."""
    return {
        "languages": _language_table(plan, tokens, masks),
        "language_neurons": _neuron_table(plan.langs, p, masks),
        **_overlap_tables(plan.langs, p, masks),
        "layer_hsic": columns_of(hsic_rows, HSIC_COLUMNS),
        "bridges": columns_of(bridge_rows, BRIDGE_COLUMNS),
        "dictionary_entries": _entry_table(plan),
        "pair_quality": _pair_quality_table(plan.langs, legs),
    }


def _pair_quality_table(
    langs: Sequence[str], legs: tuple[np.ndarray, np.ndarray, np.ndarray] | None
) -> dict[str, list]:
    """`pair_quality`: one row per directed pair with scored probes (no rows without `legs`)."""
    table: dict[str, list] = {k: [] for k in ("source", "target", "n_probes", "mean_logprob", "first_top1")}
    if legs is None:
        return table
    n, logprob, top1 = legs
    for a, b in itertools.permutations(range(len(langs)), 2):
        if n[a, b] > 0:
            table["source"].append(langs[a])
            table["target"].append(langs[b])
            table["n_probes"].append(int(n[a, b]))
            table["mean_logprob"].append(float(logprob[a, b]))
            table["first_top1"].append(float(top1[a, b]))
    return table


def _language_table(plan: Plan, tokens: np.ndarray, masks: np.ndarray) -> dict[str, list]:
    return {
        "code": plan.langs,
        "prompt_name": [plan.names[c] for c in plan.langs],
        "english_name": [english_name(c) for c in plan.langs],
        "low_resource": [c in plan.low_resource for c in plan.langs],
        "n_tokens": [int(x) for x in tokens],
        "n_neurons": [int(m.sum()) for m in masks],
    }


def _neuron_table(langs: Sequence[str], p: np.ndarray, masks: np.ndarray) -> dict[str, list]:
    table: dict[str, list] = {"language": [], "layer": [], "neuron": [], "probability": []}
    for i, code in enumerate(langs):
        layer, neuron = np.nonzero(masks[i])
        table["language"] += [code] * len(layer)
        table["layer"] += layer.tolist()
        table["neuron"] += neuron.tolist()
        table["probability"] += p[i, layer, neuron].tolist()
    return table


def _overlap_tables(langs: Sequence[str], p: np.ndarray, masks: np.ndarray) -> dict[str, dict[str, list]]:
    sim: dict[str, list] = {
        "lang_a": [],
        "lang_b": [],
        "n_overlap": [],
        "jaccard": [],
        "similarity": [],
        "cosine": [],
    }
    per_layer: dict[str, list] = {"lang_a": [], "lang_b": [], "layer": [], "n_overlap": []}
    for (i, a), (j, b) in itertools.combinations(enumerate(langs), 2):
        a, b, i, j = (a, b, i, j) if a < b else (b, a, j, i)
        o = neurons.overlap(masks[i], masks[j])
        sim["lang_a"].append(a)
        sim["lang_b"].append(b)
        sim["n_overlap"].append(int(o.sum()))
        sim["jaccard"].append(neurons.jaccard(masks[i], masks[j]))
        sim["similarity"].append(neurons.profile_correlation(p[i], p[j]))
        sim["cosine"].append(neurons.similarity(p[i], p[j], o))  # the authors' definition
        for layer, count in enumerate(neurons.layer_distribution(o)):
            per_layer["lang_a"].append(a)
            per_layer["lang_b"].append(b)
            per_layer["layer"].append(layer)
            per_layer["n_overlap"].append(int(count))
    return {"language_similarity": sim, "overlap_layers": per_layer}


def _entry_table(plan: Plan) -> dict[str, list]:
    table: dict[str, list] = {
        k: [] for k in ("source", "target", "source_word", "target_word", "concept", "category", "split")
    }
    for pair in sorted(plan.dictionaries):
        for split, entries in (
            ("probe", plan.probe_entries.get(pair, [])),
            ("test", plan.test_entries[pair]),
        ):
            for e in entries:
                row = (pair[0], pair[1], e.source_word, e.target_word, e.concept, e.category, split)
                for key, val in zip(table, row, strict=True):
                    table[key].append(val)
    return table


def provenance(
    cfg: BuildConfig, identity, band: Sequence[int], n_probes: int, device: str, processes: int
) -> dict[str, str]:
    """The provenance table: `identity` is the loaded model's `ModelIdentity`, `band` the middle band's
    layers the build used."""
    import torch
    import transformers

    return {
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "package_version": __version__,
        "model": identity.source,
        "model_folder": identity.folder or "",
        "architecture": identity.architecture,
        "model_config_hash": identity.config_hash,
        "dtype": identity.dtype,
        "device": device,
        "n_layers": str(identity.n_layers),
        "n_neurons": str(identity.n_neurons),
        "middle_band_layers": json.dumps(list(band)),
        "dictionaries": cfg.dictionaries,
        "n_probes": str(n_probes),
        "processes": str(processes),
        "parameters": json.dumps(cfg.parameters(), sort_keys=True),
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "python_version": platform.python_version(),
        "bridge_definition": "S_c = N_c minus (N_s union N_t)",
    }
