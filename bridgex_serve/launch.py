"""Start the servers BridgeX runs beside: vLLM's OpenAI server on the CPU or GPU, as a child process.

Used by the demo, the benchmarks and the end-to-end tests; torch-free (vLLM runs in its own process).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from .engines import engine_settings

REPO = Path(__file__).resolve().parent.parent
MIDDLEWARE = "bridgex_serve.vllm_middleware.BridgeXMiddleware"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class VllmServer:
    """`python -m vllm.entrypoints.openai.api_server` in its own process group, BridgeX middleware optional.

    Block size, dtype and context length default to the model family's entry in `engines` (never one
    constant: Qwen2.5 on CPU fails with 16-token blocks, Gemma 3 wants them); explicit arguments win.
    `stats`: keep vLLM's engine statistics on (its `/metrics` counters, e.g. prefix-cache hits, and a
    periodic log line); off by default.
    """

    def __init__(
        self,
        model: Path,
        *,
        name: str,
        index: Path | None = None,
        block_size: int | None = None,
        dtype: str | None = None,
        max_model_len: int | None = None,
        log: Path,
        start_timeout: float = 300,
        stats: bool = False,
    ):
        engine = engine_settings(model, block_size=block_size, dtype=dtype, max_model_len=max_model_len)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.name = name
        self.cmd = [
            sys.executable,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(model),
            "--served-model-name",
            name,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--max-model-len",
            str(engine.max_model_len),
            "--enforce-eager",
            "--block-size",
            str(engine.block_size),
            "--dtype",
            engine.dtype,
            "--max-num-seqs",
            "64",
        ]
        if not stats:
            self.cmd.append("--disable-log-stats")
        if index is not None:
            self.cmd += ["--middleware", MIDDLEWARE]
        self.env = dict(
            os.environ,
            VLLM_TARGET_DEVICE="cpu",
            VLLM_CPU_KVCACHE_SPACE="1",
            HF_HUB_OFFLINE="1",
            VLLM_CPU_OMP_THREADS_BIND="0-1",
            PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        )
        if index is not None:
            self.env["BRIDGEX_INDEX"] = str(index)
        self.log = log
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> VllmServer:
        self._log_file = open(self.log, "wb")
        self.proc = subprocess.Popen(
            self.cmd, env=self.env, stdout=self._log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.time() + self.start_timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                tail = self.log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"vLLM exited with {self.proc.returncode} during start-up:\n{tail}")
            if _healthy(self.url + "/health"):
                return self
            time.sleep(1)
        self.__exit__()
        raise RuntimeError(f"vLLM did not become healthy in {self.start_timeout:.0f} s; see {self.log}")

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._log_file.close()


def _healthy(url: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False
