"""Pass 1 only: per-language activation probabilities and mean activations of a model, saved to an .npz.

Pass 1 does not depend on the selector, so selectors can be compared offline on these arrays in seconds
(`benchmarks/index_validity.py selectors --stats FILE`). The probes are exactly the ones `bridgex-index build`
would run with the same --langs/--max-pairs/--test-fraction (same validation and split). `--half 0|1` keeps
only the even/odd probe entries of each pair (as `build --probe-half`).

    export BRIDGEX_CACHE=.cache/bridgex   # the converted-model cache (the default)
    python benchmarks/pass1_stats.py --model gemma-3-270m \
        --langs en,de,fr,es,it,pt,id,ar,he,ja,zh,sw,fi,hu --max-pairs 40 --out artifacts/validity/gemma.npz
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from index_builder.indexing import neurons
from index_builder.indexing.config import BuildConfig, BuildError, validate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="model folder, hub id, or 'gemma-3-270m'")
    parser.add_argument("--langs", required=True)
    parser.add_argument("--max-pairs", type=int, default=40)
    parser.add_argument("--half", type=int, choices=(0, 1), default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    from index_builder.indexing.capture import LanguageCounts, encode_probes, run_pass
    from index_builder.indexing.models import default_cache_dir, load_model

    model = args.model
    if model == "gemma-3-270m":
        from index_builder.gemma import prepare

        model = str(prepare(default_cache_dir()))
    cfg = BuildConfig(
        model=model, langs=args.langs.split(","), out=args.out, max_pairs=args.max_pairs, probe_half=args.half
    )
    try:
        plan = validate(cfg)
    except (BuildError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    loaded = load_model(cfg.model, "cpu", "auto")
    probes = plan.probes(cfg.mode)
    all_probes = [p for pair in sorted(probes) for p in probes[pair]]
    encoded = encode_probes(loaded.tokenizer, all_probes, plan.langs)
    ident = loaded.identity
    counts = LanguageCounts(len(plan.langs), ident.n_layers, ident.n_neurons, loaded.input_device)
    t1 = time.perf_counter()
    run_pass(loaded, encoded, counts, args.batch_size, cfg.max_batch_tokens)
    positive, tokens = counts.result()
    p = neurons.activation_probabilities(positive, tokens, plan.langs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out,
        p=p.astype(np.float32),
        mean_activation=counts.mean_activation().astype(np.float32),
        tokens=tokens,
        langs=np.array(plan.langs),
        model=np.array(ident.source),
    )
    print(
        f"RESULT pass1 model={ident.source} langs={len(plan.langs)} probes={len(encoded)} "
        f"load_s={t1 - t0:.1f} pass1_s={time.perf_counter() - t1:.1f} out={args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
