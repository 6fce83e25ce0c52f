"""The request options evaluation drives the server with: `route`, `copy_fallback`, and `task` in
`/v1/translate` (validated with OpenAI-shaped 400s), against the stub upstream of serve_support."""

from __future__ import annotations

import httpx
import pytest
from serve_support import (
    index_path,  # noqa: F401 (fixture)
    running,
    stub,  # noqa: F401 (fixture)
    write_index,
)

from bridgex_serve.app import create_app
from bridgex_serve.index import load_index
from bridgex_serve.options import Options, RequestError, parse_options
from bridgex_serve.plan import plan_request
from bridgex_serve.settings import Settings


@pytest.fixture
def proxy(stub, index_path):  # noqa: F811
    with running(create_app(Settings(index=str(index_path), upstream=stub.url))) as server:
        server.stub = stub
        yield server


def translate(proxy, **body) -> httpx.Response:
    return httpx.post(proxy.url + "/v1/translate", json={"source": "sw", "target": "he", **body}, timeout=30)


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        ({"route": "fastest"}, "bridgex.route"),
        ({"route": 1}, "bridgex.route"),
        ({"route": "direct", "bridge": "en"}, "bridgex.route"),
        ({"copy_fallback": "yes"}, "bridgex.copy_fallback"),
    ],
)
def test_bad_route_and_copy_fallback_options_name_their_field(raw, param):
    with pytest.raises(RequestError) as info:
        parse_options(raw)
    assert info.value.param == param


def test_route_options_parse():
    assert parse_options({"route": "hsic", "copy_fallback": False}) == Options(
        route="hsic", copy_fallback=False
    )
    assert parse_options({}).route == "auto" and parse_options({}).copy_fallback is None


def test_route_hsic_ignores_the_calibrated_decision_and_the_low_resource_gate(tmp_path):
    index = load_index(
        write_index(tmp_path / "i.duckdb", decisions=[{"source": "sw", "target": "he", "decision": "direct"}])
    )

    def plan(route: str, source: str = "sw", target: str = "he"):
        return plan_request(
            Options(task="word", source=source, target=target, route=route),
            "maji",
            index=index,
            low_resource=frozenset({"sw", "he"}),
            detect=lambda _t: source,
        )

    auto, hsic, direct = plan("auto"), plan("hsic"), plan("direct")
    assert (auto.bridge, auto.decision_source) == (None, "calibrated")
    assert (hsic.bridge, hsic.decision_source, hsic.probability) == ("en", "hsic", 0.7)
    assert (direct.bridge, direct.mode, direct.decision_source) == (None, "direct", "client")
    with pytest.raises(RequestError, match="no bridge for ja→de"):
        plan("hsic", "ja", "de")


def test_translate_takes_task_route_and_copy_fallback(proxy):
    word = translate(proxy, q=["kitabu", "maji"], task="word", route="hsic", copy_fallback=False).json()
    first, second = word["translations"]
    assert (first["bridge"], first["bridge_copied"], first["fallback"], first["calls"]) == (
        "en",
        True,
        None,
        1,
    )
    assert (second["text"], second["shots"]) == ("מים", 3)
    fallback = translate(proxy, q=["kitabu"], task="word", copy_fallback=True).json()["translations"][0]
    assert (fallback["fallback"], fallback["fallback_reason"], fallback["calls"]) == (
        "copy",
        "bridge_is_source",
        2,
    )
    assert fallback["text"] == "ספר"
    direct = translate(proxy, q=["maji"], task="word", route="direct").json()["translations"][0]
    assert (direct["bridge"], direct["mode"], direct["route"], direct["text"]) == (
        None,
        "direct",
        "direct",
        "מים",
    )


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"task": "qa"}, "task"),
        ({"route": "best"}, "bridgex.route"),
        ({"copy_fallback": 1}, "bridgex.copy_fallback"),
    ],
)
def test_translate_refuses_bad_options_with_a_400(proxy, body, param):
    r = translate(proxy, q=["maji"], **body)
    assert r.status_code == 400 and r.json()["error"]["param"] == param


def test_chat_bridgex_field_takes_the_route(proxy):
    r = httpx.post(
        proxy.url + "/v1/chat/completions",
        json={
            "model": "m",
            "messages": [{"role": "user", "content": "maji"}],
            "bridgex": {"task": "word", "source": "sw", "target": "he", "route": "direct"},
        },
        timeout=30,
    )
    assert r.status_code == 200 and r.json()["bridgex"]["route"] == "direct"
