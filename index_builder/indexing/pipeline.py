"""The whole offline build, in order: validate → load the model → probes → one forward pass (language
counts, leg quality and every neuron's per-probe means, stored in `means_store`) → language neurons → HSIC
and ranked bridges, one pair at a time, from the stored means → health → the DuckDB index.

`passes=2` is the older build that keeps no means: pass 1 counts, pass 2 runs the model again over each
pair's probes for the chosen neurons' means (the same index; for models whose means would not fit on disk).

The configuration and its validation live in `config`, the scores in `pair_scores`, the tables' shapes in
`tables`; this module only runs the steps and shares the work out under torchrun (see `distributed`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from bridgex_index import health
from bridgex_index.store import write_index

from . import means_store, neurons
from .config import BuildConfig, BuildError, Pair, Plan, validate
from .pair_scores import PairResult, column_positions, score_pair, select_neurons
from .probes import Probe
from .tables import index_tables, provenance

if TYPE_CHECKING:
    from .capture import EncodedProbe, LanguageCounts, LegQuality
    from .distributed import World
    from .models import LoadedModel


def build_index(cfg: BuildConfig, log: Callable[[str], None] | None = None, progress: bool = True) -> dict:
    """Run the whole build and write `cfg.out`; returns a summary (counts and timings).

    Under torchrun every rank runs this function: probes and pairs are shared out (see `distributed`)
    and rank 0 writes the index.
    """
    from .capture import encode_probes
    from .distributed import close_world, init_world

    world = init_world()
    clock = _Clock()
    run = _start(cfg, world, log, progress)  # validated inputs, the model, the middle band
    clock.lap("load")
    probes = _probes(run)
    pairs = sorted(probes)
    encoded = encode_probes(run.loaded.tokenizer, [p for pair in pairs for p in probes[pair]], run.plan.langs)
    if cfg.passes == 1:
        store = _one_pass(run, probes, encoded)
        found = _language_neurons(run, *store.collectors)
        clock.lap("pass")
        results = _score_stored(run, store, found.masks)
        clock.lap("hsic")
    else:
        found = _language_neurons(run, *_count(run, world.shard(encoded)))
        clock.lap("pass1")
        results = _score_pairs(run, encoded, probes, found.masks)
        clock.lap("pass2_hsic")
    summary = {"languages": run.plan.langs, "pairs": len(pairs), "probes": len(encoded)}
    summary["processes"] = world.size
    if world.is_main:
        summary |= _write(run, found, [results[pair] for pair in pairs], len(encoded))
    world.barrier()
    if cfg.passes == 1:
        store.close(keep=cfg.keep_means, world=world)
    close_world(world)
    clock.lap("write")
    summary["seconds"] = clock.seconds
    return summary


@dataclass
class _Run:
    """What every step of one build shares."""

    cfg: BuildConfig
    plan: Plan
    world: World
    loaded: LoadedModel
    band: list[int]  # the middle band's layers, computed once from the loaded model's depth
    say: Callable[[str], None]
    progress: bool

    def bar(self, total: int, desc: str):
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit="probe", disable=not self.progress)


@dataclass
class _LanguageNeurons:
    """Pass 1's result."""

    tokens: np.ndarray  # (n_lang,) tokens counted per language
    p: np.ndarray  # (n_lang, L, I) activation probabilities
    masks: np.ndarray  # (n_lang, L, I) the selected language neurons
    legs: tuple[np.ndarray, np.ndarray, np.ndarray] | None  # leg quality (probes, log-prob, top-1) a → b


class _Clock:
    """Seconds per step, each lap measured from the previous one."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = round(now - self._last, 1)
        self._last = now


def _start(cfg: BuildConfig, world: World, log: Callable[[str], None] | None, progress: bool) -> _Run:
    from .models import load_model

    say = log or (lambda msg: print(msg, file=sys.stderr))
    if not world.is_main:
        say = lambda _msg: None  # noqa: E731
    plan = validate(cfg)
    say(f"languages: {', '.join(plan.langs)}; pairs with probes: {len(plan.probe_entries)}")
    loaded = load_model(cfg.model, world.device(cfg.device), cfg.dtype, cfg.cache_dir, cfg.device_map)
    ident = loaded.identity
    say(f"model: {ident.architecture}, {ident.n_layers} layers × {ident.n_neurons} neurons, {ident.dtype}")
    if world.active:
        say(f"distributed: {world.size} processes")
    return _Run(cfg, plan, world, loaded, cfg.band(ident.n_layers), say, progress and world.is_main)


def _probes(run: _Run) -> dict[Pair, list[Probe]]:
    """Every pair's probes; in generate mode the model writes the answers (pairs shared out)."""
    from .capture import generate_probes

    cfg, world = run.cfg, run.world
    probes = run.plan.probes(cfg.mode)
    if cfg.mode == "generate":
        mine = world.shard(sorted(probes))
        with run.bar(sum(len(probes[pair]) for pair in mine), "generate") as bar:
            generated = {
                pair: generate_probes(
                    run.loaded, probes[pair], cfg.batch_size, cfg.max_new_tokens, bar.update
                )
                for pair in mine
            }
        for part in world.gather(generated):
            probes.update(part)
    return probes


