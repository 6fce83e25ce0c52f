"""The whole offline build: dictionaries → probes → capture → neurons, overlaps, HSIC → DuckDB index.

`BuildConfig` holds every parameter (all recorded in the index's provenance); `validate` checks the
inputs before the model is loaded, so bad input fails in a second, not after a minute of loading.
"""

from __future__ import annotations

import itertools
import json
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from bridgex_index import health
from bridgex_index.store import columns_of, write_index

from .. import __version__
from . import bridges, hsic, neurons
from .dictionaries import (
    DictionaryError,
    PairDictionary,
    cldr_dictionaries,
    held_out_words,
    load_muse_dir,
    split_entries,
)
from .languages import UnknownLanguageError, english_name, low_resource_set, prompt_name, validate_codes
from .probes import MODES, Probe, build_probes

SELECTORS = ("specific", "top-rate", "lape")
# specific: 5% of each layer's neurons (measured on Gemma 3 270M: 1% leaves the median bridge-specific set in
# the band at 17 neurons and 78% of pairs without a layer that can vote; docs/results/index-validity.md);
# top-rate and lape: 1% of all L×I neurons, as the authors.
DEFAULT_TOP_RATE = {"specific": 0.05, "top-rate": 0.01, "lape": 0.01}
Pair = tuple[str, str]


class BuildError(ValueError):
    """Input that cannot produce an index (the message is meant for the user)."""


@dataclass
class BuildConfig:
    """Every parameter of a build; defaults follow method.md (and the paper where it is explicit)."""

    model: str
    langs: list[str]
    out: Path
    dictionaries: str = "cldr"  # "cldr", or a directory of MUSE files `<src>-<trg>.txt`
    device: str = "auto"
    dtype: str = "auto"  # float32 on CPU (faster there than bf16), bfloat16 on CUDA
    batch_size: int = 32
    max_batch_tokens: int = 8192  # padded tokens per forward pass, bounds activation memory
    top_rate: float | None = None  # None: DEFAULT_TOP_RATE of the selector
    selector: str = "specific"  # top-rate: the authors' selector, kept for reproduction
    min_specificity: float = 0.05  # specific only: p_a minus the other languages' mean p, at least
    min_set: int = 5  # a band layer votes only when its overlap and bridge-specific sets both have this many
    filter_rate: float = 0.95  # LAPE only
    activation_bar_ratio: float = 0.95  # LAPE only
    middle_band: tuple[float, float] = (0.3, 0.7)  # the authors used layers 10–21 of 32
    bridges: list[str] | None = None  # candidate bridges; None = every other index language
    mode: str = "teacher-forced"
    max_pairs: int = 100  # probe entries per language pair (each gives two probes)
    test_fraction: float = 0.2  # held-out share of each dictionary, never probed
    temperature: float = 1.0  # selection-probability softmax temperature
    max_new_tokens: int = 30  # generate mode only
    low_resource: list[str] | None = None  # None = every language not in languages.DEFAULT_HIGH_RESOURCE
    cache_dir: Path | None = None
    device_map: str | None = None  # "auto": spread a model larger than one GPU over the visible devices
    hsic_max_bytes: int = 256 * 2**20
    strict: bool = False  # refuse to write an index whose health verdict is "degenerate"
    probe_half: int | None = None  # 0 or 1: only the even or odd probe entries of each pair

    def __post_init__(self) -> None:
        if self.top_rate is None:
            self.top_rate = DEFAULT_TOP_RATE.get(self.selector, 0.01)

    def parameters(self) -> dict:
        """JSON-ready parameters for the provenance table."""
        data = asdict(self)
        data["out"] = str(self.out)
        data["cache_dir"] = str(self.cache_dir) if self.cache_dir else None
        return data


@dataclass
class Plan:
    """Validated inputs: the languages, their names and the dictionaries split into probe and test."""

    langs: list[str]
    names: dict[str, str]
    low_resource: set[str]
    candidates: list[str]
    dictionaries: dict[Pair, PairDictionary]
    probe_entries: dict[Pair, list] = field(default_factory=dict)
    test_entries: dict[Pair, list] = field(default_factory=dict)


