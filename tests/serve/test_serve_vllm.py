"""End to end on the CPU: a real vLLM server (tiny random Llama), the proxy in front of it, the real `openai`
client; and the same bridging inside `vllm serve --middleware` (the plugin).

A random model writes nonsense, so the tests on it check only what the serving path guarantees whatever
the model writes: OpenAI-shaped answers, the `bridgex` metadata, one-line answers, usage adding up all
upstream calls, batch order. Call counts and answers are checked on the constant model
(`tinymodels.make_constant_model`), whose greedy output is known by construction.
"""

from __future__ import annotations

import shutil
import socket

import httpx
import openai
import pytest
from serve_support import (
    GENEROUS,
    constant_model,  # noqa: F401 (fixture)
    openai_client,
    proxy_constant,  # noqa: F401 (fixture)
    proxy_tiny,  # noqa: F401 (fixture)
    running,
    serve_index,  # noqa: F401 (fixture)
    vllm_constant,  # noqa: F401 (fixture)
    vllm_tiny,  # noqa: F401 (fixture)
    wait_closed,
    with_nesting,
    write_index,
)

from bridgex_serve.app import create_app
from bridgex_serve.options import WORD_BRIDGE_TOKENS
from bridgex_serve.settings import Settings

pytestmark = pytest.mark.slow
WORD = {"task": "word", "source": "sw", "target": "he"}
TASK_INPUTS = {
    "word": "maji",
    "translate": "Habari ya asubuhi rafiki",
    "qa": "Maji ni baridi sana leo.\n\nJe, maji ni baridi?",
    "chat": "Habari yako leo?",
}


@pytest.fixture(params=["proxy", "plugin"])
def server(request):
    """The same tests through the proxy and through the middleware inside vLLM."""
    return request.getfixturevalue("proxy_tiny" if request.param == "proxy" else "vllm_tiny")


def test_plain_chat_and_completion_pass_through_the_proxy(proxy_tiny):  # noqa: F811
    client = openai_client(proxy_tiny.url, timeout=120)
    r = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=4
    )
    assert (
        r.object == "chat.completion"
        and r.usage.completion_tokens <= 4
        and r.model_extra.get("bridgex") is None
    )
    c = client.completions.create(model="tiny", prompt="Kiswahili:", max_tokens=4)
    assert c.object == "text_completion" and c.usage.prompt_tokens > 0
    assert [m.id for m in client.models.list()] == ["tiny"]
    assert httpx.get(proxy_tiny.url + "/ready").json()["status"] == "ready"


def test_streaming_passes_through(server):
    client = openai_client(server.url, timeout=120)
    stream = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=6,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[-1].usage.completion_tokens <= 6
    assert any(c.choices and c.choices[0].delta.content for c in chunks)


@pytest.fixture(params=["proxy", "plugin"])
def constant_server(request):
    """The constant model (one visible piece, always) behind the proxy and inside vLLM."""
    return request.getfixturevalue("proxy_constant" if request.param == "proxy" else "vllm_constant")


@pytest.mark.parametrize("mode", ["chain", "two-step"])
@pytest.mark.parametrize("task", ["word", "translate", "qa", "chat"])
def test_each_task_in_both_modes(constant_server, constant_model, task, mode):  # noqa: F811
    """The constant model never closes a quoted field, by construction: a chain stops at its token budget
    after the bridge, so every task takes exactly two calls in both modes (plus one direct call when the
    answer copies the bridge), whatever the weights' randomness."""
    piece = constant_model[1]
    client = openai_client(constant_server.url, timeout=120)
    # route hsic: the rank-1 bridge whatever the server's policy for uncalibrated pairs (which never
    # bridges same-language qa and chat)
    options = {"task": task, "source": "sw", "mode": mode, "route": "hsic"}
    if task in ("word", "translate"):
        options["target"] = "he"
    r = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": TASK_INPUTS[task]}],
        max_tokens=8,
        temperature=0,
        extra_body={"bridgex": options},
    )
    meta = r.model_extra["bridgex"]
    assert (meta["task"], meta["mode"], meta["source"], meta["bridge"]) == (task, mode, "sw", "en")
    assert meta["calls"] == 2 + (meta["fallback"] == "copy"), meta
    assert meta["bridge_text"] and set(meta["bridge_text"].replace(piece, "")) <= {" "}, meta
    content = r.choices[0].message.content
    assert content and set(content.replace(piece, "")) <= {" "}  # the model's piece, nothing of the prompt
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert r.usage.prompt_tokens > 30  # more than one call's worth of the bridged prompt


