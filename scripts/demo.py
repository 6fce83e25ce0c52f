"""The main job: build a bridge index for a real model over CLDR dictionaries, show the bridges it picks
for low-resource pairs, write the plots, then serve it: vLLM (CPU), the BridgeX proxy in front, and fixed word
examples through the openai client, each answered directly and by the proxy's route, with the reference and
whether each is right; it ends with word P@1 per route on held-out words and sentence chrF++ per route on the
shipped parallel set (`bridgex-index eval`).
Everything it starts is stopped at the end. Run through `make demo` (`--no-serve` stops after the index).

Models: Qwen2.5-Coder-1.5B-Instruct (default; Apache-2.0) or Gemma 3 270M (`--model gemma`; Gemma Terms of
Use). Outputs go to `artifacts/` (git-ignored). The index is rebuilt only when its build parameters change
(`--rebuild` forces it), so a second run takes much less time.
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHOW_PAIRS = [("sw", "fr"), ("sw", "de"), ("ar", "es"), ("he", "de"), ("ar", "fr")]
# The fixed examples, chosen by a rule before any run: the first two held-out CLDR words (never probes of
# the index) of each pair in the evaluation's stable order (`index_builder.evaluation.stable_order`), with
# their dictionary translation as the reference.
EXAMPLES = [
    ("Kiuyghur", "sw", "fr", "ouïghour"),
    ("Uturuki", "sw", "fr", "Turquie"),
    ("Kindonga", "sw", "es", "ndonga"),
    ("Ureno", "sw", "es", "Portugal"),
    ("Kikorasia", "sw", "de", "Kroatisch"),
    ("Kimacedonia", "sw", "de", "Mazedonisch"),
    ("مابا", "ar", "fr", "maba"),
    ("اللاهندا", "ar", "fr", "lahnda"),
    ("سعرة", "ar", "es", "kilocaloría"),
    ("أكتوبر", "ar", "es", "octubre"),
    ("יווני", "he", "de", "Griechisch"),
    ("מרואיטית", "he", "de", "Meroitisch"),
]
EVAL_PAIRS = "sw-fr,sw-es,ar-fr,he-de"
# sentence chrF++ on the shipped parallel set, for the pairs where bridges moved it in docs/results
SENTENCE_PAIRS = "ar-fr,he-de"
SENTENCE_LIMIT = 20


@dataclass(frozen=True)
class DemoModel:
    module: str  # index_builder.<module>.prepare(cache) gives the converted folder
    name: str  # the served model name and the index file's stem
    title: str
    langs: str
    max_pairs: int
    eval_limit: int  # held-out words per pair for the closing figures


MODELS = {
    # 7 languages x 8 probes per ordered pair: 336 probes (the 1,120-probe Qwen build took 1.36 s a probe).
    "qwen": DemoModel(
        module="qwen",
        name="qwen2.5-coder-1.5b-instruct",
        title="Qwen2.5-Coder-1.5B-Instruct (Apache-2.0)",
        langs="en,fr,es,de,sw,ar,he",
        max_pairs=8,
        eval_limit=20,
    ),
    "gemma": DemoModel(
        module="gemma",
        name="gemma-3-270m",
        title="Gemma 3 270M (Gemma Terms of Use)",
        langs="en,de,fr,es,it,pt,id,ar,he,ja,zh,sw,fi,hu",
        max_pairs=40,
        eval_limit=20,
    ),
}


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
    parser.add_argument("--model", choices=sorted(MODELS), default="qwen")
    parser.add_argument("--langs", help="comma-separated languages (default: the model's demo set)")
    parser.add_argument("--max-pairs", type=int, help="probes per language pair (default: the model's)")
    parser.add_argument("--out", type=Path, default=REPO / "artifacts")
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--no-serve", action="store_true", help="stop after the index and the plots")
    args = parser.parse_args()
    demo = MODELS[args.model]
    langs = args.langs or demo.langs
    max_pairs = args.max_pairs or demo.max_pairs

    sys.path.insert(0, str(REPO))
    prepare = importlib.import_module(f"index_builder.indexing.{demo.module}").prepare
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"== {demo.title}: assembling and converting once", flush=True)
    model = prepare(REPO / ".cache" / "bridgex")
    index = args.out / f"{demo.name}.duckdb"
    wanted = {"langs": langs.split(","), "max_pairs": max_pairs, "model": str(model), "selector": "specific"}
    if args.rebuild or not index_is_current(index, wanted):
        print(f"== building the bridge index for {langs} (a few minutes on 2 CPU cores)", flush=True)
        bridgex_index(
            "build", "--model", str(model), "--langs", langs, "--dictionaries", "cldr",
            "--max-pairs", str(max_pairs), "--out", str(index),
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
        examples = [e for e in EXAMPLES if {e[1], e[2]} <= set(langs.split(","))]
        serve_demo(model, demo, index, args.out, examples)
    return 0


class Proxy:
    """`bridgex-serve` in front of `upstream` as a child process (extra CLI flags in `flags`)."""

    def __init__(self, index: Path, upstream: str, log: Path, flags: tuple[str, ...] = ()):
        from bridgex_serve.launch import free_port

        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.cmd = [str(REPO / ".venv" / "bin" / "bridgex-serve"), "--index", str(index),
                    "--upstream", upstream, "--port", str(port), *flags]  # fmt: skip
        self.log = log

    def __enter__(self) -> Proxy:
        import urllib.request

        self._log = open(self.log, "wb")  # closed in __exit__
        self.proc = subprocess.Popen(self.cmd, stdout=self._log, stderr=subprocess.STDOUT)
        for _ in range(240):
            try:
                with urllib.request.urlopen(self.url + "/ready", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.5)
        self.__exit__()
        raise RuntimeError(f"the proxy did not become ready; see {self.log}")

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        self.proc.wait(20)
        self._log.close()


def serve_demo(model: Path, demo: DemoModel, index: Path, out: Path, examples: list[tuple]) -> None:
    """Start vLLM and two proxies (routed; direct for every pair), ask each fixed example both ways,
    print the held-out figures, stop everything."""
    from openai import OpenAI

    from bridgex_serve.launch import VllmServer
    from index_builder.evaluation.scoring import is_hit

    print(f"== starting vLLM (CPU) with {demo.title} (about a minute)", flush=True)
    with (
        VllmServer(model, name=demo.name, log=out / "vllm.log", start_timeout=900) as vllm,
        Proxy(index, vllm.url, out / "proxy.log") as routed,
        Proxy(index, vllm.url, out / "proxy-direct.log", ("--uncalibrated", "direct")) as direct,
    ):
        print(f"== proxies ready: routed {routed.url}, direct {direct.url}, in front of {vllm.url}")
        right = {"routed": 0, "direct": 0}
        for word, source, target, reference in examples:
            answers = {}
            for label, proxy in (("direct", direct), ("routed", routed)):
                client = OpenAI(base_url=proxy.url + "/v1", api_key="demo", max_retries=0, timeout=300)
                r = client.chat.completions.create(
                    model=demo.name,
                    messages=[{"role": "user", "content": word}],
                    extra_body={"bridgex": {"task": "word", "source": source, "target": target}},
                )
                answer = (r.choices[0].message.content or "").strip()
                ok = is_hit(answer, [reference])
                right[label] += ok
                answers[label] = (answer, ok, r.model_extra.get("bridgex") or {})
            print(f'  {source}→{target} "{word}" (reference "{reference}")')
            print(f"    direct: {_shown(*answers['direct'][:2])}")
            print(f"    routed: {_shown(*answers['routed'][:2])} via {_route(answers['routed'][2])}")
        print("== measured on held-out words (bridgex-index eval: word P@1 per route)", flush=True)
        report = out / f"bli-{demo.name}"
        bridgex_index(
            "eval", "--index", str(index), "--endpoint", vllm.url + "/v1", "--model", demo.name,
            "--pairs", EVAL_PAIRS, "--dictionaries", "cldr", "--strategies", "direct,english,bridgex",
            "--limit", str(demo.eval_limit), "--out", str(report), "--quiet",
        )  # fmt: skip
        print(_summary(report / "report.md"))
        print("== measured on shipped sentences (bridgex-index eval --task translate: chrF++)", flush=True)
        bridgex_index(
            "eval", "--index", str(index), "--endpoint", vllm.url + "/v1", "--model", demo.name,
            "--task", "translate", "--pairs", SENTENCE_PAIRS, "--strategies", "direct,english,bridgex",
            "--limit", str(SENTENCE_LIMIT), "--out", str(out / f"sentences-{demo.name}"), "--quiet",
        )  # fmt: skip
        n = len(examples)
        print(f"routed: {right['routed']}/{n} right")
        print(f"direct: {right['direct']}/{n} right")
    print("== stopped vLLM and the proxies")


def _shown(answer: str, ok: bool) -> str:
    return f'"{answer}" {"right" if ok else "wrong"}'


def _route(meta: dict) -> str:
    via = meta.get("bridge") or "direct"
    rendering = meta.get("bridge_text")
    extra = f' (bridge rendering "{rendering}")' if rendering else ""
    if meta.get("fallback") == "copy":  # a copied bridged answer, replaced by the direct route's
        extra += f", copy ({meta.get('fallback_reason')}): answered directly"
    return via + extra


def _summary(report: Path) -> str:
    """The P@1 table of the eval report (per pair and strategy) and its summary lines."""
    lines = report.read_text().splitlines()
    heading = next((i for i, line in enumerate(lines) if line.startswith("## P@1")), 0)
    start = next((i for i in range(heading, len(lines)) if lines[i].startswith("|")), None)
    if start is None:
        return f"(no table in {report})"
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    summary = [line for line in lines[end:] if line.startswith("- ")][:2]
    return "\n".join(lines[start:end] + summary)


if __name__ == "__main__":
    sys.exit(main())
