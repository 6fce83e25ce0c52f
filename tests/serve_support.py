"""Serving test fixtures: a real DuckDB index, a stub OpenAI upstream, servers in threads.

Test modules import the fixtures they use by name (`from serve_support import stub, index_path`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import select
import socket
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import duckdb
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from bridgex_index.schema import SCHEMA_VERSION, TABLES
from bridgex_index.store import write_distilled, write_route_policy, write_routing_decisions
from bridgex_serve.launch import MIDDLEWARE, VllmServer, free_port  # noqa: F401 (re-exported for tests)

# ---------------------------------------------------------------------------------------------------------
# A small but real index

LANGUAGES = [
    # code, prompt name, English name, low resource
    ("de", "Deutsch", "German", False),
    ("en", "English", "English", False),
    ("he", "עברית", "Hebrew", True),
    ("ja", "日本語", "Japanese", False),
    ("sw", "Kiswahili", "Swahili", True),
]
# concept → (category, split, {language: word})
CONCEPTS = {
    "unit-kilogram": (
        "unit",
        "probe",
        {"en": "kilogram", "sw": "kilogramu", "he": "קילוגרם", "de": "Kilogramm"},
    ),
    "month-1": ("month", "probe", {"en": "January", "sw": "Januari", "he": "ינואר", "de": "Januar"}),
    "month-2": ("month", "probe", {"en": "February", "sw": "Februari", "he": "פברואר", "de": "Februar"}),
    "weekday-mon": ("weekday", "probe", {"en": "Monday", "sw": "Jumatatu", "he": "יום שני", "de": "Montag"}),
    "noun-water": ("noun", "probe", {"en": "water", "sw": "maji", "he": "מים", "de": "Wasser"}),
    # the model name is the same word in every language: never a demonstration (a copy)
    "noun-radio": ("noun", "probe", {"en": "radio", "sw": "radio", "he": "radio", "de": "radio"}),
    "month-3": ("month", "test", {"en": "March", "sw": "Machi", "he": "מרץ", "de": "März"}),
}
# (source, target) → [(bridge, probability)], stored in both orders as the builder does
BRIDGES = {
    ("he", "sw"): [("en", 0.7), ("de", 0.3)],
    ("de", "sw"): [("en", 0.9)],
    ("he", "ja"): [("en", 0.6)],
}


def decision(source: str, target: str, route: str, **numbers) -> dict:
    """A `routing_decisions` row as `bridgex-index calibrate` writes it (numbers default to a clear win)."""
    row = dict(
        source=source,
        target=target,
        decision=route,
        bridge=None if route == "direct" else route,
        direct_accuracy=0.1,
        bridge_accuracy=0.4 if route != "direct" else None,
        n=100,
        gain=0.3 if route != "direct" else None,
        ci_low=0.2 if route != "direct" else None,
        ci_high=0.4 if route != "direct" else None,
        p_value=1e-9 if route != "direct" else None,
        test="mcnemar-exact-one-sided+holm(alpha=0.05); ci=newcombe-paired(0.95)",
        candidates=2,
        model="tiny-test",
        endpoint="http://127.0.0.1:8000",
    )
    row.update(numbers)
    return row


def policy_row(source: str, target: str, route: str, task: str = "word", **numbers) -> dict:
    """A `route_policy` row as `bridgex-index calibrate` writes it (numbers default to a clear prior gain)."""
    row = dict(
        source=source,
        target=target,
        task=task,
        route=route,
        origin="prior",
        expected_gain=6.0 if route != "direct" else 0.0,
        sd=2.0,
        p_gain=0.999 if route != "direct" else 0.0,
        p_loss=0.0001 if route != "direct" else 0.0,
        n=0,
        best=route,
        best_gain=6.0,
    )
    row.update(numbers)
    return row


def rank1_policy(bridges=BRIDGES) -> list[dict]:
    """The policy of an index calibrated once whose prior routes every ranked pair through its rank-1
    bridge (as the paper's rule would), for words and sentences alike."""
    return [
        policy_row(s, t, choices[0][0], task)
        for (a, b), choices in bridges.items()
        for s, t in ((a, b), (b, a))
        for task in ("word", "translate")
    ]


def write_index(
    path: Path,
    *,
    languages=LANGUAGES,
    concepts=CONCEPTS,
    bridges=BRIDGES,
    entries: Sequence[tuple] = (),
    decisions: Sequence[dict] | None = None,
    policy: Sequence[dict] | str | None = "rank1",
    distilled: dict[tuple[str, str, str], Sequence[tuple[str, str]]] | None = None,
) -> Path:
    """Write a real BridgeX index with the builder's schema.

    `entries` adds raw `dictionary_entries` rows (source, target, source_word, target_word, concept,
    category, split), e.g. MUSE-style ones without a concept; `decisions` writes the optional
    `routing_decisions` table (None: no table at all); `policy` the optional `route_policy` rows ("rank1",
    the default: `rank1_policy(bridges)`; None: no table, as before any calibration); `distilled`
    (source, target, task) → (source text, target text) examples of `distilled_demonstrations`.
    """
    path = Path(path)
    if path.exists():
        path.unlink()
    con = duckdb.connect(str(path))
    for ddl in TABLES.values():
        con.execute(ddl)
    con.executemany(
        "INSERT INTO provenance VALUES (?, ?)",
        [("schema_version", str(SCHEMA_VERSION)), ("model", "tiny-test")],
    )
    con.executemany("INSERT INTO languages VALUES (?, ?, ?, ?, 100, 10)", list(languages))
    rows = []
    codes = sorted(c for c, *_ in languages)
    for concept, (category, split, words) in concepts.items():
        for i, a in enumerate(codes):
            for b in codes[i + 1 :]:
                if a in words and b in words:
                    rows.append((a, b, words[a], words[b], concept, category, split))
    rows += list(entries)
    if rows:
        con.executemany("INSERT INTO dictionary_entries VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    brows = []
    for (a, b), choices in bridges.items():
        for rank, (bridge, p) in enumerate(choices, start=1):
            brows += [(a, b, bridge, 1.0 - rank / 10, p, rank), (b, a, bridge, 1.0 - rank / 10, p, rank)]
    con.executemany("INSERT INTO bridges VALUES (?, ?, ?, ?, ?, ?)", brows)
    if decisions is not None:
        write_routing_decisions(con, list(decisions))
    if policy == "rank1":
        policy = rank1_policy(bridges)
    if policy is not None:
        for task in ("word", "translate"):
            write_route_policy(con, task, [r for r in policy if r["task"] == task], "{}", None)
    for (s, t, task), examples in (distilled or {}).items():
        write_distilled(con, s, t, task, distilled_rows(s, t, task, examples))
    con.close()
    return path


def distilled_rows(source: str, target: str, task: str, examples: Sequence[tuple[str, str]]) -> list[dict]:
    """`distilled_demonstrations` rows of one pair and task, as `bridgex-index distill` writes them."""
    return [
        dict(
            source=source,
            target=target,
            task=task,
            position=i,
            source_text=x,
            target_text=y,
            route="en",
            model="tiny-test",
            text_source="test",
        )
        for i, (x, y) in enumerate(examples)
    ]


@pytest.fixture
def index_path(tmp_path) -> Path:
    return write_index(tmp_path / "index.duckdb")


# ---------------------------------------------------------------------------------------------------------
# A stub OpenAI upstream that "translates" deterministically

NAMES = {name: code for code, name, *_ in LANGUAGES}
# Words the stub copies when asked through a bridge: source word → (bridge rendering, answer after the
# bridge, answer of the direct prompt {S}:"w"→{T}:"). One of each kind of copy.
COPYING = {
    "kitabu": ("kitabu", "kitabu", "ספר"),  # the bridge rendering is the source word
    "rafiki": ("friend", "Rafiki", "חבר"),  # the answer is the source word
    "simu": ("phone", "Phone.", "טלפון"),  # the answer is the bridge rendering
}
WORDS = {c[2]["sw"]: c[2] for c in CONCEPTS.values()} | {c[2]["he"]: c[2] for c in CONCEPTS.values()}
STUB_REPLY = "Hello from the stub"
QUOTED = re.compile(r'^(?P<label>[^:"→]+):"(?P<text>[^"]*)"?$')


def render(text: str, label: str) -> str:
    """The stub's translation of `text` into the language called `label` ("Kiswahili reply" → reply)."""
    name, _, role = label.partition(" ")
    code = NAMES.get(name, "??")
    if text in WORDS and code in WORDS[text]:
        return WORDS[text][code]
    return f"<{code}{' ' + role if role else ''}> {text}"


def stub_complete(prompt: str, stop: list[str]) -> str:
    """Follow the chain format: write the next quoted field, and in chain mode (no `"` stop) also the
    answer field when the demonstrations show what comes after the bridge."""
    lines = prompt.split("\n")
    last = lines[-1]
    if not last.endswith(':"'):
        return " completion from the stub"
    segments = last.split("→")
    fields = [QUOTED.match(s) for s in segments[:-1]]
    source = fields[0].group("text") if fields and fields[0] else ""
    label = segments[-1][:-2]
    copying = COPYING.get(source)
    if copying is not None:  # direct prompt → the translation; through a bridge → a copy
        bridged = len(segments) > 2 or NAMES.get(label.partition(" ")[0]) != "he"
        out = copying[1] if len(segments) > 2 else copying[0] if bridged else copying[2]
    else:
        out = render(source, label)
    if '"' in stop:
        return out
    demos = [ln for ln in lines[:-1] if ln.count("→") == len(segments)]
    if demos:  # chain: the model writes the following field too
        answer_label = demos[0].split("→")[-1].split(':"')[0]
        answer = copying[1] if copying else render(source, answer_label)
        return f'{out}"→{answer_label}:"{answer}"'
    return f'{out}"'


INSTRUCTION = re.compile(r"\(First write .+? in (?P<b>.+?) as .+?, then .+? in (?P<t>.+?) as ")


def stub_chat(body: dict) -> str:
    messages = body["messages"]
    if body.get("continue_final_message") and messages[-1]["role"] == "assistant":
        prefill = messages[-1]["content"]
        user = messages[-2]["content"]
        m = INSTRUCTION.search(user)
        text = user.split("\n\n(First write")[0].split("\n\n")[0]  # the passage, not the question
        b, t = m.group("b"), m.group("t")
        if prefill == f'{b}:"':
            bridge = render(text, b)
            if '"' in (body.get("stop") or []):
                return bridge
            return f'{bridge}"\n{t}:"{render(text, t + " reply")}"'
        return f'{render(text, t + " reply")}"'
    return STUB_REPLY


class StubUpstream:
    """A tiny OpenAI-compatible server with canned answers; records what it receives.

    Special model names: "slow" sleeps `delay` seconds before answering (timeouts); "refuse" answers 400.
    """

    def __init__(self, api_key: str | None = None, delay: float = 2.0):
        self.requests: list[dict] = []
        self.api_key = api_key
        self.delay = delay
        self.app = Starlette(
            routes=[
                Route("/v1/models", self.models, methods=["GET"]),
                Route("/v1/completions", self.completions, methods=["POST"]),
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
            ]
        )

    def _check(self, request: Request):
        if self.api_key and request.headers.get("authorization") != f"Bearer {self.api_key}":
            return JSONResponse({"error": {"message": "bad key", "type": "authentication_error"}}, 401)
        return None

    async def models(self, request: Request):
        return self._check(request) or JSONResponse(
            {"object": "list", "data": [{"id": "stub-model", "object": "model", "owned_by": "stub"}]}
        )

    async def _body(self, request: Request, path: str) -> dict:
        raw = await request.body()
        body = json.loads(raw)
        self.requests.append({"path": path, "body": body, "raw": raw, "headers": dict(request.headers)})
        if body.get("model") == "slow":
            await asyncio.sleep(self.delay)
        return body

    @staticmethod
    def _usage(n: int) -> dict:
        return {"prompt_tokens": 10 * n, "completion_tokens": 2 * n, "total_tokens": 12 * n}

    async def completions(self, request: Request):
        if denied := self._check(request):
            return denied
        body = await self._body(request, "/v1/completions")
        if body.get("model") == "refuse":
            return JSONResponse(
                {"error": {"message": "refused", "type": "BadRequestError", "code": 400}}, 400
            )
        prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
        stop = body.get("stop") or []
        texts = [stub_complete(p, stop) for p in prompts]
        if body.get("stream"):

            async def events():
                for t in texts[0].split(" "):
                    chunk = {
                        "id": "cmpl-stub",
                        "object": "text_completion",
                        "model": body["model"],
                        "choices": [{"index": 0, "text": t + " ", "finish_reason": None}],
                    }
                    yield f"data: {json.dumps(chunk)}\n\n"
                yield "data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")
        return JSONResponse(
            {
                "id": "cmpl-stub",
                "object": "text_completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [
                    {"index": i, "text": t, "logprobs": None, "finish_reason": "stop"}
                    for i, t in enumerate(texts)
                ],
                "usage": self._usage(len(texts)),
            }
        )

    async def chat(self, request: Request):
        if denied := self._check(request):
            return denied
        body = await self._body(request, "/v1/chat/completions")
        if body.get("model") == "refuse":
            return JSONResponse(
                {"error": {"message": "refused", "type": "BadRequestError", "code": 400}}, 400
            )
        text = stub_chat(body)
        if body.get("stream"):

            async def events():
                for i, t in enumerate(text.split(" ")):
                    delta = {"role": "assistant", "content": t} if i == 0 else {"content": " " + t}
                    chunk = {
                        "id": "chatcmpl-stub",
                        "object": "chat.completion.chunk",
                        "model": body["model"],
                        "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
                    }
                    yield f"data: {json.dumps(chunk)}\n\n"
                yield "data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")
        return JSONResponse(
            {
                "id": "chatcmpl-stub",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                ],
                "usage": self._usage(1),
            }
        )


