"""Throughput of bridged word translation on a real vLLM server: chain vs two-step vs direct.

Starts vLLM on the CPU (Gemma 3 270M when `bridgex-index convert` has written its folder, else a tiny
random Llama built on the spot) with `bridgex-serve` in front, and sends the same words concurrently:

- direct:   `{S}:"w"→{T}:"` with three (S, T) demonstrations, passed through the proxy unchanged;
- chain:    `bridgex` mode chain, one upstream call writing the bridge word and the target word;
- two-step: `bridgex` mode two-step, the bridge word first, then the target word.

The words and demonstrations are CLDR month and weekday names (babel), aligned by concept. Reported per
mode: tokens/s (prompt + completion tokens of all upstream calls, from the usage the proxy adds up, per
second of wall time) and answers/s. Modes alternate over `--rounds` to share the machine's noise.

    .venv/bin/python benchmarks/bridged_throughput.py [--model DIR]

Target: chain ≥ 0.8× direct in tokens/s. Ends with one `RESULT` line.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from bridgex_index import store  # noqa: E402

LANGS = {"sw": ("Kiswahili", True), "en": ("English", False), "he": ("עברית", True), "de": ("Deutsch", False)}


def cldr_words() -> dict[str, dict[str, str]]:
    """concept → {language: word} for months and weekdays (format context: babel#1234)."""
    from babel import Locale

    out: dict[str, dict[str, str]] = {}
    for code in LANGS:
        loc = Locale.parse(code)
        for i, name in loc.months["format"]["wide"].items():
            out.setdefault(f"month-{i:02d}", {})[code] = name
        for i, name in loc.days["format"]["wide"].items():
            out.setdefault(f"weekday-{i}", {})[code] = name
    return out


def write_index(path: Path, words: dict[str, dict[str, str]]) -> None:
    """A small real index: the LANGS, every concept as a probe entry of every pair, English as the bridge."""
    codes = sorted(LANGS)
    entries = [
        (a, b, w[a], w[b], concept, concept.split("-")[0], "probe")
        for concept, w in words.items()
        for i, a in enumerate(codes)
        for b in codes[i + 1 :]
    ]
    pairs = [("sw", "he"), ("he", "sw"), ("sw", "de"), ("de", "sw")]
    store.write_index(
        path,
        {},
        {
            "languages": store.columns_of(
                [(c, name, name, low, 1, 1) for c, (name, low) in LANGS.items()],
                ("code", "prompt_name", "english_name", "low_resource", "n_tokens", "n_neurons"),
            ),
            "dictionary_entries": store.columns_of(
                entries, ("source", "target", "source_word", "target_word", "concept", "category", "split")
            ),
            "bridges": store.columns_of(
                [(s, t, "en", 1.0, 1.0, 1) for s, t in pairs],
                ("source", "target", "bridge", "score", "probability", "rank"),
            ),
        },
    )


def direct_prompt(index, source: str, target: str, word: str) -> str:
    from bridgex_serve.options import Options
    from bridgex_serve.plan import plan_request

    plan = plan_request(
        Options(task="word", source=source, target=target),
        word,
        index=index,
        low_resource=frozenset(),
        detect=lambda t: source,
        force=True,
    )
    plan = type(plan)(
        **{
            **plan.__dict__,
            "bridge": None,
            "mode": "direct",
            "demos": index.demonstrations((source, target), 3, exclude=word),
        }
    )
    from bridgex_serve.prompts import bridge_prompt

    return bridge_prompt(plan)


async def run_mode(session, url: str, model: str, jobs: list[dict], mode: str, concurrency: int) -> dict:
    sem = asyncio.Semaphore(concurrency)
    tokens = generated = calls = 0

    async def one(job: dict) -> None:
        nonlocal tokens, generated, calls
        if mode == "direct":
            body = {
                "model": model,
                "prompt": job["direct"],
                "max_tokens": 16,
                "stop": ['"', "\n"],
                "temperature": 0,
            }
        else:
            body = {
                "model": model,
                "prompt": job["word"],
                "temperature": 0,
                "bridgex": {"task": "word", "source": job["source"], "target": job["target"], "mode": mode},
            }
        async with sem, session.post(url + "/v1/completions", json=body) as r:
            data = await r.json()
            if r.status != 200:
                raise RuntimeError(f"{mode}: {r.status} {data}")
        tokens += data["usage"]["total_tokens"]
        generated += data["usage"]["completion_tokens"]
        calls += data.get("bridgex", {}).get("calls", 1)

    start = time.perf_counter()
    await asyncio.gather(*(one(j) for j in jobs))
    elapsed = time.perf_counter() - start
    return {
        "seconds": elapsed,
        "tokens": tokens,
        "generated": generated,
        "answers": len(jobs),
        "calls": calls,
    }


async def measure(url: str, model: str, jobs: list[dict], rounds: int, concurrency: int) -> dict:
    import aiohttp

    modes = ("direct", "chain", "two-step")
    totals = {m: {"seconds": 0.0, "tokens": 0, "generated": 0, "answers": 0, "calls": 0} for m in modes}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1800)) as session:
        for mode in totals:  # warm-up: compile paths, fill the prefix cache with the demonstrations
            await run_mode(session, url, model, jobs[:8], mode, concurrency)
        for _ in range(rounds):
            for mode in totals:
                r = await run_mode(session, url, model, jobs, mode, concurrency)
                for k in totals[mode]:
                    totals[mode][k] += r[k]
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", default=None, help="HF folder to serve (default: Gemma 3 270M if converted)"
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()

    from serve_support import gemma_dir

    from bridgex_serve.index import load_index
    from bridgex_serve.launch import VllmServer, free_port

    tmp = Path(tempfile.mkdtemp(prefix="bridgex-bench-"))
    words = cldr_words()
    write_index(tmp / "index.duckdb", words)
    index = load_index(tmp / "index.duckdb")
    jobs = []
    for concept_words in words.values():
        for target in ("he", "de"):
            w = concept_words["sw"]
            jobs.append(
                {"word": w, "source": "sw", "target": target, "direct": direct_prompt(index, "sw", target, w)}
            )

    model_dir = Path(args.model) if args.model else gemma_dir()
    if model_dir is not None:
        name, server_kw = "gemma-3-270m", dict(block_size=16, dtype="bfloat16", max_model_len=1024)
    else:
        from tinymodels import make_tiny_model

        model_dir = make_tiny_model(tmp / "tiny-llama")
        name, server_kw = "tiny", dict(block_size=32, dtype="float32", max_model_len=512)
    print(f"model: {model_dir} ({len(jobs)} words per mode and round, concurrency {args.concurrency})")
    port = free_port()
    with VllmServer(model_dir, name=name, log=tmp / "vllm.log", start_timeout=400, **server_kw) as vllm:
        proxy = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from bridgex_serve.cli import main; main()",
                "--index",
                str(tmp / "index.duckdb"),
                "--upstream",
                vllm.url,
                "--port",
                str(port),
            ],
            env=dict(os.environ, PYTHONPATH=str(REPO)),
        )
        try:
            import urllib.request

            for _ in range(200):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                    break
                except OSError:
                    time.sleep(0.1)
            totals = asyncio.run(
                measure(f"http://127.0.0.1:{port}", name, jobs, args.rounds, args.concurrency)
            )
        finally:
            proxy.terminate()
            proxy.wait(10)

    print(f"{'mode':>9} {'tokens/s':>9} {'generated/s':>12} {'answers/s':>10} {'calls/answer':>13}")
    rate = {}
    for mode, t in totals.items():
        s = t["seconds"]
        rate[mode] = (t["tokens"] / s, t["generated"] / s, t["answers"] / s)
        print(
            f"{mode:>9} {rate[mode][0]:>9.0f} {rate[mode][1]:>12.0f} {rate[mode][2]:>10.2f} "
            f"{t['calls'] / t['answers']:>13.2f}"
        )
    d = rate["direct"]
    print("tokens/s: prompt + completion tokens of all upstream calls per second; *_answers_* ratios")
    print("compare final answers per second, what a client sees (bridging writes more tokens per answer)")
    c, t2 = rate["chain"], rate["two-step"]
    print(
        f"RESULT chain_vs_direct={c[0] / d[0]:.3f} two_step_vs_direct={t2[0] / d[0]:.3f} "
        f"chain_generated_vs_direct={c[1] / d[1]:.3f} two_step_generated_vs_direct={t2[1] / d[1]:.3f} "
        f"chain_answers_vs_direct={c[2] / d[2]:.3f} two_step_answers_vs_direct={t2[2] / d[2]:.3f}"
    )


if __name__ == "__main__":
    main()
