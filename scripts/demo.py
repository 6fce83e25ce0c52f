"""The main job: build a bridge index for a real model over CLDR dictionaries, show the bridges it picks
for low-resource pairs, write the plots, then serve it: vLLM (CPU), `bridgex-index calibrate` (the route
policy learns from the calibration half of the shipped word and sentence sets which routes help this
model), `bridgex-index distill` (the English pivot's answers to calibration-half sentences become the
sentence pairs' demonstrations when they beat direct on others: one call instead of two), the BridgeX
proxy in front, and fixed examples from the evaluation half of the same sets through the openai client,
each answered directly (`route: direct`) and by the proxy's own route, printed with the route, where it
came from, the reference and whether each is right; it ends with routed-vs-direct figures on the
evaluation half (`bridgex-index eval --strategies direct,calibrated --words evaluation`, English too for
sentences) and the lines `routed: k/n right` and `direct: k/n right`.
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
# The pairs the demo calibrates and shows: words from the shipped word set (Django's one-word messages, no
# build uses them), sentences from the shipped sentence set.
WORD_PAIRS = "sw-fr,sw-es,ar-fr,he-de"
SENTENCE_PAIRS = "ar-fr,he-de"
# items a pair of the calibration half (the budget; settled pairs stop earlier) and of the evaluation half
# for the closing figures, per task: 40 words (the route policy's measured budget: 20 words a pair did not
# separate routes a few P@1 points apart), 20 sentences (their pairs are served distilled; distill checks
# its sets on 40 other calibration sentences)
LIMITS = {"word": 40, "translate": 20}
# each task's test set and pairs, as `calibrate` and `eval` take them
TASK_ARGS = (
    ("word", ("--test-dict-dir", "shipped", "--pairs", WORD_PAIRS)),
    ("translate", ("--task", "translate", "--pairs", SENTENCE_PAIRS)),
)
EXAMPLE_WORDS = 3  # fixed examples a word pair
EXAMPLE_SENTENCES = 2  # fixed examples a sentence pair
DISTILLED_K = 6  # distilled sentence demonstrations a pair (the measured configuration)


@dataclass(frozen=True)
class DemoModel:
    module: str  # index_builder.<module>.prepare(cache) gives the converted folder
    name: str  # the served model name and the index file's stem
    title: str
    langs: str
    max_pairs: int


MODELS = {
    # 7 languages x 8 probes per ordered pair: 336 probes (the 1,120-probe Qwen build took 1.36 s a probe).
    "qwen": DemoModel(
        module="qwen",
        name="qwen2.5-coder-1.5b-instruct",
        title="Qwen2.5-Coder-1.5B-Instruct (Apache-2.0)",
        langs="en,fr,es,de,sw,ar,he",
        max_pairs=8,
    ),
    "gemma": DemoModel(
        module="gemma",
        name="gemma-3-270m",
        title="Gemma 3 270M (Gemma Terms of Use)",
        langs="en,de,fr,es,it,pt,id,ar,he,ja,zh,sw,fi,hu",
        max_pairs=40,
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
        serve_demo(model, demo, index, args.out, langs.split(","))
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


def fixed_examples(langs: list[str]) -> list[tuple[str, str, str, str, tuple[str, ...]]]:
    """The fixed examples, by a rule (never by any answer): per pair of WORD_PAIRS, the first EXAMPLE_WORDS
    source words of the shipped word set's evaluation half in the evaluation's stable order whose source or
    gold is not a language's name in CLDR; per pair of SENTENCE_PAIRS, the first EXAMPLE_SENTENCES sentences
    of the sentence set's evaluation half. Each is (task, source, target, text, references)."""
    from index_builder.evaluation.decision import split_words
    from index_builder.evaluation.held_out import stable_order
    from index_builder.evaluation.testsets import shipped_sentences, shipped_words
    from index_builder.indexing.languages import language_names

    out: list[tuple[str, str, str, str, tuple[str, ...]]] = []
    words = shipped_words(langs, WORD_PAIRS.split(","))
    for (s, t), d in words.dictionaries.items():
        golds: dict[str, list[str]] = {}
        for e in d.entries:
            golds.setdefault(e.source_word, []).append(e.target_word)
        names = language_names(s) | language_names(t)
        evaluation = set(split_words(f"{s}:{w}" for w in golds)[1])
        order = [w for w in stable_order(s, t, list(golds)) if f"{s}:{w}" in evaluation]
        plain = [
            w for w in order if w.casefold() not in names and not names & {g.casefold() for g in golds[w]}
        ]
        out += [("word", s, t, w, tuple(golds[w])) for w in plain[:EXAMPLE_WORDS]]
    sentences = shipped_sentences(langs)
    for pair in SENTENCE_PAIRS.split(","):
        s, t = pair.split("-")
        items = {p.source: p.target for p in sentences.pair(s, t)}
        evaluation = set(split_words(f"{s}:{x}" for x in items)[1])
        order = [x for x in stable_order(s, t, list(items)) if f"{s}:{x}" in evaluation]
        out += [("translate", s, t, x, (items[x],)) for x in order[:EXAMPLE_SENTENCES]]
    return out