# ---------------------------------------------------------------------------------------------------------
# Servers on loopback


class ServerThread:
    """Run an ASGI app with uvicorn in a daemon thread on 127.0.0.1."""

    def __init__(self, app, port: int | None = None):
        import uvicorn

        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on", access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@contextlib.contextmanager
def running(app, port: int | None = None):
    with ServerThread(app, port) as server:
        yield server


@contextlib.contextmanager
def mounted_middleware(inner, env: dict[str, str] | None = None, *, port: int | None = None):
    """`BridgeXMiddleware` around the ASGI app `inner`, served by uvicorn as vLLM serves it (uvicorn's own
    protocol classes, which the middleware guards in place); settings from `env` (BRIDGEX_*), put back with
    the protocol classes on exit."""
    from bridgex_serve.connections import unguard_uvicorn
    from bridgex_serve.vllm_middleware import BridgeXMiddleware

    saved = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        with running(BridgeXMiddleware(inner), port) as server:
            yield server
    finally:
        unguard_uvicorn()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


GENEROUS = 60.0  # seconds: a ceiling that only a hang reaches, never a timing window


def wait_closed(socks: list[socket.socket]) -> dict[socket.socket, bytes]:
    """Read every socket until the server closes it; what each received (sockets still open after
    `GENEROUS` seconds are missing)."""
    received = {s: b"" for s in socks}
    left = set(socks)
    ceiling = time.monotonic() + GENEROUS
    while left and time.monotonic() < ceiling:
        readable, _, _ = select.select(list(left), [], [], 1.0)
        for s in readable:
            try:
                data = s.recv(65536)
            except ConnectionResetError:
                data = b""
            if data:
                received[s] += data
            else:
                left.discard(s)
    for s in socks:
        s.close()
    return {s: data for s, data in received.items() if s not in left}