def validate(cfg: BuildConfig) -> Plan:
    """Check every input that does not need the model; raise BuildError (or a ValueError subclass with a
    user-facing message: unknown language, dictionary errors)."""
    try:
        return _validate(cfg)
    except (BuildError, DictionaryError, UnknownLanguageError):
        raise
    except ValueError as err:  # the pure helpers' checks (empty lists, bands, fractions) are input errors
        raise BuildError(str(err)) from err


def _validate(cfg: BuildConfig) -> Plan:
    langs = validate_codes(cfg.langs)
    if len(langs) < 3:
        raise BuildError(
            f"need at least 3 languages (a source, a target and a bridge), got {','.join(langs)}"
        )
    if cfg.selector not in SELECTORS:
        raise BuildError(f"unknown selector {cfg.selector!r} (expected {' or '.join(SELECTORS)})")
    if cfg.mode not in MODES:
        raise BuildError(f"unknown mode {cfg.mode!r} (expected {' or '.join(MODES)})")
    if not 0 < cfg.top_rate < 1:
        raise BuildError(f"--top-rate must be between 0 and 1, got {cfg.top_rate}")
    if not 0 < cfg.min_specificity <= 1:
        raise BuildError(f"--min-specificity must be in (0, 1], got {cfg.min_specificity}")
    if cfg.min_set < 1:
        raise BuildError(f"--min-set must be at least 1, got {cfg.min_set}")
    if cfg.probe_half not in (None, 0, 1):
        raise BuildError(f"--probe-half must be 0 or 1, got {cfg.probe_half}")
    if cfg.batch_size < 1 or cfg.max_pairs < 1:
        raise BuildError("--batch-size and --max-pairs must be at least 1")
    if not 0 <= cfg.test_fraction < 1:
        raise BuildError(f"--test-fraction must be in [0, 1), got {cfg.test_fraction}")
    if cfg.temperature <= 0:
        raise BuildError(f"--temperature must be positive, got {cfg.temperature}")
    bridges.middle_band(
        100, cfg.middle_band
    )  # validates the bounds; the layer count is checked after loading
    candidates = langs
    if cfg.bridges is not None:
        candidates = validate_codes(cfg.bridges)
        outside = [c for c in candidates if c not in langs]
        if outside:
            raise BuildError(
                f"bridge candidate(s) {','.join(outside)} not among --langs: "
                "a bridge needs its own language neurons"
            )
    if cfg.low_resource:  # an empty list means: no language is low-resource
        explicit = validate_codes(cfg.low_resource)
        outside = [c for c in explicit if c not in langs]
        if outside:
            raise BuildError(f"--low-resource language(s) {','.join(outside)} not among --langs")
    if cfg.dictionaries == "cldr":
        dicts = cldr_dictionaries(langs)
    else:
        dicts = load_muse_dir(Path(cfg.dictionaries), langs)
    plan = Plan(
        langs=langs,
        names={c: prompt_name(c) for c in langs},
        low_resource=low_resource_set(langs, cfg.low_resource),
        candidates=candidates,
        dictionaries=dicts,
    )
    held_out = set().union(*(held_out_words(d, cfg.test_fraction) for d in dicts.values()))
    for pair, d in sorted(dicts.items()):
        probe, test = split_entries(d, cfg.test_fraction, cfg.max_pairs, held_out)
        if cfg.probe_half is not None:
            probe = probe[cfg.probe_half :: 2]
        if probe:
            plan.probe_entries[pair] = probe
        plan.test_entries[pair] = test
    probed = {c for pair in plan.probe_entries for c in pair}
    unprobed = [c for c in langs if c not in probed]
    if unprobed:
        raise BuildError(f"no dictionary entries to probe for language(s) {','.join(unprobed)}")
    return plan


def _probes(plan: Plan, mode: str) -> dict[Pair, list[Probe]]:
    return {
        pair: build_probes(pair, entries, plan.names, mode) for pair, entries in plan.probe_entries.items()
    }


