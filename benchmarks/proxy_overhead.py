"""Latency the proxy adds on the passthrough path, and its throughput.

A fast stub upstream (raw ASGI under uvicorn+uvloop+httptools, a canned chat completion) runs in one
process, `bridgex-serve` in front of it in another, and this process drives both with aiohttp: the same
requests straight to the stub and through the proxy, alternating, at several concurrency levels, a bounded
number of requests per level. Added latency = proxy percentile − direct percentile at concurrency 1;
requests/s = the best proxy throughput over the levels. Everything shares this machine's cores, the load
generator included, so the figures are a floor for the proxy.

    .venv/bin/python benchmarks/proxy_overhead.py [--requests 3000]

Targets: p50 ≤ 1 ms and p99 ≤ 5 ms added, ≥ 1,500 requests/s. Ends with one `RESULT` line.
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

from bridgex_index import store  # noqa: E402
from bridgex_serve.launch import free_port  # noqa: E402

STUB = r"""
BODY = (b'{"id":"chatcmpl-stub","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,'
        b'"message":{"role":"assistant","content":"Hello from the stub upstream."},"finish_reason":"stop"}],'
        b'"usage":{"prompt_tokens":12,"completion_tokens":7,"total_tokens":19}}')
HEAD = {"type": "http.response.start", "status": 200,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]}
MSG = {"type": "http.response.body", "body": BODY}

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send(HEAD)
    await send(MSG)
"""
REQUEST = (
    b'{"model":"m","messages":[{"role":"system","content":"You are helpful."},'
    b'{"role":"user","content":"Say hello in one short sentence."}],"max_tokens":16,"temperature":0}'
)


def write_index(path: Path) -> None:
    """A small real index: sw and he are low-resource, bridged through English."""
    store.write_index(
        path,
        {},
        {
            "languages": store.columns_of(
                [
                    ("en", "English", "English", False, 1, 1),
                    ("sw", "Kiswahili", "Swahili", True, 1, 1),
                    ("he", "עברית", "Hebrew", True, 1, 1),
                ],
                ("code", "prompt_name", "english_name", "low_resource", "n_tokens", "n_neurons"),
            ),
            "bridges": store.columns_of(
                [("sw", "he", "en", 1.0, 1.0, 1), ("he", "sw", "en", 1.0, 1.0, 1)],
                ("source", "target", "bridge", "score", "probability", "rank"),
            ),
        },
    )


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    import urllib.request

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


async def run_level(session, url: str, concurrency: int, n: int) -> tuple[list[float], float]:
    latencies: list[float] = []
    remaining = n

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            t = time.perf_counter()
            async with session.post(url, data=REQUEST, headers={"content-type": "application/json"}) as r:
                await r.read()
                if r.status != 200:
                    raise RuntimeError(f"{url} answered {r.status}")
            latencies.append(time.perf_counter() - t)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, n / (time.perf_counter() - start)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] * 1000


async def measure(direct: str, proxied: str, levels: list[int], n: int, rounds: int) -> dict:
    import aiohttp

    results: dict = {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        for url in (direct, proxied):  # warm up connections and code paths
            await run_level(session, url, 16, 500)
        for c in levels:
            lat = {"direct": [], "proxy": []}
            rps = {"direct": [], "proxy": []}
            for _ in range(rounds):  # alternate to share the machine's noise
                for name, url in (("direct", direct), ("proxy", proxied)):
                    values, r = await run_level(session, url, c, n // rounds)
                    lat[name] += values
                    rps[name].append(r)
            results[c] = {k: (pct(lat[k], 0.5), pct(lat[k], 0.99), sum(rps[k]) / len(rps[k])) for k in lat}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="requests per level and target")
    parser.add_argument("--levels", default="1,8,32,64", help="concurrency levels")
    parser.add_argument("--rounds", type=int, default=3, help="alternations of direct/proxy per level")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]

    import uvloop

    tmp = Path(tempfile.mkdtemp(prefix="bridgex-bench-"))
    (tmp / "stub_upstream.py").write_text(STUB)
    write_index(tmp / "index.duckdb")
    stub_port, proxy_port = free_port(), free_port()
    py = sys.executable
    stub = subprocess.Popen(
        [
            py,
            "-m",
            "uvicorn",
            "stub_upstream:app",
            "--port",
            str(stub_port),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=tmp,
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proxy = subprocess.Popen(
        [
            py,
            "-c",
            "from bridgex_serve.cli import main; main()",
            "--index",
            str(tmp / "index.duckdb"),
            "--upstream",
            f"http://127.0.0.1:{stub_port}",
            "--port",
            str(proxy_port),
        ],
        env=env,
    )
    try:
        wait_ready(f"http://127.0.0.1:{stub_port}/", stub)
        wait_ready(f"http://127.0.0.1:{proxy_port}/health", proxy)
        direct = f"http://127.0.0.1:{stub_port}/v1/chat/completions"
        proxied = f"http://127.0.0.1:{proxy_port}/v1/chat/completions"
        results = uvloop.run(measure(direct, proxied, levels, args.requests, args.rounds))
    finally:
        for p in (proxy, stub):
            p.terminate()
            p.wait(10)

    print(
        f"{'conc':>5} {'direct p50':>11} {'p99':>7} {'rps':>7} | {'proxy p50':>10} {'p99':>7} {'rps':>7} "
        f"| {'added p50':>9} {'p99':>7}"
    )
    for c, r in results.items():
        (dp50, dp99, drps), (pp50, pp99, prps) = r["direct"], r["proxy"]
        print(
            f"{c:>5} {dp50:>9.3f}ms {dp99:>5.2f}ms {drps:>7.0f} | {pp50:>8.3f}ms {pp99:>5.2f}ms {prps:>7.0f} "
            f"| {pp50 - dp50:>7.3f}ms {pp99 - dp99:>5.2f}ms"
        )
    base = results[levels[0]]
    added50 = base["proxy"][0] - base["direct"][0]
    added99 = base["proxy"][1] - base["direct"][1]
    rps = max(r["proxy"][2] for r in results.values())
    print(f"(added latency at concurrency {levels[0]}; rps = best proxy throughput over the levels)")
    print(f"RESULT p50_added_ms={added50:.3f} p99_added_ms={added99:.3f} rps={rps:.0f}")


if __name__ == "__main__":
    main()