def with_nesting(body: dict, depth: int) -> bytes:
    """`body` with a field `extra` holding arrays nested so that the whole body is `depth` levels deep."""
    levels = depth - 1  # the body itself is level 1
    return orjson.dumps(body)[:-1] + b',"extra":' + b"[" * levels + b"]" * levels + b"}"


@pytest.fixture
def stub():
    upstream = StubUpstream()
    with running(upstream.app) as server:
        upstream.url = server.url
        yield upstream


def openai_client(base_url: str, api_key: str = "none", **kw):
    from openai import OpenAI

    return OpenAI(
        base_url=base_url + "/v1", api_key=api_key, max_retries=0, timeout=kw.pop("timeout", 30), **kw
    )


# ---------------------------------------------------------------------------------------------------------
# A real vLLM OpenAI server on the CPU (slow tests)

REPO = Path(__file__).resolve().parent.parent
GEMMA_DIRS = (
    REPO / ".cache" / "models" / "gemma-3-270m",
    REPO / ".cache" / "bridgex" / "models" / "gemma-3-270m",
)


def gemma_dir() -> Path | None:
    """The converted Gemma 3 270M folder (`bridgex-index convert`), or None."""

    candidates = [Path(os.environ["BRIDGEX_GEMMA_DIR"])] if os.environ.get("BRIDGEX_GEMMA_DIR") else []
    for path in [*candidates, *GEMMA_DIRS]:
        if (path / "config.json").is_file():
            return path
    return None


