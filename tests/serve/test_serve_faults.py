"""The proxy against a fault-injecting upstream: status and shape of every failure, honest stream ends,
deadlines, and client disconnects cancelling the upstream request.

No timing window: a deadline is shown to be the one that fired by making every other one far away (a
600 s request deadline when the time to first byte is tested, and so on), and the client waits
generously; a lower bound (a deadline never fires early) is the only duration asserted."""

from __future__ import annotations

import time

import httpx
import openai
import orjson
import pytest
from fault_upstream import FaultUpstream
from serve_support import (
    index_path,  # noqa: F401 (fixture)
    openai_client,
    running,
)

from bridgex_serve.app import create_app
from bridgex_serve.settings import Settings

WORD = {"task": "word", "source": "sw", "target": "he"}


@pytest.fixture
def fault():
    upstream = FaultUpstream()
    with running(upstream.app) as server:
        upstream.url = server.url
        yield upstream


GENEROUS = 60.0  # seconds a client waits: reached only when the deadline under test never fires


@pytest.fixture
def proxy(fault, index_path):  # noqa: F811
    """Short deadlines: 2 s per request, 1 s to the upstream's first byte."""
    settings = Settings(
        index=str(index_path), upstream=fault.url, request_timeout=2.0, ttfb_timeout=1.0, upstream_timeout=5.0
    )
    with running(create_app(settings)) as server:
        server.fault = fault
        yield server


@pytest.fixture
def patient(fault, index_path):  # noqa: F811
    """The default deadlines (600 s per request, 300 s to the first byte): none fires during a test."""
    with running(create_app(Settings(index=str(index_path), upstream=fault.url))) as server:
        server.fault = fault
        yield server


def error_of(r: httpx.Response, status: int) -> dict:
    """The OpenAI-shaped error of `r`, after checking its status and content type."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    error = r.json()["error"]
    assert isinstance(error["message"], str) and error["type"]
    return error


def chat(model: str, **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "maji"}], **extra}


def test_a_dripping_upstream_ends_at_the_total_deadline(proxy):
    """The drip sends its head at once and a byte every 0.2 s: only the 2 s request deadline can end it."""
    start = time.monotonic()
    r = httpx.post(proxy.url + "/v1/chat/completions", json=chat("drip"), timeout=GENEROUS)
    assert error_of(r, 504)["code"] == "upstream_timeout"
    assert time.monotonic() - start >= 1.9  # not earlier than the deadline


def test_the_deadline_can_be_shortened_per_request(patient):
    """With a 600 s deadline on the server, a 504 from the dripping upstream can only come from the
    client's shorter one."""
    r = httpx.post(
        patient.url + "/v1/chat/completions",
        json=chat("drip"),
        headers={"x-bridgex-timeout": "0.5"},
        timeout=GENEROUS,
    )
    assert error_of(r, 504)
    r = httpx.post(
        patient.url + "/v1/chat/completions",
        json=chat("drip", bridgex=dict(WORD, timeout=0.5)),
        timeout=GENEROUS,
    )
    assert error_of(r, 504)
    r = httpx.post(patient.url + "/v1/chat/completions", json=chat("m"), headers={"x-bridgex-timeout": "x"})
    assert error_of(r, 400)
    r = httpx.post(patient.url + "/v1/chat/completions", json=chat("m", bridgex=dict(WORD, timeout=-1)))
    assert error_of(r, 400)["param"] == "bridgex.timeout"


def test_slow_upstream_headers_hit_the_time_to_first_byte_timeout(index_path, fault):  # noqa: F811
    """The upstream sleeps 30 s before its head; the request deadline is 600 s: only the 1 s time to first
    byte can answer before the client gives up."""
    settings = Settings(index=str(index_path), upstream=fault.url, ttfb_timeout=1.0)
    with running(create_app(settings)) as server:
        start = time.monotonic()
        r = httpx.post(server.url + "/v1/chat/completions", json=chat("slowheaders"), timeout=20)
        assert error_of(r, 504) and time.monotonic() - start >= 0.9


