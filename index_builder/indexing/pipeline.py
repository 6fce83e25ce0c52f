"""The whole offline build, in order: validate → load the model → probes → pass 1 (language neurons) →
pass 2 (per-probe means, HSIC, ranked bridges, one pair at a time) → health → the DuckDB index.

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

from . import neurons
from .config import BuildConfig, BuildError, Pair, Plan, validate
from .pair_scores import PairResult, column_positions, score_pair, select_neurons
from .probes import Probe
from .tables import index_tables, provenance

if TYPE_CHECKING:
    from .capture import EncodedProbe
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
    found = _language_neurons(run, encoded)
    clock.lap("pass1")
    results = _score_pairs(run, encoded, probes, found.masks)
    clock.lap("pass2_hsic")
    summary = {"languages": run.plan.langs, "pairs": len(pairs), "probes": len(encoded)}
    summary["processes"] = world.size
    if world.is_main:
        summary |= _write(run, found, [results[pair] for pair in pairs], len(encoded))
    world.barrier()
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


def _language_neurons(run: _Run, encoded: list[EncodedProbe]) -> _LanguageNeurons:
    """Pass 1: activation probabilities per language (probes shared out, counts summed exactly), then the
    configured selector's masks; and from the same forward pass the model's own leg quality per directed
    pair (teacher-forced probes only: a generate-mode probe's second word is not a gold translation)."""
    from .capture import LanguageCounts, run_pass

    cfg, world, ident = run.cfg, run.world, run.loaded.identity
    counts = LanguageCounts(len(run.plan.langs), ident.n_layers, ident.n_neurons, run.loaded.input_device)
    legs = leg_quality(run.loaded, len(run.plan.langs)) if cfg.mode == "teacher-forced" else None
    shard = world.shard(encoded)
    with run.bar(len(shard), "pass 1: language neurons") as bar:
        run_pass(run.loaded, shard, counts, cfg.batch_size, cfg.max_batch_tokens, bar.update, legs)
    world.sum_(counts.positive)
    world.sum_(counts.tokens)
    world.sum_(counts.activation)
    if legs is not None:
        world.sum_(legs.sums)
    positive, tokens = counts.result()
    p = neurons.activation_probabilities(positive, tokens, run.plan.langs)  # (n_lang, L, I)
    masks = select_neurons(p, counts.mean_activation(), cfg)  # (n_lang, L, I)
    ties = [int((p_a == 1.0).sum()) for p_a in p]
    if cfg.selector == "top-rate" and max(ties) > masks[0].sum():
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


def _score_pairs(
    run: _Run, encoded: list[EncodedProbe], probes: dict[Pair, list[Probe]], masks: np.ndarray
) -> dict[Pair, PairResult]:
    """Pass 2 and HSIC, one whole pair at a time (pairs shared out): only language-neuron means are kept.
    `encoded` holds every pair's probes in sorted pair order."""
    from .capture import ProbeMeans, columns_for, run_pass

    cfg, world = run.cfg, run.world
    columns = columns_for(masks)
    column = column_positions(columns)
    pairs = sorted(probes)
    offsets = dict(zip(pairs, np.cumsum([0] + [len(probes[pair]) for pair in pairs]), strict=False))
    results: dict[Pair, PairResult] = {}
    mine = world.shard(pairs)
    with run.bar(sum(len(probes[pair]) for pair in mine), "pass 2: probe means + HSIC") as bar:
        for pair in mine:
            pair_encoded = encoded[offsets[pair] : offsets[pair] + len(probes[pair])]
            collector = ProbeMeans(columns, len(pair_encoded), run.loaded.input_device)
            run_pass(run.loaded, pair_encoded, collector, cfg.batch_size, cfg.max_batch_tokens, bar.update)
            results[pair] = score_pair(pair, collector.result(), column, masks, run.plan, run.band, cfg)
    for part in world.gather(results):
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
        raise BuildError(
            f"--strict: the index is degenerate ({'; '.join(report.reasons)}); nothing written to {cfg.out}"
        )
    device = str(run.loaded.input_device)
    prov = provenance(cfg, run.loaded.identity, run.band, n_probes, device, run.world.size)
    write_index(cfg.out, prov, tables)
    return {"health": report.as_dict(), "bridge_rows": len(bridge_rows), "written": str(cfg.out)}