def test_word_task_on_the_completions_endpoint_with_shots(server):
    client = openai_client(server.url, timeout=120)
    r = client.completions.create(model="tiny", prompt="maji", extra_body={"bridgex": dict(WORD, shots=2)})
    assert r.model_extra["bridgex"]["shots"] == 2 and "\n" not in r.choices[0].text


def test_bridged_streaming(server):
    client = openai_client(server.url, timeout=120)
    stream = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "maji"}],
        stream=True,
        extra_body={"bridgex": WORD},
    )
    chunks = list(stream)
    assert chunks[0].model_extra["bridgex"]["bridge"] == "en"
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_copy_fallback_on_real_vllm(constant_server, constant_model):  # noqa: F811
    """A copy by construction: the constant model writes the same WORD_BRIDGE_TOKENS pieces as the bridge
    rendering and as the answer (two-step, no demonstrations), so the answer copies the bridge and is asked
    again by the direct route, end to end through vLLM; the metric counts it."""
    piece = constant_model[1]
    client = openai_client(constant_server.url, timeout=120)
    for word in ("maji", "kitabu"):
        r = client.completions.create(
            model="tiny",
            prompt=word,
            max_tokens=WORD_BRIDGE_TOKENS,
            temperature=0,
            extra_body={"bridgex": dict(WORD, mode="two-step", shots=0)},
        )
        meta = r.model_extra["bridgex"]
        expected = piece * WORD_BRIDGE_TOKENS
        assert (meta["bridge_text"], meta["bridged_answer"]) == (expected, expected), meta
        assert (meta["fallback"], meta["fallback_reason"], meta["route"], meta["calls"]) == (
            "copy",
            "answer_is_bridge",
            "direct",
            3,
        )
        assert r.choices[0].text == expected  # the direct answer of the same model
    metrics = httpx.get(constant_server.url + "/metrics", timeout=30).text
    assert 'reason="answer_is_bridge",task="word"}' in metrics


def test_auto_detection_bridges_a_swahili_sentence(server):
    client = openai_client(server.url, timeout=120)
    text = "Habari ya asubuhi rafiki yangu, ninapenda kusoma vitabu vya historia kila siku"
    r = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": text}],
        max_tokens=8,
        extra_body={"bridgex": {"target": "he"}},
    )
    assert r.model_extra["bridgex"]["source"] == "sw" and r.model_extra["bridgex"]["task"] == "translate"


def test_batch_translate_keeps_order_and_batches(server):
    texts = [f"neno{i}" for i in range(24)] + ["Habari ya asubuhi"]
    r = httpx.post(
        server.url + "/v1/translate",
        timeout=300,
        json={"q": texts, "source": "sw", "target": "he", "max_tokens": 6},
    )
    assert r.status_code == 200, r.text
    out = r.json()["translations"]
    assert len(out) == len(texts) and all(t["bridge"] == "en" and "\n" not in t["text"] for t in out)
    assert r.json()["usage"]["prompt_tokens"] > 0


def test_distilled_mode_is_one_call_with_the_set_in_front(server):
    """A pair with a distilled set (de → sw sentences) is answered in ONE upstream call with the set in the
    prompt, plainly, streamed and batched; asked for a pair without one, the mode is a 400."""
    client = openai_client(server.url, timeout=120)
    options = {"task": "translate", "source": "de", "target": "sw"}
    text = "Das Wasser ist heute sehr kalt"
    r = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": text}],
        max_tokens=6,
        extra_body={"bridgex": options},
    )
    meta = r.model_extra["bridgex"]
    assert (meta["mode"], meta["route"], meta["decision_source"], meta["calls"]) == (
        "distilled",
        "distilled",
        "distilled",
        1,
    )
    assert meta["distilled"]["examples"] == 1 and meta["distilled"]["made_by"] == "en"
    assert "\n" not in r.choices[0].message.content
    stream = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": text}],
        max_tokens=6,
        stream=True,
        extra_body={"bridgex": options},
    )
    chunks = list(stream)
    assert chunks[0].model_extra["bridgex"]["mode"] == "distilled"
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    usage = {}
    for extra in ({"route": "direct"}, {"mode": "distilled"}):
        answer = httpx.post(
            server.url + "/v1/translate", timeout=300, json={"q": [text], **options, **extra, "max_tokens": 4}
        ).json()
        usage[answer["translations"][0]["mode"]] = answer["usage"]["prompt_tokens"]
    assert usage["distilled"] > usage["direct"]  # the set is in the prompt
    words = httpx.post(
        server.url + "/v1/translate",
        timeout=300,
        json={"q": ["maji"], "source": "sw", "target": "he", "mode": "distilled", "max_tokens": 4},
    ).json()["translations"][0]
    assert (words["mode"], words["distilled"]["examples"], words["calls"]) == ("distilled", 2, 1)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="tiny",
            messages=[{"role": "user", "content": "Habari za asubuhi"}],
            extra_body={
                "bridgex": {"task": "translate", "source": "sw", "target": "de", "mode": "distilled"}
            },
        )
    assert info.value.response.json()["error"]["code"] == "no_distilled_demonstrations"