def select_neurons(p: np.ndarray, mean_activation: np.ndarray, cfg: BuildConfig) -> np.ndarray:
    """(n_lang, L, I) language-neuron masks by the configured selector (top-rate ties broken by the
    language's mean activation)."""
    if cfg.selector == "specific":
        return neurons.specific_neurons(p, cfg.top_rate, cfg.min_specificity, per_layer=True)
    if cfg.selector == "lape":
        return neurons.lape_neurons(p, cfg.top_rate, cfg.filter_rate, cfg.activation_bar_ratio)
    return np.stack(
        [
            neurons.top_rate_neurons(p_a, cfg.top_rate, m_a)
            for p_a, m_a in zip(p, mean_activation, strict=True)
        ]
    )


def pair_hsic(
    means: np.ndarray,
    column: dict[tuple[int, int], int],
    overlap_mask: np.ndarray,
    bridge_masks: dict[str, np.ndarray],
    max_bytes: int,
) -> dict[str, dict[int, tuple[float, int, int]]]:
    """Per candidate and layer: (layer score, n1, n2) from the per-probe means of one pair.

    `means` is (n_probes, n_columns); `column` maps (layer, neuron) to its column.
    """
    n = means.shape[0]
    out: dict[str, dict[int, tuple[float, int, int]]] = {c: {} for c in bridge_masks}
    for layer in range(overlap_mask.shape[0]):
        xs = [column[(layer, j)] for j in np.flatnonzero(overlap_mask[layer])]
        ys = {c: [column[(layer, j)] for j in np.flatnonzero(m[layer])] for c, m in bridge_masks.items()}
        ys = {c: cols for c, cols in ys.items() if cols}
        if not xs or not ys:
            continue
        x = means[:, xs].T  # (n1, n)
        if len(xs) * n * n * 8 <= max_bytes:
            kx = hsic.centred_kernels(x)  # (n1, n*n), reused for every candidate
            for c, cols in ys.items():
                h = hsic.hsic_from_kernels(kx, hsic.kernels_flat(means[:, cols].T), n)  # (n1, n2)
                out[c][layer] = (hsic.layer_score(h), len(xs), len(cols))
        else:
            for c, cols in ys.items():
                h = hsic.hsic_matrix(x, means[:, cols].T, max_bytes=max_bytes)
                out[c][layer] = (hsic.layer_score(h), len(xs), len(cols))
    return out


PairResult = tuple[list[tuple], list[tuple]]  # (layer_hsic rows, bridges rows) of one pair
HSIC_COLUMNS = ("source", "target", "bridge", "layer", "n_overlap", "n_bridge", "score", "in_band")
BRIDGE_COLUMNS = ("source", "target", "bridge", "score", "probability", "rank")


def score_pair(
    pair: Pair,
    means: np.ndarray,
    column: dict[tuple[int, int], int],
    masks: np.ndarray,
    plan: Plan,
    band: Sequence[int],
    cfg: BuildConfig,
) -> PairResult:
    """HSIC per layer and ranked bridges of one pair from its per-probe means (n_probes, n_columns).

    Every layer HSIC saw is recorded with its set sizes; only band layers where both the overlap and the
    bridge-specific set have at least `cfg.min_set` neurons vote. A candidate without a voting layer is not
    ranked, and a pair where no candidate has one gets no bridge rows (the server routes it directly).
    """
    s, t = pair
    index = {c: i for i, c in enumerate(plan.langs)}
    ms, mt = masks[index[s]], masks[index[t]]
    specific = {
        c: neurons.bridge_specific(masks[index[c]], ms, mt) for c in plan.candidates if c not in (s, t)
    }
    per_layer = pair_hsic(means, column, neurons.overlap(ms, mt), specific, cfg.hsic_max_bytes)
    hsic_rows = [
        (s, t, c, layer, n1, n2, score, layer in band)
        for c, layers in per_layer.items()
        for layer, (score, n1, n2) in sorted(layers.items())
    ]
    scores = bridges.voting_scores(per_layer, band, cfg.min_set)
    bridge_rows: list[tuple] = []
    if scores:
        probs = bridges.selection_probabilities(scores, cfg.temperature)
        for r in bridges.rank_bridges(scores, probs):
            bridge_rows += [(a, b, r.bridge, r.score, r.probability, r.rank) for a, b in ((s, t), (t, s))]
    return hsic_rows, bridge_rows


