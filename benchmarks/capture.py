"""Time BridgeX's batched hooked capture (pass 1, `LanguageCounts`) against the same batched forward without
hooks and against the authors' approach (one probe per call, 30 greedy generated tokens, hooks on every
layer's MLP activation installed and removed per probe, counts moved to the host with `.cpu()` per call).

    .venv/bin/python benchmarks/capture.py --probes 256 --reference-probes 24

Same model, same probes (the reference runs on the first `--reference-probes` of them), one process.
Hooked and plain passes alternate (ABBA order) over `--rounds` rounds and the medians are compared, so both
see the same machine state. A check compares the reference's prompt-token counts with BridgeX's on the same
probes. The last line is `RESULT vs_reference=<ratio> hooked_vs_plain=<ratio>`
(hooked probes/s over reference probes/s, and over plain probes/s).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from index_builder.indexing.capture import (
    EncodedProbe,
    LanguageCounts,
    collate,
    encode_probes,
    length_batches,
    run_pass,
)
from index_builder.indexing.config import BuildConfig, validate
from index_builder.indexing.models import LoadedModel, load_model
from index_builder.indexing.probes import Probe, build_probes

NEW_TOKENS = 30


def make_probes(langs: list[str], n: int, seed: int) -> list[Probe]:
    """`n` teacher-forced probes over all pairs of `langs` (CLDR dictionaries), shuffled with `seed`."""
    plan = validate(BuildConfig(model="unused", langs=langs, out=Path("unused")))
    probes = [
        p
        for pair, entries in sorted(plan.probe_entries.items())
        for p in build_probes(pair, entries, plan.names)
    ]
    random.Random(seed).shuffle(probes)
    if n > len(probes):
        raise SystemExit(f"only {len(probes)} probes available for {','.join(langs)}, asked for {n}")
    return probes[:n]


def hooked(loaded: LoadedModel, encoded: Sequence[EncodedProbe], n_lang: int, batch_size: int) -> None:
    """BridgeX pass 1: batched, hooks installed once, counts reduced on the model's device."""
    ident = loaded.identity
    device = loaded.input_device
    collector = LanguageCounts(n_lang, ident.n_layers, ident.n_neurons, device)
    run_pass(loaded, encoded, collector, batch_size)
    collector.result()


def plain(loaded: LoadedModel, encoded: Sequence[EncodedProbe], batch_size: int) -> None:
    """The same batches through the same backbone call, without hooks or collector."""
    device = loaded.input_device
    decoder = loaded.model.get_decoder()
    pad_id = loaded.tokenizer.pad_token_id
    with torch.inference_mode():
        for rows in length_batches([len(e.input_ids) for e in encoded], batch_size):
            batch = collate(encoded, rows, pad_id, device)
            decoder(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False)


