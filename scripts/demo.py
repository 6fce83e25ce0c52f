"""The main job: build a bridge index for the real Gemma 3 270M over CLDR dictionaries, show the bridges
it picks for low-resource pairs, and write the plots. Run through `make demo`.

Outputs go to `artifacts/` (git-ignored). The index is rebuilt only when its build parameters change
(`--rebuild` forces it), so a second run takes seconds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LANGS = "en,de,fr,es,it,pt,id,ar,he,ja,zh,sw,fi,hu"
SHOW_PAIRS = [("sw", "he"), ("id", "ja"), ("sw", "ja"), ("he", "ar"), ("fi", "hu"), ("sw", "en")]


def bridgex_index(*args: str, capture: bool = False) -> str:
    cmd = [str(REPO / ".venv" / "bin" / "bridgex-index"), *args]
    done = subprocess.run(cmd, check=True, text=True, capture_output=capture)
    return done.stdout if capture else ""


def index_is_current(index: Path, wanted: dict) -> bool:
    """True when `index` exists and was built with the same parameters."""
    if not index.is_file():
        return False
    try:
        shown = json.loads(bridgex_index("show", str(index), "--json", capture=True))
    except subprocess.CalledProcessError:
        return False
    params = shown["provenance"]["parameters"]
    return all(params.get(k) == v for k, v in wanted.items())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--langs", default=LANGS)
    parser.add_argument("--max-pairs", type=int, default=40)
    parser.add_argument("--out", type=Path, default=REPO / "artifacts")
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args()

    sys.path.insert(0, str(REPO))
    from index_builder.gemma import prepare

    args.out.mkdir(parents=True, exist_ok=True)
    print("== Gemma 3 270M (Gemma Terms of Use): assembling and converting once", flush=True)
    model = prepare(REPO / ".cache" / "bridgex")
    index = args.out / "gemma-3-270m.duckdb"
    wanted = {"langs": args.langs.split(","), "max_pairs": args.max_pairs, "model": str(model)}
    if args.rebuild or not index_is_current(index, wanted):
        print(f"== building the bridge index for {args.langs} (a few minutes on 2 CPU cores)", flush=True)
        bridgex_index(
            "build", "--model", str(model), "--langs", args.langs, "--dictionaries", "cldr",
            "--max-pairs", str(args.max_pairs), "--out", str(index),
        )  # fmt: skip
    else:
        print(f"== {index} is up to date (use --rebuild to build again)")
    print("== best bridges for low-resource pairs")
    rows = json.loads(bridgex_index("bridges", str(index), "--json", "--top", "3", capture=True))
    for source, target in SHOW_PAIRS:
        ranked = [r for r in rows if r["source"] == source and r["target"] == target]
        shown = ", ".join(f"{r['bridge']} ({r['probability']:.2f})" for r in ranked) or "no bridge"
        print(f"  {source} → {target}: {shown}")
    print("== language similarity (top 8 pairs)")
    print("\n".join(bridgex_index("similarity", str(index), capture=True).splitlines()[:9]))
    print("== plots")
    print(bridgex_index("plot", str(index), "--out", str(args.out / "plots"), capture=True), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