SERVE_DISTILLED = {
    ("de", "sw", "translate"): [("Guten Morgen, mein Freund", "Habari za asubuhi, rafiki yangu")],
    ("sw", "he", "word"): [("mto", "נהר"), ("mlima", "הר")],
}


@pytest.fixture(scope="session")
def serve_index(tmp_path_factory) -> Path:
    """The test index, written once for the slow tests (never modified: reload tests copy it); de → sw
    sentences have a distilled set (served by default), sw → he words one (served on request)."""
    return write_index(tmp_path_factory.mktemp("serve-index") / "index.duckdb", distilled=SERVE_DISTILLED)


@pytest.fixture(scope="session")
def vllm_tiny(tiny_llama, serve_index, tmp_path_factory):
    """One real vLLM server per session: the tiny random Llama, with the BridgeX middleware loaded.

    Requests without a `bridgex` field pass the middleware untouched, so the same server is the proxy's
    plain upstream and the plugin under test.
    """
    log = tmp_path_factory.mktemp("vllm-log") / "vllm-tiny.log"
    with VllmServer(tiny_llama, name="tiny", index=serve_index, log=log) as server:
        yield server


@pytest.fixture(scope="session")
def proxy_tiny(vllm_tiny, serve_index):
    """The proxy in front of the tiny vLLM server."""
    from bridgex_serve.app import create_app
    from bridgex_serve.settings import Settings

    with running(create_app(Settings(index=str(serve_index), upstream=vllm_tiny.url))) as server:
        yield server


@pytest.fixture(scope="session")
def constant_model(tmp_path_factory) -> tuple[Path, str]:
    """The tiny Llama that writes one visible piece again and again (`tinymodels.make_constant_model`)."""
    from tinymodels import make_constant_model

    return make_constant_model(tmp_path_factory.mktemp("tiny-constant"))


@pytest.fixture(scope="session")
def vllm_constant(constant_model, serve_index, tmp_path_factory):
    """A real vLLM server (BridgeX middleware loaded) serving the constant model as "tiny"."""
    log = tmp_path_factory.mktemp("vllm-log") / "vllm-constant.log"
    with VllmServer(constant_model[0], name="tiny", index=serve_index, log=log) as server:
        yield server


@pytest.fixture(scope="session")
def proxy_constant(vllm_constant, serve_index):
    """The proxy in front of the constant-model vLLM server."""
    from bridgex_serve.app import create_app
    from bridgex_serve.settings import Settings

    with running(create_app(Settings(index=str(serve_index), upstream=vllm_constant.url))) as server:
        yield server