def reference(
    loaded: LoadedModel, probes: Sequence[Probe], encoded: Sequence[EncodedProbe], langs: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """The authors' approach: per probe, install hooks on every layer, `generate` 30 greedy tokens, remove
    the hooks; each hook call copies the activation's positive mask to the host and counts it there.

    Returns (prompt-token counts, generated-token counts), each (n_lang, L, I); generated tokens count for
    the probe's second language."""
    ident = loaded.identity
    n_lang = len(langs)
    prompt_counts = np.zeros((n_lang, ident.n_layers, ident.n_neurons))
    generated_counts = np.zeros_like(prompt_counts)
    device = loaded.input_device
    decoder_layers = loaded.model.get_decoder().layers
    pad_id = loaded.tokenizer.pad_token_id

    def make_hook(layer: int, token_langs: np.ndarray, second: int) -> Callable:
        act_fn = decoder_layers[layer].mlp.act_fn if loaded.apply_activation else None

        def hook(_module, _inputs, output: torch.Tensor) -> None:
            act = act_fn(output) if act_fn is not None else output
            positive = (act[0] > 0).cpu().numpy()  # (T, I) on the host, every call
            if positive.shape[0] == len(token_langs):  # prefill: the prompt's tokens
                for k in range(n_lang):
                    prompt_counts[k, layer] += positive[token_langs == k].sum(axis=0)
            else:  # one decode step: a generated token
                generated_counts[second, layer] += positive.sum(axis=0)

        return hook

    for probe, enc in zip(probes, encoded, strict=True):
        token_langs = np.asarray(enc.token_langs)
        second = langs.index(probe.direction[1])
        handles = [
            m.register_forward_hook(make_hook(i, token_langs, second))
            for i, m in enumerate(loaded.activations)
        ]
        try:
            ids = torch.tensor([enc.input_ids], device=device)
            with torch.inference_mode():
                out = loaded.model.generate(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    max_new_tokens=NEW_TOKENS,
                    min_new_tokens=NEW_TOKENS,
                    do_sample=False,
                    pad_token_id=pad_id,
                )
        finally:
            for h in handles:
                h.remove()
        if out.shape[1] - ids.shape[1] != NEW_TOKENS:
            raise RuntimeError(f"generate produced {out.shape[1] - ids.shape[1]} tokens, not {NEW_TOKENS}")
    return prompt_counts, generated_counts


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model folder, hub id or .gguf (default: the converted Gemma 3 270M)")
    parser.add_argument("--probes", type=int, default=256, help="probes per batched pass")
    parser.add_argument("--reference-probes", type=int, default=24, help="probes run the authors' way")
    parser.add_argument("--batch-size", type=int, default=BuildConfig.batch_size, help="rows per forward")
    parser.add_argument("--rounds", type=int, default=5, help="alternating hooked/plain rounds (median)")
    parser.add_argument("--langs", default="en,de,sw,he,ja", help="comma-separated ISO 639-1 codes")
    parser.add_argument("--seed", type=int, default=0, help="seed of the probe shuffle")
    args = parser.parse_args()
    if min(args.probes, args.reference_probes, args.batch_size, args.rounds) < 1:
        parser.error("--probes, --reference-probes, --batch-size and --rounds must be at least 1")
    if args.reference_probes > args.probes:
        parser.error("--reference-probes must not exceed --probes (the reference runs on a subset)")

    langs = [c.strip() for c in args.langs.split(",") if c.strip()]
    probes = make_probes(langs, args.probes, args.seed)
    if args.model is None:
        from index_builder.indexing.gemma import prepare

        args.model = str(prepare())
    start = time.perf_counter()
    loaded = load_model(args.model)
    load_s = time.perf_counter() - start
    encoded = encode_probes(loaded.tokenizer, probes, langs)
    lengths = [len(e.input_ids) for e in encoded]
    ident = loaded.identity
    print(
        f"model: {ident.architecture} {ident.dtype}, {ident.n_layers} layers x {ident.n_neurons} neurons, "
        f"loaded in {load_s:.1f} s; torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(
        f"probes: {len(probes)} over {','.join(langs)}, {sum(lengths)} tokens "
        f"(mean {statistics.mean(lengths):.1f}, max {max(lengths)}), batch size {args.batch_size}"
    )

    n_lang = len(langs)
    # Warm-up (allocator, first-call overheads), not timed.
    hooked(loaded, encoded[: args.batch_size], n_lang, args.batch_size)
    plain(loaded, encoded[: args.batch_size], args.batch_size)
    reference(loaded, probes[:1], encoded[:1], langs)

    times: dict[str, list[float]] = {"hooked": [], "plain": []}
    runs = {
        "hooked": lambda: hooked(loaded, encoded, n_lang, args.batch_size),
        "plain": lambda: plain(loaded, encoded, args.batch_size),
    }
    for r in range(args.rounds):
        order = ("hooked", "plain") if r % 2 == 0 else ("plain", "hooked")  # ABBA: no side always first
        for name in order:
            times[name].append(timed(runs[name]))
        print(f"round {r + 1}: hooked {times['hooked'][-1]:.2f} s, plain {times['plain'][-1]:.2f} s")

    m = args.reference_probes
    result: list[tuple[np.ndarray, np.ndarray]] = []
    ref_s = timed(lambda: result.append(reference(loaded, probes[:m], encoded[:m], langs)))
    prompt_counts, _ = result[0]

    # Check: the reference's prompt-token counts against BridgeX's capture of the same m probes.
    device = loaded.input_device
    check = LanguageCounts(n_lang, ident.n_layers, ident.n_neurons, device)
    run_pass(loaded, encoded[:m], check, args.batch_size)
    ours, _ = check.result()
    differing = int(np.count_nonzero(ours != prompt_counts))

    hooked_s = statistics.median(times["hooked"])
    plain_s = statistics.median(times["plain"])
    rate = {
        "batched, hooked (BridgeX)": (len(probes), hooked_s, len(probes) / hooked_s),
        "batched, plain forward": (len(probes), plain_s, len(probes) / plain_s),
        "reference (1/call, 30 gen)": (m, ref_s, m / ref_s),
    }
    hooked_rate = rate["batched, hooked (BridgeX)"][2]
    print(f"\n{'method':28s} {'probes':>6s} {'seconds':>8s} {'probes/s':>9s} {'hooked/x':>9s}")
    for name, (n, s, pps) in rate.items():
        print(f"{name:28s} {n:6d} {s:8.2f} {pps:9.2f} {hooked_rate / pps:9.2f}")
    spread = {k: (min(v), max(v)) for k, v in times.items()}
    print(
        f"round spread: hooked {spread['hooked'][0]:.2f}-{spread['hooked'][1]:.2f} s, "
        f"plain {spread['plain'][0]:.2f}-{spread['plain'][1]:.2f} s"
    )
    paired = [p / h for h, p in zip(times["hooked"], times["plain"], strict=True)]
    per_round = ", ".join(f"{x:.3f}" for x in paired)
    best = min(times["plain"]) / min(times["hooked"])
    print(
        f"hooked/plain per round: {per_round} (median {statistics.median(paired):.3f}); "
        f"fastest rounds: {best:.3f}"
    )
    print(
        f"check: prompt-token counts of the reference vs BridgeX on {m} probes: "
        f"{differing} of {ours.size} cells differ (max abs diff {np.abs(ours - prompt_counts).max():.0f})"
    )
    vs_reference = hooked_rate / rate["reference (1/call, 30 gen)"][2]
    hooked_vs_plain = hooked_rate / rate["batched, plain forward"][2]
    print(f"RESULT vs_reference={vs_reference:.2f} hooked_vs_plain={hooked_vs_plain:.3f}")


if __name__ == "__main__":
    main()
