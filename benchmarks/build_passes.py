"""The one-pass index build against a plain forward pass and the two-pass build, in one run.

Same model, same probes (CLDR, `--langs`, `--max-pairs`), one process each, run one after the other so each
has the machine to itself, each in a fresh subprocess (its own peak RSS):
- `plain`: the build's batches (each pair batched alone, as the one pass does) through the decoder, no hooks;
- `collectors`: the same with the one pass's counts and every neuron's means, without the leg-quality head
  (what the one pass costs apart from the route policy's leg quality);
- `two`: `bridgex-index build --passes 2` (pass 1 counts, pass 2 re-runs each pair for the chosen neurons);
- `one`: `bridgex-index build` (the default: one pass, every neuron's per-probe means stored, then HSIC).
Builds are timed without the model load; `build` = forward pass(es) + HSIC + writing the index. The two
indexes are compared table by table (same neurons and bridges; largest HSIC difference).

`--scale` adds one-pass builds on 3 probe counts (fixed languages) and 3 language counts (fixed probes per
pair), to show the build time per probe and HSIC's share.

    .venv/bin/python benchmarks/build_passes.py --model gemma --langs en,fr,es,de,sw,ar,he --max-pairs 20 \
        --scale
    .venv/bin/python benchmarks/build_passes.py --model qwen --langs en,fr,es,de,sw,ar,he --max-pairs 8

Ends with `RESULT model=... one_vs_plain=... two_vs_plain=... max_hsic_diff=...`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

FORWARD = {"plain": "forward only", "collectors": "forward + counts + all means, no leg quality"}
COMPARED = (
    "language_neurons",
    "overlap_layers",
    "language_similarity",
    "pair_quality",
    "layer_hsic",
    "bridges",
)


def model_folder(name: str) -> Path:
    """`gemma` / `qwen`: the converted folder of a model shipped on PyPI (prepared once); else a path."""
    cache = Path(os.environ.get("BRIDGEX_CACHE", REPO / ".cache" / "bridgex"))
    if name == "gemma":
        from index_builder.indexing.gemma import prepare

        return prepare(cache)
    if name == "qwen":
        from index_builder.indexing.qwen import prepare

        return prepare(cache)
    return Path(name)


def _config(args: argparse.Namespace, out: Path, **overrides):
    from index_builder.indexing.config import BuildConfig

    settings = {"max_pairs": args.max_pairs, "device": "cpu", "batch_size": args.batch_size} | overrides
    return BuildConfig(model=str(args.folder), langs=args.langs.split(","), out=out, **settings)


def forward_pass(args: argparse.Namespace, collectors: bool) -> dict:
    """The build's probes and batches through the decoder: with no hooks (`plain`, the floor a build is
    judged against), or with the one pass's collectors but no leg quality (`collectors`: counts and every
    neuron's means, written to a memory map in the benchmark's folder), to separate the two costs."""
    import numpy as np
    import torch

    from index_builder.indexing.capture import (
        AllProbeMeans,
        Collectors,
        LanguageCounts,
        collate,
        encode_probes,
        pass_batches,
        run_pass,
    )
    from index_builder.indexing.config import validate
    from index_builder.indexing.models import load_model
    from index_builder.indexing.pipeline import pair_spans

    cfg = _config(args, Path("unused.duckdb"))
    plan = validate(cfg)
    probes = plan.probes(cfg.mode)
    pairs = sorted(probes)
    loaded = load_model(cfg.model, cfg.device, cfg.dtype)
    encoded = encode_probes(loaded.tokenizer, [p for pair in pairs for p in probes[pair]], plan.langs)
    groups = list(pair_spans(probes).values())
    ident, device = loaded.identity, loaded.input_device
    begin = time.perf_counter()
    if collectors:
        shape = (len(encoded), ident.n_layers * ident.n_neurons)
        sink = np.memmap(Path(args.out) / "collectors.means", dtype=np.float32, mode="w+", shape=shape)

        def write(rows, means):
            sink[rows] = means.reshape(len(rows), -1)

        counts = LanguageCounts(len(plan.langs), ident.n_layers, ident.n_neurons, device)
        means = AllProbeMeans(ident.n_layers, ident.n_neurons, device, write)
        run_pass(
            loaded, encoded, Collectors(counts, means), cfg.batch_size, cfg.max_batch_tokens, groups=groups
        )
        sink.flush()
    else:
        decoder = loaded.model.get_decoder()
        with torch.inference_mode():
            for rows in pass_batches(encoded, cfg.batch_size, cfg.max_batch_tokens, groups):
                batch = collate(encoded, rows, loaded.tokenizer.pad_token_id, device)
                decoder(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False)
    seconds = time.perf_counter() - begin
    (Path(args.out) / "collectors.means").unlink(missing_ok=True)
    return {"probes": len(encoded), "build": seconds, "layers": ident.n_layers, "neurons": ident.n_neurons}


def build(args: argparse.Namespace, passes: int) -> dict:
    """One build; its step times, the stored means' size on disk (kept for measuring, then deleted)."""
    from index_builder.indexing import means_store
    from index_builder.indexing.pipeline import build_index

    out = Path(args.out) / f"passes{passes}-{args.tag}.duckdb"
    out.unlink(missing_ok=True)
    cfg = _config(args, out, passes=passes, keep_means=True)
    summary = build_index(cfg, log=lambda _m: None, progress=False)
    seconds = summary["seconds"]
    store = means_store.default_dir(out)
    disk = sum(f.stat().st_blocks * 512 for f in store.glob("*")) if store.is_dir() else 0
    for f in store.glob("*"):
        f.unlink()
    means_store.remove_if_empty(store)
    steps = {k: v for k, v in seconds.items() if k != "load"}
    return {
        "probes": summary["probes"],
        "languages": len(summary["languages"]),
        "build": sum(steps.values()),
        "steps": steps,
        "means_disk": disk,
        "index_disk": out.stat().st_size,
        "index": str(out),
    }


