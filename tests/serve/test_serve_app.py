"""The proxy against a stub OpenAI upstream on loopback, driven by the real `openai` client."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
from serve_support import (
    STUB_REPLY,
    StubUpstream,
    free_port,
    index_path,  # noqa: F401 (fixture)
    openai_client,
    running,
    stub,  # noqa: F401 (fixture)
    write_index,
)

from bridgex_serve.app import create_app
from bridgex_serve.index import IndexLoadError
from bridgex_serve.settings import Settings

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def proxy(stub, index_path):  # noqa: F811
    """The proxy under the paper's rule for uncalibrated pairs (HSIC rank-1), so that qa and chat, which
    the route policy never bridges, are bridged here (the policy: tests/serve/test_serve_routing.py)."""
    settings = Settings(index=str(index_path), upstream=stub.url, uncalibrated="hsic")
    with running(create_app(settings)) as server:
        server.stub = stub
        server.index_path = index_path
        yield server


def bridgex(r) -> dict:
    return r.model_extra["bridgex"]


def test_a_request_without_bridgex_passes_through_byte_for_byte(proxy):
    raw = b'{"model":"m","messages":[{"role":"user","content":"hi"}],  "temperature":0.5}'
    r = httpx.post(
        proxy.url + "/v1/chat/completions", content=raw, headers={"content-type": "application/json"}
    )
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == STUB_REPLY
    assert proxy.stub.requests[-1]["raw"] == raw


def test_unchanged_openai_clients_work_for_chat_completions_and_models(proxy):
    client = openai_client(proxy.url)
    r = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content == STUB_REPLY
    assert [m.id for m in client.models.list()] == ["stub-model"]
    c = client.completions.create(model="m", prompt="Once upon", max_tokens=5)
    assert c.choices[0].text == " completion from the stub"


def test_streaming_passes_through(proxy):
    client = openai_client(proxy.url)
    stream = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream) == STUB_REPLY


def test_word_task_in_chat_returns_only_the_target_word_and_metadata(proxy):
    client = openai_client(proxy.url)
    r = client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "maji"}],
        extra_body={"bridgex": {"task": "word", "source": "sw", "target": "he"}},
    )
    assert r.choices[0].message.content == "מים"
    meta = bridgex(r)
    assert (meta["source"], meta["target"], meta["bridge"], meta["mode"], meta["calls"]) == (
        "sw",
        "he",
        "en",
        "chain",
        1,
    )
    assert meta["bridge_text"] == "water" and meta["probability"] == 0.7
    sent = proxy.stub.requests[-1]
    assert "bridgex" not in sent["body"] and sent["path"] == "/v1/completions"
    assert sent["body"]["prompt"].endswith('Kiswahili:"maji"→English:"')
    assert r.usage.total_tokens == 12


def test_bridgex_headers_are_set(proxy):
    r = httpx.post(
        proxy.url + "/v1/completions",
        json={"model": "m", "prompt": "maji", "bridgex": {"task": "word", "source": "sw", "target": "he"}},
    )
    assert r.headers["x-bridgex-bridge"] == "en" and r.headers["x-bridgex-source"] == "sw"
    assert r.json()["choices"][0]["text"] == "מים"


@pytest.mark.parametrize("mode, calls", [("chain", 1), ("two-step", 2)])
@pytest.mark.parametrize("endpoint", ["chat", "completions"])
def test_translate_task_in_both_modes(proxy, mode, calls, endpoint):
    client = openai_client(proxy.url)
    body = {"bridgex": {"task": "translate", "source": "sw", "target": "he", "mode": mode}}
    text = "Habari ya asubuhi"
    if endpoint == "chat":
        r = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": text}], extra_body=body
        )
        answer = r.choices[0].message.content
    else:
        r = client.completions.create(model="m", prompt=text, extra_body=body)
        answer = r.choices[0].text
    assert answer == f"<he> {text}"
    assert bridgex(r)["bridge_text"] == f"<en> {text}" and bridgex(r)["calls"] == calls
    assert r.usage.total_tokens == 12 * calls


@pytest.mark.parametrize("mode", ["chain", "two-step"])
def test_chat_task_renders_the_turn_into_the_bridge_and_answers_in_the_users_language(proxy, mode):
    client = openai_client(proxy.url)
    r = client.chat.completions.create(
        model="m",
        messages=[{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Habari yako leo?"}],
        extra_body={"bridgex": {"task": "chat", "source": "sw", "mode": mode}},
    )
    assert r.choices[0].message.content == "<sw reply> Habari yako leo?"
    meta = bridgex(r)
    assert (meta["task"], meta["target"], meta["bridge"], meta["bridge_text"]) == (
        "chat",
        "sw",
        "en",
        "<en> Habari yako leo?",
    )
    sent = proxy.stub.requests[-1]["body"]
    assert sent["messages"][0] == {"role": "system", "content": "Be kind."}
    assert sent["continue_final_message"] is True


@pytest.mark.parametrize("mode", ["chain", "two-step"])
def test_qa_task_renders_the_passage_and_answers(proxy, mode):
    client = openai_client(proxy.url)
    r = client.completions.create(
        model="m",
        prompt="Maji ni baridi sana leo.\n\nJe, maji ni baridi?",
        extra_body={"bridgex": {"task": "qa", "source": "sw", "mode": mode}},
    )
    meta = r.model_extra["bridgex"]
    assert meta["task"] == "qa" and meta["bridge_text"] == "<en> Maji ni baridi sana leo."
    assert r.choices[0].text == "<sw answer> Maji ni baridi sana leo."
    assert 'Question:"Je, maji ni baridi?"' in proxy.stub.requests[-1]["body"]["prompt"]


def test_qa_in_chat_goes_through_the_chat_template(proxy):
    client = openai_client(proxy.url)
    r = client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "Maji ni baridi.\n\nJe, maji ni baridi?"}],
        extra_body={"bridgex": {"task": "qa", "source": "sw"}},
    )
    assert bridgex(r)["bridge_text"] == "<en> Maji ni baridi."
    assert proxy.stub.requests[-1]["path"] == "/v1/chat/completions"


def test_auto_detects_swahili_and_bridges(proxy):
    client = openai_client(proxy.url)
    text = "Habari ya asubuhi rafiki yangu, ninapenda kusoma vitabu vya historia kila siku"
    r = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": text}], extra_body={"bridgex": {"target": "he"}}
    )
    meta = bridgex(r)
    assert (meta["source"], meta["task"], meta["bridge"]) == ("sw", "translate", "en")


def test_a_high_resource_pair_passes_through_with_the_field_stripped(proxy):
    client = openai_client(proxy.url)
    r = client.chat.completions.with_raw_response.create(
        model="m",
        messages=[{"role": "user", "content": "Guten Morgen, wie geht es dir heute?"}],
        extra_body={"bridgex": {"source": "de", "target": "en"}},
    )
    assert r.headers["x-bridgex-bridged"] == "false"
    assert r.parse().choices[0].message.content == STUB_REPLY
    assert "bridgex" not in proxy.stub.requests[-1]["body"]


def test_streaming_a_bridged_request_yields_the_answer_and_metadata(proxy):
    client = openai_client(proxy.url)
    stream = client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "maji"}],
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"bridgex": {"task": "word", "source": "sw", "target": "he"}},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "מים"
    assert chunks[0].model_extra["bridgex"]["bridge"] == "en"
    assert chunks[-1].usage.total_tokens == 12


def test_batch_translate_answers_in_order_with_batched_upstream_calls(proxy):
    texts = ["maji", "Habari ya asubuhi", "Januari", "kilogramu"] * 5
    r = httpx.post(proxy.url + "/v1/translate", json={"q": texts, "source": "sw", "target": "he"}, timeout=30)
    assert r.status_code == 200
    out = r.json()["translations"]
    assert [t["text"] for t in out[:4]] == ["מים", "<he> Habari ya asubuhi", "ינואר", "קילוגרם"]
    assert all(t["bridge"] == "en" for t in out)
    batched = [q for q in proxy.stub.requests if isinstance(q["body"]["prompt"], list)]
    assert batched and r.json()["model"] == "stub-model"


def test_batch_translate_of_a_high_resource_pair_is_direct(proxy):
    r = httpx.post(
        proxy.url + "/v1/translate", json={"q": ["Montag"], "source": "de", "target": "en", "model": "m"}
    )
    assert r.json()["translations"][0]["bridge"] is None
    assert r.json()["translations"][0]["mode"] == "direct"


def test_languages_lists_the_index(proxy):
    body = httpx.get(proxy.url + "/v1/languages").json()
    assert {lang["code"] for lang in body["languages"]} == {"de", "en", "he", "ja", "sw"}
    pairs = {(p["source"], p["target"]): p for p in body["pairs"]}
    sw_he = pairs[("sw", "he")]
    assert sw_he["bridges"] == [{"bridge": "en", "probability": 0.7}, {"bridge": "de", "probability": 0.3}]
    # the route policy's route per task, as the index stores it (tests/serve_support.rank1_policy)
    assert sw_he["policy"] == sw_he["translate_policy"]
    assert (sw_he["policy"]["route"], sw_he["policy"]["origin"], sw_he["policy"]["n"]) == ("en", "prior", 0)
    assert sw_he["policy"]["expected_gain"] == 6.0
    # auto, and the test index names no known family
    assert body["prompt_style"] == {"word": "completion", "translate": "completion"}


@pytest.mark.parametrize(
    "payload, param",
    [
        ({"bridgex": {"task": "word", "source": "sw", "target": "xx"}}, "bridgex.target"),
        ({"bridgex": {"task": "poem"}}, "bridgex.task"),
        ({"bridgex": {"task": "word", "source": "sw"}}, "bridgex.target"),
        ({"bridgex": {"task": "word", "target": "he"}, "n": 3}, "n"),
    ],
)
def test_bad_bridgex_requests_are_openai_shaped_400s(proxy, payload, param):
    client = openai_client(proxy.url)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "maji"}], extra_body=payload
        )
    assert info.value.status_code == 400 and info.value.body["param"] == param


def test_invalid_json_with_bridgex_is_a_400(proxy):
    r = httpx.post(proxy.url + "/v1/chat/completions", content=b'{"bridgex": ', headers={"content-type": "x"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


def test_batch_translate_validates_its_body(proxy):
    assert httpx.post(proxy.url + "/v1/translate", json={"q": [], "target": "he"}).status_code == 400
    assert httpx.post(proxy.url + "/v1/translate", json={"q": ["maji"], "target": "zz"}).status_code == 400
    assert httpx.post(proxy.url + "/v1/translate", json={"q": ["maji"]}).status_code == 400


def test_upstream_errors_of_bridged_calls_are_relayed(proxy):
    r = httpx.post(
        proxy.url + "/v1/completions",
        json={
            "model": "refuse",
            "prompt": "maji",
            "bridgex": {"task": "word", "source": "sw", "target": "he"},
        },
    )
    assert r.status_code == 400 and r.json()["error"]["message"] == "refused"


def test_unknown_paths_are_openai_shaped_404s(proxy):
    r = httpx.get(proxy.url + "/v1/nothing")
    assert r.status_code == 404 and "error" in r.json()


def test_bad_key_is_a_401_and_a_good_key_is_not_forwarded(index_path):  # noqa: F811
    upstream = StubUpstream(api_key="upstream-secret")
    with running(upstream.app) as up:
        settings = Settings(
            index=str(index_path),
            upstream=up.url,
            api_keys=("client-key",),
            upstream_api_key="upstream-secret",
        )
        with running(create_app(settings)) as server:
            with pytest.raises(openai.AuthenticationError):
                openai_client(server.url, api_key="wrong").models.list()
            r = openai_client(server.url, api_key="client-key").chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}]
            )
            assert r.choices[0].message.content == STUB_REPLY
            assert upstream.requests[-1]["headers"]["authorization"] == "Bearer upstream-secret"
            assert httpx.get(server.url + "/health").status_code == 200  # liveness needs no key


def test_upstream_refused_is_a_502(index_path):  # noqa: F811
    settings = Settings(index=str(index_path), upstream=f"http://127.0.0.1:{free_port()}")
    with running(create_app(settings)) as server:
        client = openai_client(server.url)
        with pytest.raises(openai.APIStatusError) as info:
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
        assert info.value.status_code == 502
        with pytest.raises(openai.APIStatusError) as info:
            client.chat.completions.create(
                model="m",
                messages=[{"role": "user", "content": "maji"}],
                extra_body={"bridgex": {"source": "sw", "target": "he"}},
            )
        assert info.value.status_code == 502
        assert httpx.get(server.url + "/ready").status_code == 503


def test_upstream_timeout_is_a_504(index_path):  # noqa: F811
    upstream = StubUpstream(delay=1.5)
    with running(upstream.app) as up:
        settings = Settings(index=str(index_path), upstream=up.url, upstream_timeout=0.5)
        with running(create_app(settings)) as server:
            r = httpx.post(
                server.url + "/v1/chat/completions",
                timeout=10,
                json={"model": "slow", "messages": [{"role": "user", "content": "hi"}]},
            )
            assert r.status_code == 504 and r.json()["error"]["type"] == "upstream_timeout"
            r = httpx.post(
                server.url + "/v1/completions",
                timeout=10,
                json={
                    "model": "slow",
                    "prompt": "maji",
                    "bridgex": {"task": "word", "source": "sw", "target": "he"},
                },
            )
            assert r.status_code == 504


def test_health_ready_and_metrics(proxy):
    assert httpx.get(proxy.url + "/health").json() == {"status": "ok"}
    assert httpx.get(proxy.url + "/ready").json()["status"] == "ready"
    httpx.post(
        proxy.url + "/v1/completions",
        json={"model": "m", "prompt": "maji", "bridgex": {"task": "word", "source": "sw", "target": "he"}},
    )
    text = httpx.get(proxy.url + "/metrics").text
    assert 'bridgex_rewrites_total{bridge="en",mode="chain",task="word"} 1.0' in text
    assert "bridgex_upstream_latency_seconds_bucket" in text


def test_admin_reload_swaps_the_index_and_keeps_the_old_one_on_failure(proxy):
    write_index(proxy.index_path, bridges={("he", "sw"): [("de", 1.0)]})
    r = httpx.post(proxy.url + "/admin/reload")
    assert r.status_code == 200
    client = openai_client(proxy.url)
    r = client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "maji"}],
        extra_body={"bridgex": {"task": "word", "source": "sw", "target": "he"}},
    )
    assert bridgex(r)["bridge"] == "de"
    proxy.index_path.write_bytes(b"garbage" * 1000)
    r = httpx.post(proxy.url + "/admin/reload")
    assert r.status_code == 422 and "previous index stays loaded" in r.json()["error"]["message"]
    assert httpx.get(proxy.url + "/v1/languages").status_code == 200


def test_a_missing_index_stops_start_up(tmp_path):
    with pytest.raises(IndexLoadError, match="not found"):
        create_app(Settings(index=str(tmp_path / "missing.duckdb")))


def _serve_cmd(*args: str) -> list[str]:
    return [sys.executable, "-c", "from bridgex_serve.cli import main; main()", *args]


def test_cli_refuses_to_start_on_a_corrupt_index_with_one_clear_line(tmp_path):
    bad = tmp_path / "bad.duckdb"
    bad.write_bytes(b"x" * 4096)
    result = subprocess.run(_serve_cmd("--index", str(bad)), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert (
        result.stderr.strip().startswith("bridgex-serve: cannot start:") and "Traceback" not in result.stderr
    )


def test_cli_serves_and_reloads_on_sighup(stub, tmp_path):  # noqa: F811
    path = write_index(tmp_path / "i.duckdb")
    port = free_port()
    env = dict(os.environ, BRIDGEX_UPSTREAM=stub.url, BRIDGEX_PORT=str(port))
    proc = subprocess.Popen(_serve_cmd("--index", str(path)), env=env, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        ceiling = time.monotonic() + 120  # a generous start-up on a busy machine
        while time.monotonic() < ceiling:
            try:
                if httpx.get(url + "/health").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        payload = {
            "model": "m",
            "prompt": "maji",
            "bridgex": {"task": "word", "source": "sw", "target": "he"},
        }
        assert httpx.post(url + "/v1/completions", json=payload).json()["bridgex"]["bridge"] == "en"
        write_index(path, bridges={("he", "sw"): [("de", 1.0)]})
        proc.send_signal(signal.SIGHUP)
        ceiling = time.monotonic() + 60
        while time.monotonic() < ceiling:
            time.sleep(0.05)
            if httpx.post(url + "/v1/completions", json=payload).json()["bridgex"]["bridge"] == "de":
                break
        else:
            pytest.fail("SIGHUP did not reload the index")
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_proxy_never_imports_torch():
    code = (
        "import sys, json; from bridgex_serve import app, cli, vllm_middleware, index, service; "
        "print(json.dumps('torch' in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) is False