def build_index(cfg: BuildConfig, log: Callable[[str], None] | None = None, progress: bool = True) -> dict:
    """Run the whole build and write `cfg.out`; returns a summary (counts and timings).

    Under torchrun every rank runs this function: probes and pairs are shared out (see `distributed`)
    and rank 0 writes the index.
    """
    from tqdm.auto import tqdm

    from .capture import (
        LanguageCounts,
        ProbeMeans,
        columns_for,
        encode_probes,
        generate_probes,
        run_pass,
    )
    from .distributed import close_world, init_world
    from .models import load_model

    world = init_world()
    say = log or (lambda msg: print(msg, file=sys.stderr))
    if not world.is_main:
        say = lambda _msg: None  # noqa: E731
    progress = progress and world.is_main
    t0 = time.perf_counter()
    plan = validate(cfg)
    say(f"languages: {', '.join(plan.langs)}; pairs with probes: {len(plan.probe_entries)}")
    loaded = load_model(cfg.model, world.device(cfg.device), cfg.dtype, cfg.cache_dir, cfg.device_map)
    ident = loaded.identity
    say(f"model: {ident.architecture}, {ident.n_layers} layers × {ident.n_neurons} neurons, {ident.dtype}")
    if world.active:
        say(f"distributed: {world.size} processes")
    try:
        band = bridges.middle_band(ident.n_layers, cfg.middle_band)
    except ValueError as err:
        raise BuildError(str(err)) from err
    t_load = time.perf_counter()

    probes_by_pair = _probes(plan, cfg.mode)
    pairs = sorted(probes_by_pair)
    if cfg.mode == "generate":
        mine = world.shard(pairs)
        total = sum(len(probes_by_pair[pair]) for pair in mine)
        with tqdm(total=total, desc="generate", unit="probe", disable=not progress) as bar:
            generated = {
                pair: generate_probes(
                    loaded, probes_by_pair[pair], cfg.batch_size, cfg.max_new_tokens, bar.update
                )
                for pair in mine
            }
        for part in world.gather(generated):
            probes_by_pair.update(part)
    all_probes = [p for pair in pairs for p in probes_by_pair[pair]]
    encoded = encode_probes(loaded.tokenizer, all_probes, plan.langs)
    device = loaded.input_device

    # Pass 1: activation probabilities per language (probes shared out, counts summed exactly), and the
    # model's own leg quality per directed pair from the same forward pass (teacher-forced probes only).
    counts = LanguageCounts(len(plan.langs), ident.n_layers, ident.n_neurons, device)
    legs = leg_quality(loaded, len(plan.langs), device) if cfg.mode == "teacher-forced" else None
    shard = world.shard(encoded)
    with tqdm(total=len(shard), desc="pass 1: language neurons", unit="probe", disable=not progress) as bar:
        run_pass(loaded, shard, counts, cfg.batch_size, cfg.max_batch_tokens, bar.update, legs)
    world.sum_(counts.positive)
    world.sum_(counts.tokens)
    world.sum_(counts.activation)
    if legs is not None:
        world.sum_(legs.sums)
    positive, tokens = counts.result()
    p = neurons.activation_probabilities(positive, tokens, plan.langs)  # (n_lang, L, I)
    masks = select_neurons(p, counts.mean_activation(), cfg)  # (n_lang, L, I)
    ties = [int((p_a == 1.0).sum()) for p_a in p]
    if cfg.selector == "top-rate" and max(ties) > masks[0].sum():
        say(
            f"note: {max(ties)} neurons fire on every token of some language (more than the top rate keeps);"
            " ties broken by mean activation"
        )
    t_pass1 = time.perf_counter()

    # Pass 2 and HSIC, one whole pair at a time (pairs shared out): only language-neuron means are kept.
    columns = columns_for(masks)
    starts = np.cumsum([0] + [len(c) for c in columns])
    column = {
        (layer, int(j)): int(starts[layer]) + k for layer, js in enumerate(columns) for k, j in enumerate(js)
    }
    offsets = dict(zip(pairs, np.cumsum([0] + [len(probes_by_pair[pair]) for pair in pairs]), strict=False))
    results: dict[Pair, PairResult] = {}
    mine = world.shard(pairs)
    total = sum(len(probes_by_pair[pair]) for pair in mine)
    with tqdm(total=total, desc="pass 2: probe means + HSIC", unit="probe", disable=not progress) as bar:
        for pair in mine:
            pair_encoded = encoded[offsets[pair] : offsets[pair] + len(probes_by_pair[pair])]
            collector = ProbeMeans(columns, len(pair_encoded), device)
            run_pass(loaded, pair_encoded, collector, cfg.batch_size, cfg.max_batch_tokens, bar.update)
            results[pair] = score_pair(pair, collector.result(), column, masks, plan, band, cfg)
    for part in world.gather(results):
        results.update(part)
    t_pass2 = time.perf_counter()

    summary = {
        "languages": plan.langs,
        "pairs": len(pairs),
        "probes": len(encoded),
        "processes": world.size,
    }
    if world.is_main:
        hsic_rows = [row for pair in pairs for row in results[pair][0]]
        bridge_rows = [row for pair in pairs for row in results[pair][1]]
        tables = {
            "languages": _language_table(plan, tokens, masks),
            "language_neurons": _neuron_table(plan.langs, p, masks),
            **_overlap_tables(plan.langs, p, masks),
            "layer_hsic": columns_of(hsic_rows, HSIC_COLUMNS),
            "bridges": columns_of(bridge_rows, BRIDGE_COLUMNS),
            "dictionary_entries": _entry_table(plan),
            "pair_quality": _pair_quality_table(plan.langs, legs),
        }
        report = health.health_from_tables(tables, band, cfg.min_set)
        for line in report.lines():
            say(f"health: {line}")
        summary["health"] = report.as_dict()
        if cfg.strict and report.verdict == "degenerate":
            close_world(world)
            raise BuildError(
                f"--strict: the index is degenerate ({'; '.join(report.reasons)});"
                f" nothing written to {cfg.out}"
            )
        write_index(cfg.out, _provenance(cfg, loaded, plan, len(encoded), str(device), world.size), tables)
        summary["bridge_rows"] = len(bridge_rows)
        summary["written"] = str(cfg.out)
    world.barrier()
    close_world(world)
    t_end = time.perf_counter()
    summary["seconds"] = {
        "load": round(t_load - t0, 1),
        "pass1": round(t_pass1 - t_load, 1),
        "pass2_hsic": round(t_pass2 - t_pass1, 1),
        "write": round(t_end - t_pass2, 1),
    }
    return summary