def test_languages_and_errors(server):
    langs = httpx.get(server.url + "/v1/languages").json()
    assert {lang["code"] for lang in langs["languages"]} == {"de", "en", "he", "ja", "sw"}
    client = openai_client(server.url, timeout=120)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="tiny",
            messages=[{"role": "user", "content": "maji"}],
            extra_body={"bridgex": {"task": "word", "source": "sw", "target": "xx"}},
        )
    assert "unknown language 'xx'" in info.value.body["message"]
    with pytest.raises(openai.BadRequestError):  # vLLM's own 400 for a prompt longer than the model
        client.completions.create(model="tiny", prompt="maji " * 600, extra_body={"bridgex": WORD})


def test_proxy_reload_switches_the_bridge(vllm_tiny, serve_index, tmp_path):  # noqa: F811
    path = tmp_path / "index.duckdb"
    shutil.copy(serve_index, path)
    with running(create_app(Settings(index=str(path), upstream=vllm_tiny.url))) as proxy:
        client = openai_client(proxy.url, timeout=120)

        def bridge() -> str:
            r = client.chat.completions.create(
                model="tiny",
                messages=[{"role": "user", "content": "maji"}],
                max_tokens=4,
                extra_body={"bridgex": WORD},
            )
            return r.model_extra["bridgex"]["bridge"]

        assert bridge() == "en"
        write_index(path, bridges={("he", "sw"): [("de", 1.0)]})
        assert httpx.post(proxy.url + "/admin/reload").status_code == 200
        assert bridge() == "de"


def test_plugin_admin_is_closed_without_keys(vllm_tiny):  # noqa: F811
    """The real plugin without BRIDGEX_API_KEYS or vLLM's --api-key refuses /admin/reload (an OpenAI-shaped
    401); a reload with a key is tested in-process against vLLM's own AuthenticationMiddleware
    (tests/serve/test_serve_abuse.py)."""
    r = httpx.post(vllm_tiny.url + "/admin/reload", timeout=60)
    assert r.status_code == 401 and r.headers["content-type"].startswith("application/json")
    assert "BRIDGEX_API_KEYS" in r.json()["error"]["message"]


def test_plugin_closes_connections_that_send_nothing(vllm_tiny):  # noqa: F811
    """Inside `vllm serve`: vLLM's own uvicorn cuts connections that send no byte at the header deadline
    (BRIDGEX_HEADER_TIMEOUT, 10 s by default), as the middleware's guard of its protocol makes it."""
    socks = [socket.create_connection(("127.0.0.1", vllm_tiny.port), timeout=GENEROUS) for _ in range(50)]
    closed = wait_closed(socks)
    assert len(closed) == len(socks), f"{len(socks) - len(closed)} idle connections still open"
    assert httpx.get(vllm_tiny.url + "/v1/languages", timeout=GENEROUS).status_code == 200


@pytest.mark.parametrize(
    "bridgex", [WORD, dict(WORD, route="direct"), {"task": "word", "source": "de", "target": "ja"}]
)
def test_a_body_nested_too_deep_is_a_400_in_both_deployments(server, bridgex):
    body = {"model": "tiny", "messages": [{"role": "user", "content": "maji"}], "bridgex": bridgex}
    r = httpx.post(
        server.url + "/v1/chat/completions",
        content=with_nesting(body, 300),
        headers={"content-type": "application/json"},
        timeout=GENEROUS,
    )
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "nesting_too_deep"
