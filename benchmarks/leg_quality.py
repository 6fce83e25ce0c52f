"""What the leg-quality measurement costs the build: pass 1 (`LanguageCounts`) with and without
`LegQuality` (the LM head at the gold words' positions) on the same probes, same model, one process.

    .venv/bin/python benchmarks/leg_quality.py --model gemma --probes 256
    .venv/bin/python benchmarks/leg_quality.py --model qwen --probes 128

The two variants alternate (ABBA) over `--rounds` rounds and the medians are compared; the whole build runs
pass 1 once and pass 2 once over the same probes, so the share of a whole build is about half the pass-1
ratio (printed too). The last line is `RESULT model=... probes=... pass1_ratio=... build_share_pct=...`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from benchmarks.capture import make_probes
from index_builder.indexing.capture import LanguageCounts, encode_probes, run_pass
from index_builder.indexing.models import load_model
from index_builder.indexing.pipeline import leg_quality

REPO = Path(__file__).resolve().parents[1]
LANGS = ["en", "fr", "es", "de", "sw", "ar", "he", "ja", "id"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=("gemma", "qwen"), default="gemma")
    ap.add_argument("--probes", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=2, help="ABBA rounds (each times both variants twice)")
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()
    torch.manual_seed(0)
    from importlib import import_module

    folder = import_module(f"index_builder.indexing.{args.model}").prepare(REPO / ".cache" / "bridgex")
    loaded = load_model(str(folder), device="cpu")
    encoded = encode_probes(loaded.tokenizer, make_probes(LANGS, args.probes, seed=0), LANGS)
    ident = loaded.identity

    def once(with_legs: bool) -> float:
        counts = LanguageCounts(len(LANGS), ident.n_layers, ident.n_neurons, loaded.input_device)
        legs = leg_quality(loaded, len(LANGS)) if with_legs else None
        start = time.perf_counter()
        run_pass(loaded, encoded, counts, args.batch_size, 8192, legs=legs)
        return time.perf_counter() - start

    once(False)  # warm-up
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.rounds):
        for variant in (False, True, True, False):
            times[variant].append(once(variant))
    plain, legs = statistics.median(times[False]), statistics.median(times[True])
    ratio = legs / plain
    print(f"{args.model}: {len(encoded)} probes; pass 1 {plain:.2f} s, with leg quality {legs:.2f} s")
    runs = {label: [round(t, 2) for t in times[v]] for label, v in (("without", False), ("with", True))}
    print(f"  all runs: {runs}")
    share = 100 * (legs - plain) / (2 * plain)  # pass 2 runs the same probes once more, without the head
    print(
        f"RESULT model={args.model} probes={len(encoded)} pass1_s={plain:.2f} pass1_legs_s={legs:.2f}"
        f" pass1_ratio={ratio:.3f} build_share_pct={share:.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