def _count(run: _Run, shard: list[EncodedProbe]) -> tuple[LanguageCounts, LegQuality | None]:
    """Pass 1 of a two-pass build: language counts and leg quality of this rank's probes."""
    from .capture import run_pass

    counts, legs = _collectors(run)
    with run.bar(len(shard), "pass 1: language neurons") as bar:
        run_pass(run.loaded, shard, counts, run.cfg.batch_size, run.cfg.max_batch_tokens, bar.update, legs)
    return counts, legs


def _collectors(run: _Run) -> tuple[LanguageCounts, LegQuality | None]:
    """The pass's language counts and (teacher-forced probes only: a generate-mode probe's second word is not
    a gold translation) its leg-quality collector."""
    from .capture import LanguageCounts

    ident = run.loaded.identity
    counts = LanguageCounts(len(run.plan.langs), ident.n_layers, ident.n_neurons, run.loaded.input_device)
    legs = leg_quality(run.loaded, len(run.plan.langs)) if run.cfg.mode == "teacher-forced" else None
    return counts, legs


def _language_neurons(run: _Run, counts: LanguageCounts, legs: LegQuality | None) -> _LanguageNeurons:
    """Activation probabilities per language (every rank's counts summed exactly), then the configured
    selector's masks; and the model's own leg quality per directed pair from the same forward pass."""
    world = run.world
    world.sum_(counts.positive)
    world.sum_(counts.tokens)
    world.sum_(counts.activation)
    if legs is not None:
        world.sum_(legs.sums)
    positive, tokens = counts.result()
    p = neurons.activation_probabilities(positive, tokens, run.plan.langs)  # (n_lang, L, I)
    masks = select_neurons(p, counts.mean_activation(), run.cfg)  # (n_lang, L, I)
    ties = [int((p_a == 1.0).sum()) for p_a in p]
    if run.cfg.selector == "top-rate" and max(ties) > masks[0].sum():
        run.say(
            f"note: {max(ties)} neurons fire on every token of some language (more than the top rate keeps);"
            " ties broken by mean activation"
        )
    return _LanguageNeurons(tokens, p, masks, legs.result() if legs is not None else None)


def leg_quality(loaded: LoadedModel, n_languages: int):
    """The leg-quality collector for `loaded`: its LM head (and Gemma-style final logit soft-capping)."""
    from .capture import LegQuality

    softcap = getattr(loaded.model.config, "final_logit_softcapping", None)
    return LegQuality(n_languages, loaded.model.get_output_embeddings(), loaded.input_device, softcap)


def pair_spans(probes: dict[Pair, list[Probe]]) -> dict[Pair, tuple[int, int]]:
    """Each pair's (start, stop) in the encoded probes (every pair's probes, in sorted pair order)."""
    spans, start = {}, 0
    for pair in sorted(probes):
        spans[pair] = (start, start + len(probes[pair]))
        start += len(probes[pair])
    return spans


def _score_pairs(
    run: _Run, encoded: list[EncodedProbe], probes: dict[Pair, list[Probe]], masks: np.ndarray
) -> dict[Pair, PairResult]:
    """Pass 2 and HSIC, one whole pair at a time (pairs shared out): only language-neuron means are kept.
    `encoded` holds every pair's probes in sorted pair order."""
    from .capture import ProbeMeans, columns_for, run_pass

    cfg, world = run.cfg, run.world
    columns = columns_for(masks)
    column = column_positions(columns)
    spans = pair_spans(probes)
    results: dict[Pair, PairResult] = {}
    mine = world.shard(sorted(probes))
    with run.bar(sum(len(probes[pair]) for pair in mine), "pass 2: probe means + HSIC") as bar:
        for pair in mine:
            pair_encoded = encoded[slice(*spans[pair])]
            collector = ProbeMeans(columns, len(pair_encoded), run.loaded.input_device)
            run_pass(run.loaded, pair_encoded, collector, cfg.batch_size, cfg.max_batch_tokens, bar.update)
            results[pair] = score_pair(pair, collector.result(), column, masks, run.plan, run.band, cfg)
    for part in world.gather(results):
        results.update(part)
    return results


