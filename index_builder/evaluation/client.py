"""Evaluation's one way to get answers: the HTTP API of a real `bridgex-serve`, never a copy of its loop.

`bridgex-index eval` and `calibrate` take any OpenAI-compatible `--endpoint`. When it is a BridgeX server
already (the proxy, or vLLM with the middleware: it answers `GET /v1/languages`), test words go to its
`/v1/translate`; otherwise a `bridgex-serve --index IDX --upstream ENDPOINT` child process is started
on a free loopback port (`python -m bridgex_serve`, never an import: the builder does not import the
server), awaited on `/ready` and stopped at the end. Either way the answer is the one users get:
prompts, routing, demonstrations and copy fallback included.

Every word's answer is cached in the index file (`eval_answers`), keyed by the canonical one-word
`/v1/translate` request + the model + the index's identity, and words go out in `/v1/translate` batches of
`BATCH` (the server merges them into upstream batches), so a re-run makes no call and a run is no slower
than one request per word.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bridgex_index.results import ResultStore, append_answers

BATCH = 32  # words per /v1/translate request: one upstream batch of the server's
FLUSH_EVERY = 64  # answers buffered before they are written to the cache table
START_TIMEOUT = 120.0  # seconds for a child bridgex-serve to load the index and answer /health


class EvaluationError(ValueError):
    """Input that cannot be evaluated (the message is one line meant for the user)."""


class EndpointError(EvaluationError):
    """The endpoint could not be reached or refused a request; answers received so far are cached.
    `timed_out`: the last attempt ran out of `--timeout` (on a slow endpoint mostly queueing)."""

    def __init__(self, message: str, timed_out: bool = False):
        super().__init__(message)
        self.timed_out = timed_out


def base_url(endpoint: str) -> str:
    """The server root of an OpenAI-compatible endpoint (`http://h:8000/v1/` → `http://h:8000`)."""
    url = endpoint.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise EvaluationError(f"--endpoint must be an http(s) URL, got {endpoint!r}")
    return url[:-3] if url.endswith("/v1") else url


# ------------------------------------------------------------------------------------------ the server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def served_prompt_style(endpoint: str, api_key: str | None) -> dict[str, str] | None:
    """task → prompt style of the BridgeX server at `endpoint` (`completion` for what it does not say), or
    None when the endpoint is not a BridgeX server."""
    import httpx

    try:
        response = httpx.get(f"{base_url(endpoint)}/v1/languages", headers=_headers(api_key), timeout=10.0)
    except httpx.HTTPError as err:
        raise EndpointError(f"cannot reach {endpoint}: {_reason(err)}") from None
    if response.status_code != 200:
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    if not (isinstance(body, dict) and "languages" in body and "pairs" in body):
        return None
    style = body.get("prompt_style")
    if isinstance(style, str):
        return {"word": style, "translate": style}
    styles = style if isinstance(style, dict) else {}
    return {task: str(styles.get(task, "completion")) for task in ("word", "translate")}


def started_once(
    stack: contextlib.ExitStack, start: Callable[[], contextlib.AbstractContextManager[str]]
) -> Callable[[], str]:
    """A function giving a server's URL, the server started (and entered into `stack`) on the first call
    only: nothing starts while every answer comes from the cache."""
    url: list[str] = []

    def server() -> str:
        if not url:
            url.append(stack.enter_context(start()))
        return url[0]

    return server


@contextlib.contextmanager
def bridgex_server(
    endpoint: str,
    index: Path,
    api_key: str | None,
    concurrency: int,
    say: Callable[[str], None],
    prompt_style: str = "auto",
    child: bool = False,
) -> Iterator[str]:
    """The root URL of a BridgeX server answering for `endpoint` with `index`: the endpoint itself when it
    is one (unless `child`), else a child `bridgex-serve --prompt-style prompt_style` in front of it
    (stopped on exit; in front of a BridgeX server its plain completions pass through to the model)."""
    url = base_url(endpoint)
    served = None if child else served_prompt_style(endpoint, api_key)
    if served is not None:
        shown = ", ".join(f"{task} {style}" for task, style in served.items())
        if prompt_style != "auto" and set(served.values()) != {prompt_style}:
            raise EvaluationError(
                f"{endpoint} is a BridgeX server prompting {shown}, not {prompt_style} for every task "
                f"(--prompt-style auto, or restart it with --prompt-style {prompt_style})"
            )
        say(f"{endpoint} is a BridgeX server ({shown}): asking its /v1/translate")
        yield url
        return
    port = free_port()
    command = [sys.executable, "-m", "bridgex_serve", "--index", str(index), "--upstream", url]
    command += ["--host", "127.0.0.1", "--port", str(port), "--max-concurrency", str(concurrency)]
    command += ["--prompt-style", prompt_style]
    if api_key:
        command += ["--upstream-api-key", api_key]
    env = {k: v for k, v in os.environ.items() if k not in ("BRIDGEX_API_KEYS", "BRIDGEX_UPSTREAM_API_KEY")}
    say(f"starting bridgex-serve on 127.0.0.1:{port} in front of {url}")
    proc = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        child = f"http://127.0.0.1:{port}"
        _wait_ready(proc, child, endpoint)
        yield child
    finally:
        _stop(proc)


def _wait_ready(proc: subprocess.Popen, child: str, upstream: str) -> None:
    """Wait for the child's /health, then require /ready (the index loaded, the upstream answering)."""
    import httpx

    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if proc.poll() is not None:
            lines = [ln for ln in (proc.stderr.read() if proc.stderr else "").splitlines() if ln.strip()]
            raise EvaluationError(lines[-1] if lines else f"bridgex-serve exited with {proc.returncode}")
        try:
            if httpx.get(f"{child}/health", timeout=2.0).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise EndpointError(f"bridgex-serve did not start within {START_TIMEOUT:.0f} s")
        time.sleep(0.1)
    ready = httpx.get(f"{child}/ready", timeout=30.0)
    if ready.status_code != 200:
        reason = ready.json().get("reason") if ready.headers.get("content-type", "").startswith("app") else ""
        raise EndpointError(f"cannot reach {upstream}: {reason or ready.status_code}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stderr:
        proc.stderr.close()


# ------------------------------------------------------------------------------------------- the cache


@dataclass(frozen=True)
class WordAnswer:
    """One word's item of a `/v1/translate` answer, as evaluation keeps it."""

    answer: str
    bridge: str | None  # the route's bridge (None: direct)
    bridge_text: str | None
    bridge_copied: bool
    fallback: str | None  # "copy": the direct route answered after a copy
    calls: int
    shots: int
    seconds: float
    mode: str | None = None  # the server's mode (chain, two-step, direct, distilled); None: older cache

    @classmethod
    def from_item(cls, item: Mapping[str, Any], seconds: float) -> WordAnswer:
        return cls(
            answer=str(item.get("text") or ""),
            bridge=item.get("bridge"),
            bridge_text=item.get("bridge_text"),
            bridge_copied=bool(item.get("bridge_copied")),
            fallback=item.get("fallback"),
            calls=int(item.get("calls") or 1),
            shots=int(item.get("shots") or 0),
            seconds=seconds,
            mode=item.get("mode"),
        )


class AnswerCache:
    """`eval_answers` in the index file: every word's answer by request key, written in batches."""

    def __init__(self, store: ResultStore, model: str):
        self.store = store
        self.model = model
        with store.connect() as con:
            found = con.execute(
                "SELECT key, response, seconds FROM eval_answers WHERE model = ?", [model]
            ).fetchall()
        self.answers: dict[str, WordAnswer] = {}
        for key, response, seconds in found:
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                self.answers[key] = WordAnswer.from_item(json.loads(response), float(seconds or 0.0))
        self.pending: list[tuple] = []
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> WordAnswer | None:
        return self.answers.get(key)

    def put(self, key: str, request: Mapping[str, Any], answer: WordAnswer) -> None:
        self.answers[key] = answer
        item = {k: v for k, v in asdict(answer).items() if k not in ("answer", "seconds")}
        item["text"] = answer.answer
        response = json.dumps(item, ensure_ascii=False)
        self.pending.append((key, self.model, canonical(request), response, "stop", answer.seconds))
        if len(self.pending) >= FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        with self.store.connect() as con:
            append_answers(con, self.pending)
        self.pending = []


def canonical(data: Mapping[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def request_key(request: Mapping[str, Any]) -> str:
    """The cache key of one word: sha256 of the canonical one-word request (path, body, index identity)."""
    return hashlib.sha256(canonical(request).encode("utf-8")).hexdigest()


# ------------------------------------------------------------------------------------------ the client


@dataclass(frozen=True)
class WordRequest:
    """One word asked with one set of `/v1/translate` options (route or bridge, mode, shots, ...)."""

    word: str
    options: tuple[tuple[str, Any], ...]  # sorted (key, value) pairs of the body without `q`
    context: str = ""  # what else the answer depends on (e.g. the stored decision a `route: auto` follows)

    def body(self) -> dict[str, Any]:
        return {**dict(self.options), "q": [self.word]}


def word_request(word: str, options: Mapping[str, Any], context: str = "") -> WordRequest:
    return WordRequest(word, tuple(sorted(options.items())), context)


class TranslateClient:
    """`/v1/translate` batches through the cache; identical requests are asked once."""

    def __init__(
        self,
        cache: AnswerCache,
        index_id: str,
        *,
        endpoint: str,
        api_key: str | None,
        timeout: float,
        concurrency: int,
        prompt_style: str = "auto",
    ):
        self.endpoint = endpoint
        self.prompt_style = prompt_style
        self.cache = cache
        self.index_id = index_id
        self.api_key = api_key
        self.timeout = timeout
        self.concurrency = concurrency  # the most batches in flight at once (`Window.ceiling`)
        self.calls = 0

    def key(self, request: WordRequest) -> str:
        return request_key(self.record(request))

    def record(self, request: WordRequest) -> dict[str, Any]:
        record = {
            "path": "/v1/translate",
            "body": request.body(),
            "index": self.index_id,
            "prompt_style": self.prompt_style,
        }
        return {**record, "context": request.context} if request.context else record

    def cached(
        self, requests: Sequence[WordRequest], out: dict[WordRequest, WordAnswer]
    ) -> list[WordRequest]:
        """Put the cached answers into `out`; return the distinct requests still to ask."""
        missing = []
        for request in dict.fromkeys(requests):
            found = self.cache.get(self.key(request))
            if found is None:
                missing.append(request)
            else:
                self.cache.hits += 1
                out[request] = found
        return missing

    async def fetch(
        self,
        url: str,
        requests: Sequence[WordRequest],
        out: dict[WordRequest, WordAnswer],
        progress: Callable[[int], None] = lambda _n: None,
    ) -> None:
        """Ask `requests` at the BridgeX server `url` in batches of `BATCH` words sharing their options, and
        put the answers into `out` (and the cache). At most `Window.limit` batches are in flight (see
        `Window`). Raises `EndpointError` on the first failed batch: what came back before it stays in `out`
        and the cache."""
        import httpx

        groups: dict[tuple, list[WordRequest]] = {}
        for request in requests:
            groups.setdefault(request.options, []).append(request)
        batches = [m[i : i + BATCH] for m in groups.values() for i in range(0, len(m), BATCH)]
        window = Window(self.concurrency, self.timeout)
        async with httpx.AsyncClient(
            base_url=url,
            headers=_headers(self.api_key),
            timeout=httpx.Timeout(self.timeout, connect=10.0),
            limits=httpx.Limits(max_connections=self.concurrency),
        ) as client:

            async def one(batch: list[WordRequest]) -> None:
                answers = await self._post(client, window, batch)
                for request, answer in zip(batch, answers, strict=True):
                    out[request] = answer
                    self.cache.misses += 1
                    self.cache.put(self.key(request), self.record(request), answer)
                progress(len(batch))

            tasks = [asyncio.ensure_future(one(b)) for b in batches]
            try:
                if tasks:
                    await asyncio.gather(*tasks)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _post(
        self, client, window: Window, batch: list[WordRequest], attempts: int = 3
    ) -> list[WordAnswer]:
        """One batch's answers; a timeout, a dropped connection or a 429/503/504 is tried again (three
        attempts in all, backing off outside the window)."""
        import httpx

        body = {**dict(batch[0].options), "q": [r.word for r in batch]}
        for attempt in range(attempts):
            last = attempt == attempts - 1
            async with window:
                t0 = time.perf_counter()
                try:
                    self.calls += 1
                    response = await client.post("/v1/translate", json=body)
                except httpx.ConnectError as err:
                    raise EndpointError(f"cannot reach {self.endpoint}: {_reason(err)}") from None
                except (httpx.TransportError, httpx.TimeoutException) as err:
                    timed_out = isinstance(err, httpx.TimeoutException)
                    if timed_out:
                        window.timed_out()
                    if last:
                        raise EndpointError(
                            f"cannot reach {self.endpoint}: {_reason(err)}", timed_out
                        ) from None
                    response = None
                else:
                    window.answered(time.perf_counter() - t0)
            if response is None or (response.status_code in (429, 503, 504) and not last):
                await asyncio.sleep(0.5 * 2**attempt)
                continue
            return self._answers(response, batch, (time.perf_counter() - t0) / len(batch))
        raise AssertionError("unreachable")

    def _answers(self, response, batch: list[WordRequest], seconds: float) -> list[WordAnswer]:
        """The batch's answers from a `/v1/translate` reply (an `EndpointError` for an error reply)."""
        if response.status_code in (502, 504):  # the server could not reach its upstream
            raise EndpointError(f"cannot reach {self.endpoint}: {_error_message(response)}")
        if response.status_code >= 400:
            raise EndpointError(
                f"{self.endpoint} answered {response.status_code}: {_error_message(response)}"
            )
        try:
            items = response.json()["translations"]
        except (ValueError, KeyError, TypeError):
            raise EndpointError(f"{self.endpoint} answered /v1/translate unexpectedly") from None
        if not isinstance(items, list) or len(items) != len(batch):
            raise EndpointError(f"{self.endpoint} answered {len(items)} of {len(batch)} texts")
        return [WordAnswer.from_item(item, seconds) for item in items]


class Window:
    """How many batches may be in flight at once, following what the server keeps up with.

    It opens at one batch and grows by one per answer that came back within a quarter of `timeout`, up to
    `ceiling` (`--concurrency`); an answer slower than half of `timeout`, or a timeout, halves it (never
    below one). Batches wait here, in the client, rather than in the server's queue: a request's timeout
    starts when it is sent to a server that answers about one window's work per quarter-timeout, so a slow
    CPU server gets fewer batches at once instead of timeouts, and a fast one is soon asked `ceiling` at
    once.
    """

    def __init__(self, ceiling: int, timeout: float):
        self.ceiling = max(1, ceiling)
        self.timeout = timeout
        self.limit = 1
        self.in_flight = 0
        self.peak = 0  # the most batches that were ever in flight at once
        self._changed = asyncio.Condition()

    def answered(self, seconds: float) -> None:
        if seconds <= self.timeout / 4:
            self.limit = min(self.ceiling, self.limit + 1)
        elif seconds > self.timeout / 2:
            self.limit = max(1, self.limit // 2)

    def timed_out(self) -> None:
        self.limit = max(1, self.limit // 2)

    async def __aenter__(self) -> Window:
        async with self._changed:
            await self._changed.wait_for(lambda: self.in_flight < self.limit)
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        return self

    async def __aexit__(self, *exc) -> None:
        async with self._changed:
            self.in_flight -= 1
            self._changed.notify_all()


def _reason(err: Exception) -> str:
    text = " ".join(str(err).split())
    return text or type(err).__name__


def _error_message(response) -> str:
    try:
        body = response.json()
        error = body.get("error")
        message = error.get("message") if isinstance(error, dict) else None
        message = message or body.get("message") or body.get("detail") or error
    except (ValueError, AttributeError):
        message = response.text
    return " ".join(str(message or response.reason_phrase).split())[:300]
