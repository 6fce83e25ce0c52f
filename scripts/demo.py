"""The main job: build a bridge index for the real Gemma 3 270M over CLDR dictionaries, show the bridges
it picks for low-resource pairs, write the plots, then serve it: vLLM (CPU) with Gemma 3 270M, the BridgeX
proxy in front, and a few bridged word and sentence requests through the openai client. Everything it
starts is stopped at the end. Run through `make demo` (`--no-serve` stops after the index).

Outputs go to `artifacts/` (git-ignored). The index is rebuilt only when its build parameters change
(`--rebuild` forces it), so a second run takes seconds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
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
    parser.add_argument("--no-serve", action="store_true", help="stop after the index and the plots")
    args = parser.parse_args()

    sys.path.insert(0, str(REPO))
    from index_builder.build.gemma import prepare

    args.out.mkdir(parents=True, exist_ok=True)
    print("== Gemma 3 270M (Gemma Terms of Use): assembling and converting once", flush=True)
    model = prepare(REPO / ".cache" / "bridgex")
    index = args.out / "gemma-3-270m.duckdb"
    wanted = {
        "langs": args.langs.split(","),
        "max_pairs": args.max_pairs,
        "model": str(model),
        "selector": "specific",
    }
    if args.rebuild or not index_is_current(index, wanted):
        print(f"== building the bridge index for {args.langs} (a few minutes on 2 CPU cores)", flush=True)
        bridgex_index(
            "build", "--model", str(model), "--langs", args.langs, "--dictionaries", "cldr",
            "--max-pairs", str(args.max_pairs), "--out", str(index),
        )  # fmt: skip
    else:
        print(f"== {index} is up to date (use --rebuild to build again)")
    print("== index health (does it measure languages?)")
    print(bridgex_index("health", str(index), capture=True), end="")
    print("== best bridges for low-resource pairs")
    rows = json.loads(bridgex_index("bridges", str(index), "--json", "--top", "3", capture=True))
    for source, target in SHOW_PAIRS:
        ranked = [r for r in rows if r["source"] == source and r["target"] == target]
        shown = (
            ", ".join(f"{r['bridge']} ({r['probability']:.2f})" for r in ranked)
            or "no ranking (no band layer with large enough sets): served directly"
        )
        print(f"  {source} → {target}: {shown}")
    print("== language similarity (top 8 pairs)")
    print("\n".join(bridgex_index("similarity", str(index), capture=True).splitlines()[:9]))
    print("== plots")
    print(bridgex_index("plot", str(index), "--out", str(args.out / "plots"), capture=True), end="")
    if not args.no_serve:
        serve_demo(model, index, args.out)
    return 0


WORDS = [("maji", "sw", "he"), ("Jumatatu", "sw", "ja"), ("kucing", "id", "ja"), ("vesi", "fi", "hu")]
SENTENCES = [("Habari ya asubuhi, rafiki yangu.", "sw", "he"), ("Saya suka minum kopi.", "id", "ja")]


def serve_demo(model: Path, index: Path, out: Path) -> None:
    """Start vLLM and the proxy, send bridged requests with the openai client, stop both."""
    import urllib.request

    from openai import OpenAI

    from bridgex_serve.launch import VllmServer, free_port

    print("== starting vLLM (CPU) with Gemma 3 270M (about a minute)", flush=True)
    with VllmServer(
        model, name="gemma-3-270m", block_size=16, dtype="bfloat16", max_model_len=1024,
        log=out / "vllm.log", start_timeout=600,
    ) as vllm:  # fmt: skip
        port = free_port()
        proxy_log = open(out / "proxy.log", "wb")  # noqa: SIM115 (closed in the finally below)
        proxy = subprocess.Popen(
            [str(REPO / ".venv" / "bin" / "bridgex-serve"), "--index", str(index), "--upstream", vllm.url,
             "--port", str(port)],
            stdout=proxy_log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}"
            for _ in range(120):
                try:
                    with urllib.request.urlopen(url + "/ready", timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    time.sleep(0.5)
            else:
                raise RuntimeError(f"the proxy did not become ready; see {out / 'proxy.log'}")
            print(f"== proxy ready at {url} in front of {vllm.url}")
            client = OpenAI(base_url=url + "/v1", api_key="demo", max_retries=0, timeout=120)
            for word, source, target in WORDS:
                r = client.chat.completions.create(
                    model="gemma-3-270m",
                    messages=[{"role": "user", "content": word}],
                    extra_body={"bridgex": {"task": "word", "source": source, "target": target}},
                )
                _show(word, source, target, r.choices[0].message.content, r.model_extra.get("bridgex"))
            for text, source, target in SENTENCES:
                r = client.completions.create(
                    model="gemma-3-270m", prompt=text, max_tokens=48,
                    extra_body={"bridgex": {"task": "translate", "source": source, "target": target}},
                )  # fmt: skip
                _show(text, source, target, r.choices[0].text, r.model_extra.get("bridgex"))
        finally:
            proxy.terminate()
            proxy.wait(20)
            proxy_log.close()
    print("== stopped vLLM and the proxy")


def _show(text: str, source: str, target: str, answer: str, meta: dict | None) -> None:
    meta = meta or {}
    via = meta.get("bridge") or "direct"
    rendering = meta.get("bridge_text")
    extra = f' (bridge rendering "{rendering}")' if rendering else ""
    if meta.get("fallback") == "copy":  # a copied bridged answer, replaced by the direct route's
        extra += f", copy ({meta.get('fallback_reason')}): answered directly"
    print(f'  {source}→{target} via {via}{extra}: "{text}" → "{answer.strip()}"')


if __name__ == "__main__":
    sys.exit(main())