def _one_pass(run: _Run, probes: dict[Pair, list[Probe]], encoded: list[EncodedProbe]) -> _StoredPass:
    """The one forward pass over this rank's pairs (whole pairs per rank: each scores its pairs from its own
    store): language counts, leg quality and every neuron's per-probe means, resumed from the store's
    last checkpoint when an earlier run of the same build was interrupted."""
    from .capture import AllProbeMeans, Collectors, pass_batches, run_pass

    cfg, world, ident = run.cfg, run.world, run.loaded.identity
    everywhere = pair_spans(probes)
    spans, mine_encoded = {}, []
    for pair in world.shard(sorted(probes)):
        spans[pair] = (len(mine_encoded), len(mine_encoded) + len(probes[pair]))
        mine_encoded += encoded[slice(*everywhere[pair])]
    batching = {"batch_size": cfg.batch_size, "max_batch_tokens": cfg.max_batch_tokens, "world": world.size}
    key = means_store.fingerprint(ident, mine_encoded, batching | {"rank": world.rank, "mode": cfg.mode})
    shape = (len(mine_encoded), ident.n_layers, ident.n_neurons)
    store = means_store.MeansStore(cfg.means_folder, world.rank, shape, cfg.means_dtype, key, run.say)
    counts, legs = _collectors(run)
    done, sums = store.resumed()
    total = len(pass_batches(mine_encoded, cfg.batch_size, cfg.max_batch_tokens, list(spans.values())))
    if done:
        run.say(f"resuming the pass from {store.directory}: {done} of {total} batches stored")
        _load_sums(counts, legs, sums)
    means = AllProbeMeans(ident.n_layers, ident.n_neurons, run.loaded.input_device, store.write)

    def checkpoint(batches: int) -> None:
        store.checkpoint(batches, lambda: _sums(counts, legs), force=batches == total)

    if done < total:
        with run.bar(len(mine_encoded), "pass: counts, leg quality, probe means") as bar:
            run_pass(
                run.loaded, mine_encoded, Collectors(counts, means), cfg.batch_size, cfg.max_batch_tokens,
                bar.update, legs, skip=done, after_batch=checkpoint, groups=list(spans.values()),
            )  # fmt: skip
    return _StoredPass(store, spans, (counts, legs))


def _sums(counts: LanguageCounts, legs: LegQuality | None) -> dict[str, np.ndarray]:
    sums = {k: getattr(counts, k).cpu().numpy() for k in ("positive", "activation", "tokens")}
    if legs is not None:
        sums["legs"] = legs.sums.cpu().numpy()
    return sums


def _load_sums(counts: LanguageCounts, legs: LegQuality | None, sums: dict[str, np.ndarray]) -> None:
    import torch

    for k in ("positive", "activation", "tokens"):
        getattr(counts, k).copy_(torch.from_numpy(sums[k]))
    if legs is not None:
        legs.sums.copy_(torch.from_numpy(sums["legs"]))


@dataclass
class _StoredPass:
    """The one pass's result on this rank: its means store and where each of its pairs' probes sit."""

    store: means_store.MeansStore
    spans: dict[Pair, tuple[int, int]]  # rows of each of this rank's pairs in the store
    collectors: tuple[LanguageCounts, LegQuality | None]  # the pass's counts and leg quality

    def close(self, keep: bool, world: World) -> None:
        """Release the file; unless `keep`, delete it, and the folder once every rank has deleted theirs."""
        self.store.close()
        if not keep:
            self.store.remove_files()
            world.barrier()
            if world.is_main:
                means_store.remove_if_empty(self.store.directory)


def _score_stored(run: _Run, stored: _StoredPass, masks: np.ndarray) -> dict[Pair, PairResult]:
    """HSIC and ranked bridges of this rank's pairs from the stored means of the chosen neurons only."""
    from .capture import columns_for

    columns = columns_for(masks)
    column = column_positions(columns)
    n_neurons = masks.shape[2]
    flat = np.concatenate([layer * n_neurons + js for layer, js in enumerate(columns)]).astype(np.int64)
    results: dict[Pair, PairResult] = {}
    for pair, (start, stop) in stored.spans.items():
        means = stored.store.rows(start, stop, flat)
        results[pair] = score_pair(pair, means, column, masks, run.plan, run.band, run.cfg)
    for part in run.world.gather(results):
        results.update(part)
    return results


def _write(run: _Run, found: _LanguageNeurons, pair_results: list[PairResult], n_probes: int) -> dict:
    """Rank 0: the tables, their health verdict (refused under --strict when degenerate), the file."""
    from .distributed import close_world

    cfg = run.cfg
    hsic_rows = [row for hsic_part, _ in pair_results for row in hsic_part]
    bridge_rows = [row for _, bridge_part in pair_results for row in bridge_part]
    tables = index_tables(run.plan, found.tokens, found.p, found.masks, hsic_rows, bridge_rows, found.legs)
    report = health.health_from_tables(tables, run.band, cfg.min_set)
    for line in report.lines():
        run.say(f"health: {line}")
    if cfg.strict and report.verdict == "degenerate":
        close_world(run.world)
        kept = ""
        if cfg.passes == 1:
            kept = (
                f"; the forward pass's means stay in {cfg.means_folder} (a run with other selection settings"
                " re-scores them without the model; delete the folder otherwise)"
            )
        raise BuildError(
            f"--strict: the index is degenerate ({'; '.join(report.reasons)}); nothing written to {cfg.out}"
            + kept
        )
    device = str(run.loaded.input_device)
    prov = provenance(cfg, run.loaded.identity, run.band, n_probes, device, run.world.size)
    write_index(cfg.out, prov, tables)
    return {"health": report.as_dict(), "bridge_rows": len(bridge_rows), "written": str(cfg.out)}