def worker(args: argparse.Namespace) -> None:
    """Run one measurement in this process and print it as one JSON line (with this process's peak RSS)."""
    import torch

    torch.manual_seed(0)
    args.folder = Path(args.folder)
    if args.worker in ("plain", "collectors"):
        result = forward_pass(args, collectors=args.worker == "collectors")
    else:
        result = build(args, 1 if args.worker == "one" else 2)
    result["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print("MEASURED " + json.dumps(result))


def measure(args: argparse.Namespace, kind: str, langs: str, max_pairs: int, tag: str) -> dict:
    """`kind` in a fresh subprocess."""
    cmd = [sys.executable, __file__, "--worker", kind, "--folder", str(args.folder), "--langs", langs]
    cmd += ["--max-pairs", str(max_pairs), "--out", str(args.out), "--tag", tag]
    cmd += ["--batch-size", str(args.batch_size)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("MEASURED ")]
    if done.returncode != 0 or not lines:
        sys.exit(f"error: {kind} failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix("MEASURED "))


def compare(one: Path, two: Path) -> dict:
    """Per table: rows equal apart from floats, and the largest float difference."""
    import duckdb

    out = {}
    con_a, con_b = duckdb.connect(str(one), read_only=True), duckdb.connect(str(two), read_only=True)
    try:
        for table in COMPARED:
            a = con_a.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()
            b = con_b.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()
            same = len(a) == len(b)
            diff = 0.0
            for ra, rb in zip(a, b, strict=False):
                for x, y in zip(ra, rb, strict=True):
                    if isinstance(x, float) and isinstance(y, float):
                        diff = max(diff, abs(x - y))
                    elif x != y:
                        same = False
            out[table] = {"rows": len(a), "same_apart_from_floats": same, "max_float_diff": diff}
    finally:
        con_a.close()
        con_b.close()
    return out


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="gemma", help="gemma, qwen or a model folder")
    parser.add_argument("--langs", default="en,fr,es,de,sw,ar,he")
    parser.add_argument("--max-pairs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--scale", action="store_true", help="one-pass builds at 3 probe and 3 language counts"
    )
    parser.add_argument("--out", type=Path, help="folder for the indexes (default: a temporary one)")
    parser.add_argument("--worker", choices=["plain", "collectors", "one", "two"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--tag", default="main", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    args.folder = model_folder(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        args.out = args.out or Path(tmp)
        return report(args)


def report(args: argparse.Namespace) -> int:
    kinds = ("plain", "collectors", "two", "one")
    runs = {kind: measure(args, kind, args.langs, args.max_pairs, "main") for kind in kinds}
    plain = runs["plain"]
    n, per_probe = plain["probes"], plain["layers"] * plain["neurons"]
    print(f"model {args.model}: {plain['layers']} layers × {plain['neurons']} neurons; {n} probes")
    print("| run | build s | steps (s) | vs plain | peak RSS | stored means on disk | index |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for kind, r in runs.items():
        steps = ", ".join(f"{k} {v}" for k, v in r.get("steps", {}).items()) or FORWARD[kind]
        disk = _gib(r.get("means_disk", 0)) if kind == "one" else "–"
        index = f"{r['index_disk'] / 2**20:.1f} MiB" if "index_disk" in r else "–"
        ratio = r["build"] / plain["build"]
        rss = _gib(r["peak_rss"])
        print(f"| {kind} | {r['build']:.1f} | {steps} | {ratio:.2f}× | {rss} | {disk} | {index} |")
    same = compare(Path(runs["one"]["index"]), Path(runs["two"]["index"]))
    for table, s in same.items():
        print(f"same index: {table}: {s['rows']} rows, equal apart from floats {s['same_apart_from_floats']},"
              f" largest float difference {s['max_float_diff']:.2e}")  # fmt: skip
    f32, f16 = _gib(per_probe * 4000), _gib(per_probe * 2000)
    print(f"stored means per 1,000 probes: {f32} float32, {f16} float16")
    if args.scale:
        scale(args)
    one_pass = runs["one"]["steps"].get("pass", 0.0)
    print(
        f"RESULT model={args.model} probes={n} plain_s={plain['build']:.1f} two_s={runs['two']['build']:.1f}"
        f" one_s={runs['one']['build']:.1f} one_pass_s={one_pass:.1f}"
        f" one_vs_plain={runs['one']['build'] / plain['build']:.3f}"
        f" collectors_vs_plain={runs['collectors']['build'] / plain['build']:.3f}"
        f" two_vs_plain={runs['two']['build'] / plain['build']:.3f}"
        f" same_tables={all(s['same_apart_from_floats'] for s in same.values())}"
        f" max_hsic_diff={same['layer_hsic']['max_float_diff']:.2e}"
        f" one_rss_gib={runs['one']['peak_rss'] / 2**30:.2f}"
        f" two_rss_gib={runs['two']['peak_rss'] / 2**30:.2f}"
        f" means_gib={runs['one']['means_disk'] / 2**30:.3f}"
    )
    return 0


def scale(args: argparse.Namespace) -> None:
    """One-pass builds: probes per pair × 1, 2, 4 at the first 4 languages; 3, 5 and 7 languages."""
    langs = args.langs.split(",")
    base = max(args.max_pairs // 2, 1)
    points = [(",".join(langs[:4]), base * k) for k in (1, 2, 4)]
    points += [(",".join(langs[:k]), base * 2) for k in (3, 5, 7) if k <= len(langs)]
    head = ["languages", "probes per pair", "probes", "pass s", "HSIC s", "write s", "build s / 1,000 probes"]
    print("| " + " | ".join([*head, "HSIC share"]) + " |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for i, (langs_k, max_pairs) in enumerate(points):
        r = measure(args, "one", langs_k, max_pairs, f"scale{i}")
        s = r["steps"]
        cells = [r["languages"], max_pairs * 2, r["probes"], s["pass"], s["hsic"], s["write"]]
        cells += [f"{1000 * r['build'] / r['probes']:.1f}", f"{s['hsic'] / r['build']:.1%}"]
        print("| " + " | ".join(str(c) for c in cells) + " |")


if __name__ == "__main__":
    raise SystemExit(main())