def leg_quality(loaded, n_languages: int, device):
    """The leg-quality collector for `loaded` (its LM head, and Gemma-style final logit soft-capping)."""
    from .capture import LegQuality

    config = loaded.model.config
    softcap = getattr(config, "final_logit_softcapping", None)
    return LegQuality(n_languages, loaded.model.get_output_embeddings(), device, softcap)


def _pair_quality_table(langs: Sequence[str], legs) -> dict[str, list]:
    """`pair_quality` columns: one row per directed pair with scored probes (none in generate mode)."""
    table: dict[str, list] = {k: [] for k in ("source", "target", "n_probes", "mean_logprob", "first_top1")}
    if legs is None:
        return table
    n, logprob, top1 = legs.result()
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


def _provenance(
    cfg: BuildConfig, loaded, plan: Plan, n_probes: int, device: str, processes: int
) -> dict[str, str]:
    import torch
    import transformers

    ident = loaded.identity
    return {
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "package_version": __version__,
        "model": ident.source,
        "model_folder": ident.folder or "",
        "architecture": ident.architecture,
        "model_config_hash": ident.config_hash,
        "dtype": ident.dtype,
        "device": device,
        "n_layers": str(ident.n_layers),
        "n_neurons": str(ident.n_neurons),
        "middle_band_layers": json.dumps(bridges.middle_band(ident.n_layers, cfg.middle_band)),
        "dictionaries": cfg.dictionaries,
        "n_probes": str(n_probes),
        "processes": str(processes),
        "parameters": json.dumps(cfg.parameters(), sort_keys=True),
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "python_version": platform.python_version(),
        "bridge_definition": "S_c = N_c minus (N_s union N_t)",
    }
