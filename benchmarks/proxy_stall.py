"""Does one large bridged request stall the proxy? p99 `/health` latency while max-size bridged requests
run, side by side with the idle p99.

A stub upstream (the canned-completion stub of `proxy_overhead.py`) runs in one process, `bridgex-serve` in
another: this process first sends `--probes` `/health` requests (one every 5 ms) to the idle proxy, then
the same probes while `--workers` clients of a separate load process send bridged translate requests whose
body is just under the proxy's limit for bridged bodies (`--body-bytes`, default just under the 1 MiB
`BRIDGEX_MAX_BRIDGED_BYTES`; a larger bridged body is a 413 before any work).
Everything shares this machine's cores, the load generators included.

    .venv/bin/python benchmarks/proxy_stall.py [--body-bytes 1047552]

Ends with one `RESULT` line (milliseconds; `big_ok` = large requests answered 200).
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
sys.path.insert(0, str(Path(__file__).resolve().parent))

from proxy_overhead import STUB, pct, wait_ready, write_index  # noqa: E402

from bridgex_serve.launch import free_port  # noqa: E402

WORDS = ["habari", "ya", "asubuhi", "rafiki", "yangu", "ninapenda", "kusoma", "vitabu", "vya", "historia"]


def big_body(size: int) -> bytes:
    """A bridged sw→he translate chat request of `size` bytes (±100)."""
    import orjson

    head = orjson.dumps(
        {
            "model": "m",
            "max_tokens": 16,
            "messages": [{"role": "user", "content": ""}],
            "bridgex": {"task": "translate", "source": "sw", "target": "he"},
        }
    )
    words, n = [], len(head)
    i = 0
    while n < size - 100:
        w = WORDS[i % len(WORDS)]
        words.append(w)
        n += len(w) + 1
        i += 1
    body = {
        "model": "m",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": " ".join(words)}],
        "bridgex": {"task": "translate", "source": "sw", "target": "he"},
    }
    return orjson.dumps(body)


async def probe(session, url: str, n: int, gap: float) -> list[float]:
    out: list[float] = []
    for _ in range(n):
        t = time.perf_counter()
        async with session.get(url) as r:
            await r.read()
            if r.status != 200:
                raise RuntimeError(f"/health answered {r.status}")
        out.append(time.perf_counter() - t)
        await asyncio.sleep(gap)
    return out


LOAD = r"""
import asyncio, sys, time
import aiohttp

async def main(url, path, workers, seconds):
    body = open(path, "rb").read()
    statuses, times = [], []
    end = time.monotonic() + seconds
    async with aiohttp.ClientSession() as session:
        async def big():
            while time.monotonic() < end:
                t = time.perf_counter()
                async with session.post(url, data=body, headers={"content-type": "application/json"}) as r:
                    await r.read()
                    statuses.append(r.status)
                times.append(time.perf_counter() - t)
        await asyncio.gather(*(big() for _ in range(workers)))
    ok = sum(s == 200 for s in statuses)
    times.sort()
    print(len(statuses), ok, times[len(times) // 2] if times else 0, times[-1] if times else 0)

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
"""


async def measure(base: str, probes: int) -> tuple[list[float], list[float]]:
    """Idle probes, then the same probes while the load process (started by the caller) runs."""
    import aiohttp

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        await probe(session, base + "/health", 50, 0.0)  # warm up
        return await probe(session, base + "/health", probes, 0.005), []


async def loaded_probes(base: str, probes: int) -> list[float]:
    import aiohttp

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        return await probe(session, base + "/health", probes, 0.005)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--body-bytes", type=int, default=1024 * 1024 - 1024, help="large request size")
    parser.add_argument("--probes", type=int, default=400, help="/health requests per phase")
    parser.add_argument("--workers", type=int, default=2, help="clients sending large requests")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bridgex-stall-"))
    (tmp / "stub_upstream.py").write_text(STUB)
    write_index(tmp / "index.duckdb")
    stub_port, proxy_port = free_port(), free_port()
    py = sys.executable
    stub = subprocess.Popen(
        [py, "-m", "uvicorn", "stub_upstream:app", "--port", str(stub_port), "--log-level", "warning"],
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
    body = big_body(args.body_bytes)
    (tmp / "body.json").write_bytes(body)
    base = f"http://127.0.0.1:{proxy_port}"
    try:
        wait_ready(f"http://127.0.0.1:{stub_port}/", stub)
        wait_ready(f"{base}/health", proxy)
        idle, _ = asyncio.run(measure(base, args.probes))
        seconds = args.probes * 0.01 + 2  # the load outlasts the probes
        load = subprocess.Popen(
            [
                py,
                "-c",
                LOAD,
                base + "/v1/chat/completions",
                str(tmp / "body.json"),
                str(args.workers),
                str(seconds),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(1.0)  # the first large bodies are in flight
        loaded = asyncio.run(loaded_probes(base, args.probes))
        sent, ok, big50, bigmax = load.communicate(timeout=seconds + 600)[0].split()
    finally:
        for p in (proxy, stub):
            p.terminate()
            p.wait(10)

    sent, ok = int(sent), int(ok)
    print(f"large bridged requests: {sent} sent, {ok} answered 200, body {len(body)} bytes")
    print(f"large request latency: p50 {float(big50) * 1000:.0f} ms, max {float(bigmax) * 1000:.0f} ms")
    print(
        f"/health idle:   p50 {pct(idle, 0.5):.2f} ms  p99 {pct(idle, 0.99):.2f} ms  "
        f"max {max(idle) * 1000:.2f} ms"
    )
    print(
        f"/health loaded: p50 {pct(loaded, 0.5):.2f} ms  p99 {pct(loaded, 0.99):.2f} ms  "
        f"max {max(loaded) * 1000:.2f} ms"
    )
    print(
        f"RESULT idle_p99_ms={pct(idle, 0.99):.2f} loaded_p99_ms={pct(loaded, 0.99):.2f} "
        f"loaded_max_ms={max(loaded) * 1000:.2f} body_bytes={len(body)} big_sent={sent} big_ok={ok}"
    )


if __name__ == "__main__":
    main()