def serve_demo(model: Path, demo: DemoModel, index: Path, out: Path, langs: list[str]) -> None:
    """Start vLLM, calibrate the routes (words and sentences), start the proxy, ask each fixed example
    directly and by the proxy's route, print the figures on the evaluation half, stop everything."""
    from openai import OpenAI

    from bridgex_serve.launch import VllmServer
    from index_builder.evaluation.scoring import is_hit
    from index_builder.evaluation.sentence_scoring import CHRF_PP, metric

    print(f"== starting vLLM (CPU) with {demo.title} (about a minute)", flush=True)
    with VllmServer(model, name=demo.name, log=out / "vllm.log", start_timeout=900) as vllm:
        endpoint = vllm.url + "/v1"
        common = ("--index", str(index), "--endpoint", endpoint, "--model", demo.name, "--quiet")
        print(
            "== calibrating the routes: words (shipped word set) and sentences (shipped sentence set)",
            flush=True,
        )
        for task, extra in TASK_ARGS:
            budget = ("--limit", str(LIMITS[task]), "--top", "1")
            print(bridgex_index("calibrate", *common, *extra, *budget, capture=True), end="")
        print(
            f"== distilling the English pivot into {DISTILLED_K} sentence demonstrations a pair "
            "(calibration half, checked against direct; the proxy then answers those pairs' sentences in "
            "one call)",
            flush=True,
        )
        distill = ("--pairs", SENTENCE_PAIRS, "--k", str(DISTILLED_K))
        print(bridgex_index("distill", *common, *distill, capture=True), end="")
        with Proxy(index, vllm.url, out / "proxy.log") as proxy:
            print(f"== proxy ready at {proxy.url}: each example directly (route: direct) and by its route")
            client = OpenAI(base_url=proxy.url + "/v1", api_key="demo", max_retries=0, timeout=600)
            right = {"routed": 0, "direct": 0}
            examples = fixed_examples(langs)
            for task, source, target, text, refs in examples:
                answers = {}
                for label, route in (("direct", "direct"), ("routed", "auto")):
                    answer, meta = ask(client, proxy.url, demo.name, task, source, target, text, route)
                    if task == "word":
                        ok = is_hit(answer, refs)
                        right[label] += ok
                        shown = _shown(answer, ok)
                    else:
                        chrf = metric(CHRF_PP, target).sentence_score(answer, [refs[0]]).score
                        shown = f'"{answer}" (chrF++ {chrf:.1f})'
                    answers[label] = (shown, meta)
                print(f'  {task} {source}→{target} "{text}" (reference "{refs[0]}")')
                print(f"    direct: {answers['direct'][0]}")
                print(f"    routed: {answers['routed'][0]} via {_route(answers['routed'][1])}")
            print("== routed vs direct on the evaluation half (bridgex-index eval)", flush=True)
            for task, extra in TASK_ARGS:
                report = out / f"{task}-{demo.name}"
                # sentences: the English pivot beside the served (distilled) route, on the other half
                strategies = "direct,english,calibrated" if task == "translate" else "direct,calibrated"
                judged = ("--strategies", strategies, "--words", "evaluation")
                bridgex_index(
                    "eval", *common, *extra, *judged, "--limit", str(LIMITS[task]), "--out", str(report)
                )
                print(_summary(report / "report.md"))
        n = sum(1 for e in examples if e[0] == "word")
        print(f"routed: {right['routed']}/{n} right")
        print(f"direct: {right['direct']}/{n} right")
    print("== stopped vLLM and the proxy")


def ask(client, url: str, model: str, task: str, source: str, target: str, text: str, route: str):
    """One example through the proxy: a word through the openai client (chat completions with `bridgex`);
    a sentence through `/v1/translate`, which always asks for a translation (a chat request whose route is
    direct is passed through as the client wrote it: the bare sentence, no instruction). Returns (answer,
    the `bridgex` metadata)."""
    options = {"task": task, "source": source, "target": target, "route": route}
    if task == "word":
        r = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": text}], extra_body={"bridgex": options},
            temperature=0,
        )  # fmt: skip
        return (r.choices[0].message.content or "").strip(), r.model_extra.get("bridgex") or {}
    import httpx

    body = {"q": [text], "model": model, **options}
    item = httpx.post(url + "/v1/translate", json=body, headers={"authorization": "Bearer demo"},
                      timeout=600).raise_for_status().json()["translations"][0]  # fmt: skip
    return item["text"].strip(), item


def _shown(answer: str, ok: bool) -> str:
    return f'"{answer}" {"right" if ok else "wrong"}'


def _route(meta: dict) -> str:
    distilled = meta.get("distilled")
    if distilled:  # one direct call with the pair's distilled demonstrations
        made = f"{distilled['examples']} examples by {distilled['made_by']}"
        return f"distilled ({made}; {meta.get('decision_source') or '-'}), one call"
    via = meta.get("bridge") or "direct"
    source = meta.get("decision_source") or "-"
    policy = meta.get("policy") or {}
    gain = f", expected gain {policy['expected_gain']:+.1f}" if "expected_gain" in policy else ""
    rendering = meta.get("bridge_text")
    extra = f" ({source}{gain})"
    extra += f' (bridge rendering "{rendering}")' if rendering else ""
    if meta.get("fallback") == "copy":  # a copied bridged answer, replaced by the direct route's
        extra += f", copy ({meta.get('fallback_reason')}): answered directly"
    return via + extra


def _summary(report: Path) -> str:
    """The score table of an eval report (per pair and strategy) and its summary lines: the P@1 table of a
    word report, the chrF++ table of a sentence report."""
    lines = report.read_text().splitlines()
    heading = next((i for i, line in enumerate(lines) if line.startswith("## P@1")), None)
    if heading is None:  # a sentence report: its table is the code block that starts with "pair"
        start = next((i for i, line in enumerate(lines) if line.startswith("pair ")), None)
        if start is None:
            return f"(no table in {report})"
        end = next((i for i in range(start, len(lines)) if lines[i].startswith("```")), len(lines))
        return "\n".join(lines[start:end])
    start = next((i for i in range(heading, len(lines)) if lines[i].startswith("|")), None)
    if start is None:
        return f"(no table in {report})"
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    summary = [line for line in lines[end:] if line.startswith("- ")][:2]
    return "\n".join(lines[start:end] + summary)


if __name__ == "__main__":
    sys.exit(main())