def test_a_stream_cut_by_the_upstream_ends_with_an_error_event_and_no_done(proxy):
    with httpx.stream(
        "POST", proxy.url + "/v1/chat/completions", json=chat("cut", stream=True), timeout=10
    ) as r:
        assert r.status_code == 200
        events = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert "data: [DONE]" not in events
    last = orjson.loads(events[-1][len("data: ") :])
    assert last["error"]["code"] == "upstream_error" and "stream" in last["error"]["message"]
    stream = openai_client(proxy.url).chat.completions.create(
        model="cut", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    with pytest.raises(openai.APIError):
        list(stream)


def test_a_complete_stream_still_passes_through(proxy):
    stream = openai_client(proxy.url).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream) == "ok"


def test_upstream_json_of_the_wrong_shape_is_a_502_on_bridged_requests(proxy):
    for body in (chat("wrongjson", bridgex=WORD), chat("wrongjson", bridgex=dict(WORD, mode="two-step"))):
        r = httpx.post(proxy.url + "/v1/chat/completions", json=body, timeout=10)
        assert "not a completion" in error_of(r, 502)["message"]
    r = httpx.post(
        proxy.url + "/v1/translate",
        json={"q": ["maji"], "source": "sw", "target": "he", "model": "wrongjson"},
    )
    assert error_of(r, 502)


def test_upstream_error_text_is_never_relayed_raw(proxy):
    for path, body in (
        ("/v1/chat/completions", chat("text500")),
        ("/v1/chat/completions", chat("text500", bridgex=WORD)),
        ("/v1/completions", {"model": "text500", "prompt": "x"}),
    ):
        r = httpx.post(proxy.url + path, json=body, timeout=10)
        error = error_of(r, 502)
        assert "Traceback" not in r.text and "500" in error["message"]
    r = httpx.post(proxy.url + "/v1/chat/completions", json=chat("text400"), timeout=10)
    assert error_of(r, 400) and "plain text" not in r.text


def test_a_refused_upstream_connection_is_a_502(index_path):  # noqa: F811
    from serve_support import free_port

    settings = Settings(index=str(index_path), upstream=f"http://u:hunter2@127.0.0.1:{free_port()}")
    with running(create_app(settings)) as server:
        r = httpx.post(server.url + "/v1/chat/completions", json=chat("m"), timeout=10)
        assert "refused" in error_of(r, 502)["message"] and "hunter2" not in r.text
        ready = httpx.get(server.url + "/ready", timeout=10)
        assert ready.status_code == 503 and "hunter2" not in ready.text and "***@" in ready.text


DISCONNECTS = {
    "plain": ("/v1/chat/completions", chat("hold")),
    "streamed": ("/v1/chat/completions", chat("hold", stream=True)),
    "bridged": ("/v1/chat/completions", chat("hold", bridgex=WORD)),
    "two-step": (
        "/v1/completions",
        {"model": "hold", "prompt": "maji", "bridgex": dict(WORD, mode="two-step")},
    ),
    "batch": ("/v1/translate", {"q": ["maji", "Machi"], "source": "sw", "target": "he", "model": "hold"}),
}


@pytest.mark.parametrize("case", sorted(DISCONNECTS))
def test_a_client_disconnect_cancels_the_upstream_request(patient, case):
    """The upstream holds the request until its client goes away and no deadline fires for minutes: the
    upstream sees its client go only because the proxy cancelled on the disconnect."""
    path, body = DISCONNECTS[case]
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(patient.url + path, json=body, timeout=httpx.Timeout(10, read=0.5))
    ceiling = time.monotonic() + GENEROUS
    while not patient.fault.gone and time.monotonic() < ceiling:
        time.sleep(0.02)
    assert patient.fault.gone, "the upstream request was never cancelled"
