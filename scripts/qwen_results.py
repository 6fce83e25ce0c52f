"""The word session of docs/results/qwen2.5-coder-1.5b.md: convert Qwen2.5-Coder-1.5B-Instruct once, build its
index, serve it with vLLM (CPU) and run `bridgex-index eval` and `calibrate` on held-out CLDR words.

The page's figures from this session are historical (commit 2c4ef05, the authors' `top-rate` selector, then
the default); run today, the build uses the default `specific` selector, so the numbers will differ. E.g.
`.venv/bin/python scripts/qwen_results.py --out artifacts/qwen`.
Each stage is skipped when its output exists (the index) or is cached (eval answers), so a rerun is cheap.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NAME = "qwen2.5-coder-1.5b-instruct"
LANGS = "en,fr,es,de,ja,sw,he,ar"
# Low-resource and mid-resource sources into major targets (English is a target of none: the English pivot
# would be the direct route).
PAIRS = "sw-fr,sw-es,sw-de,he-fr,he-es,he-de,ar-fr,ar-es,ar-de,ja-fr,ja-es,fr-es"
ALL_BRIDGE_PAIRS = "sw-fr,sw-es,sw-de,he-fr,ar-fr"  # every candidate bridge: ~2 chain words/s on 2 cores


def run(cmd: list[str], log: Path) -> None:
    """Run `cmd` under /usr/bin/time -v (peak memory), teeing its output into `log`."""
    print("$", " ".join(cmd), flush=True)
    start = time.time()
    with open(log, "w") as f:
        done = subprocess.run(["/usr/bin/time", "-v", *cmd], stdout=f, stderr=subprocess.STDOUT, text=True)
    print(f"   {time.time() - start:.0f} s, exit {done.returncode}, log {log}", flush=True)
    if done.returncode != 0:
        print(log.read_text()[-3000:], file=sys.stderr)
        raise SystemExit(done.returncode)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=REPO / "artifacts" / "qwen")
    parser.add_argument("--cache", type=Path, default=REPO / ".cache" / "bridgex")
    parser.add_argument("--langs", default=LANGS)
    parser.add_argument("--pairs", default=PAIRS)
    parser.add_argument("--max-pairs", type=int, default=20, help="probe entries per language pair")
    parser.add_argument("--all-bridge-pairs", default=ALL_BRIDGE_PAIRS)
    parser.add_argument("--limit", type=int, default=40, help="held-out test words per pair")
    parser.add_argument("--calibration-limit", type=int, default=20, help="calibration words per pair")
    parser.add_argument("--skip-calibrate", action="store_true")
    return parser.parse_args()


def main() -> int:
    args = _arguments()

    sys.path.insert(0, str(REPO))
    from bridgex_serve.launch import VllmServer
    from index_builder.indexing.qwen import prepare

    bin_dir = Path(sys.executable).parent
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    model = prepare(args.cache)
    print(f"== model folder {model} ready in {time.time() - start:.0f} s", flush=True)
    index = args.out / "eval.duckdb"
    if not index.is_file():
        run(
            [str(bin_dir / "bridgex-index"), "build", "--model", str(model), "--langs", args.langs,
             "--dictionaries", "cldr", "--max-pairs", str(args.max_pairs), "--device", "cpu",
             "--out", str(index), "--quiet"],
            args.out / "build.log",
        )  # fmt: skip
    start = time.time()
    with VllmServer(model, name=NAME, log=args.out / "vllm.log", start_timeout=900) as vllm:
        took = time.time() - start
        print(f"== vLLM ready at {vllm.url} in {took:.0f} s: {' '.join(vllm.cmd[3:])}", flush=True)
        ix = str(bin_dir / "bridgex-index")
        base = ["--index", str(index), "--endpoint", vllm.url + "/v1", "--model", NAME,
                "--dictionaries", "cldr", "--concurrency", "64", "--quiet"]  # fmt: skip
        run(
            [ix, "eval", *base, "--pairs", args.pairs, "--strategies", "direct,english,bridgex",
             "--limit", str(args.limit), "--out", str(args.out / "eval-main")],
            args.out / "eval-main.log",
        )  # fmt: skip
        if not args.skip_calibrate:
            run([ix, "calibrate", *base, "--pairs", args.pairs, "--top", "2",
                 "--limit", str(args.calibration_limit)], args.out / "calibrate.log")  # fmt: skip
            run(
                [ix, "eval", *base, "--pairs", args.pairs,
                 "--strategies", "direct,english,bridgex,calibrated", "--words", "evaluation",
                 "--limit", str(args.calibration_limit),
                 "--out", str(args.out / "eval-calibrated")],
                args.out / "eval-calibrated.log",
            )  # fmt: skip
        run(
            [ix, "eval", *base, "--pairs", args.all_bridge_pairs,
             "--strategies", "direct,english,bridgex,all-bridges", "--limit", str(args.limit),
             "--out", str(args.out / "eval-all-bridges")],
            args.out / "eval-all-bridges.log",
        )  # fmt: skip
        style = REPO / "scripts" / "qwen_prompt_style.py"
        if style.is_file():
            run([sys.executable, str(style), "--endpoint", vllm.url + "/v1", "--model", NAME,
                 "--pairs", "sw-fr,he-es,ar-de,ja-fr", "--limit", "25",
                 "--out", str(args.out / "prompt-style")],
                args.out / "prompt-style.log")  # fmt: skip
    print(f"== done; vLLM stopped. Outputs in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
