"""Routing: calibrated decisions, the uncalibrated setting, client overrides, and the copy fallback end to end
through the proxy (stub upstream, real DuckDB index, real `openai` client)."""

from __future__ import annotations

import duckdb
import httpx
import pytest
from click.testing import CliRunner
from serve_support import (
    decision,
    openai_client,
    running,
    stub,  # noqa: F401 (fixture)
    write_index,
)

from bridgex_serve.app import create_app
from bridgex_serve.index import IndexLoadError, load_index
from bridgex_serve.options import Options
from bridgex_serve.plan import Passthrough, Plan, plan_request
from bridgex_serve.settings import Settings

DECISIONS = [
    decision("sw", "he", "direct"),  # calibrated: direct beats every bridge for sw → he
    decision("he", "sw", "de"),  # calibrated: German, not HSIC's English, for he → sw
    decision("sw", "he", "direct", task="translate"),  # the same on sentences
    decision("he", "sw", "de", task="translate"),
]


@pytest.fixture
def calibrated(tmp_path):
    return write_index(tmp_path / "calibrated.duckdb", decisions=DECISIONS)


def plan(index, text="maji", uncalibrated="hsic", detect=lambda t: "sw", **options) -> Plan | Passthrough:
    return plan_request(
        Options(**options),
        text,
        index=index,
        low_resource=index.low_resource(),
        detect=detect,
        uncalibrated=uncalibrated,
    )


# -- planning against the in-memory index -------------------------------------------------------------


def test_the_index_loads_decisions_and_copes_without_the_table(tmp_path, calibrated):
    index = load_index(calibrated)
    assert index.decision("sw", "he").decision == "direct" and index.decision("he", "sw").bridge == "de"
    assert index.decision("de", "sw") is None
    assert load_index(write_index(tmp_path / "plain.duckdb")).decisions == {}
    assert load_index(write_index(tmp_path / "empty.duckdb", decisions=[])).decisions == {}


def test_a_decision_the_server_cannot_follow_stops_the_load(tmp_path):
    path = write_index(tmp_path / "bad.duckdb", decisions=[decision("sw", "he", "xx")])
    with pytest.raises(IndexLoadError, match="'xx', which is not a bridge language"):
        load_index(path)


def test_calibrated_direct_gives_the_direct_word_prompt(calibrated):
    p = plan(load_index(calibrated), task="word", target="he")
    assert (p.mode, p.bridge, p.decision_source, p.calibration.decision) == (
        "direct",
        None,
        "calibrated",
        "direct",
    )
    assert p.demos == (("kilogramu", "קילוגרם"), ("Januari", "ינואר"), ("Februari", "פברואר"))


def test_calibrated_direct_passes_other_tasks_through_unchanged(tmp_path):
    path = write_index(tmp_path / "i.duckdb", decisions=[decision("sw", "he", "direct", task="translate")])
    p = plan(load_index(path), text="Habari ya asubuhi", task="translate", target="he")
    assert isinstance(p, Passthrough) and p.label == "calibrated_direct"
    assert p.decision_source == "calibrated"


def test_each_task_follows_the_decision_of_its_task(tmp_path):
    """Single words follow the word decision; sentences, chat and qa the translate one; a task without a
    decision of its own takes the uncalibrated route (never the other task's decision)."""
    rows = [decision("sw", "he", "direct"), decision("sw", "he", "de", task="translate")]
    index = load_index(write_index(tmp_path / "i.duckdb", decisions=rows))
    assert index.decision("sw", "he").decision == "direct"
    assert index.decision("sw", "he", "translate").decision == "de"
    word = plan(index, task="word", target="he")
    assert (word.bridge, word.decision_source) == (None, "calibrated")
    sentence = "Habari ya asubuhi"
    for task in ("translate", "auto"):
        p = plan(index, text=sentence, task=task, target="he")
        assert (p.bridge, p.decision_source, p.calibration.decision) == ("de", "calibrated", "de")
    assert plan(index, text="maji", task="auto", target="he").decision_source == "calibrated"
    assert plan(index, text="maji", task="auto", target="he").bridge is None  # one word: the word decision
    # only a word decision: a sentence takes the uncalibrated route (HSIC rank 1), not the word's direct
    only_word = load_index(write_index(tmp_path / "w.duckdb", decisions=[decision("sw", "he", "direct")]))
    p = plan(only_word, text=sentence, task="translate", target="he")
    assert (p.bridge, p.decision_source) == ("en", "hsic")


def test_an_old_routing_table_without_task_is_read_as_word_decisions(tmp_path):
    path = write_index(tmp_path / "old.duckdb")
    con = duckdb.connect(str(path))
    con.execute(
        "CREATE TABLE routing_decisions (source VARCHAR NOT NULL, target VARCHAR NOT NULL, decision VARCHAR "
        "NOT NULL, bridge VARCHAR, direct_accuracy DOUBLE, bridge_accuracy DOUBLE, n INTEGER, gain DOUBLE, "
        "ci_low DOUBLE, ci_high DOUBLE, p_value DOUBLE, test VARCHAR, candidates INTEGER, model VARCHAR, "
        "endpoint VARCHAR, created_at TIMESTAMP, PRIMARY KEY (source, target))"
    )
    con.execute("INSERT INTO routing_decisions (source, target, decision) VALUES ('he', 'sw', 'de')")
    con.close()
    index = load_index(path)
    assert index.decision("he", "sw").bridge == "de" and index.decision("he", "sw", "translate") is None
    from bridgex_index.results import ResultStore
    from bridgex_index.store import write_routing_decisions

    with ResultStore(path).connect() as con:  # a write migrates the table: old rows are word decisions
        write_routing_decisions(con, [decision("he", "sw", "direct", task="translate")])
    index = load_index(path)
    assert index.decision("he", "sw").bridge == "de"
    assert index.decision("he", "sw", "translate").decision == "direct"


def test_calibrated_bridge_wins_over_the_hsic_ranking(calibrated):
    p = plan(load_index(calibrated), text="מים", detect=lambda t: "he", task="word", target="sw")
    assert (p.bridge, p.probability, p.decision_source) == ("de", 0.3, "calibrated")
    assert p.demos[0] == ("קילוגרם", "Kilogramm", "kilogramu")


@pytest.mark.parametrize(
    "setting, expected",
    [("hsic", ("en", "chain", "hsic")), ("direct", (None, "direct", "default"))],
)
def test_uncalibrated_pairs_follow_the_setting(tmp_path, setting, expected):
    index = load_index(write_index(tmp_path / "i.duckdb"))
    p = plan(index, task="word", target="he", uncalibrated=setting)
    assert (p.bridge, p.mode, p.decision_source) == expected


def test_uncalibrated_direct_passes_chat_through(tmp_path):
    index = load_index(write_index(tmp_path / "i.duckdb"))
    p = plan(index, text="Habari yako leo?", task="chat", uncalibrated="direct")
    assert isinstance(p, Passthrough) and p.label == "uncalibrated_direct"
    assert plan(index, text="Habari yako leo?", task="chat").bridge == "en"  # hsic: bridged


def test_an_explicit_client_bridge_still_wins(calibrated):
    p = plan(load_index(calibrated), task="word", target="he", bridge="de")
    assert (p.bridge, p.mode, p.decision_source, p.calibration) == ("de", "chain", "client", None)


def test_pairs_without_a_low_resource_language_pass_through_whatever_their_decision(tmp_path):
    index = load_index(write_index(tmp_path / "i.duckdb", decisions=[decision("de", "en", "he")]))
    p = plan(index, text="Wasser", detect=lambda t: "de", task="word", target="en")
    assert isinstance(p, Passthrough) and p.label == "not_low_resource"


# -- through the proxy ----------------------------------------------------------------------------------


@pytest.fixture
def proxy(stub, calibrated):  # noqa: F811
    with running(create_app(Settings(index=str(calibrated), upstream=stub.url))) as server:
        server.stub = stub
        yield server


def word(client, text: str, source: str = "sw", target: str = "he", **options):
    return client.chat.completions.with_raw_response.create(
        model="m",
        messages=[{"role": "user", "content": text}],
        extra_body={"bridgex": {"task": "word", "source": source, "target": target, **options}},
    )


def test_the_proxy_answers_a_calibrated_direct_pair_with_the_direct_prompt(proxy):
    raw = word(openai_client(proxy.url), "maji")
    r = raw.parse()
    meta = r.model_extra["bridgex"]
    assert r.choices[0].message.content == "מים"
    assert (meta["route"], meta["decision_source"], meta["bridge"], meta["mode"], meta["calls"]) == (
        "direct",
        "calibrated",
        None,
        "direct",
        1,
    )
    assert meta["calibration"]["decision"] == "direct"
    assert proxy.stub.requests[-1]["body"]["prompt"].endswith('Kiswahili:"maji"→עברית:"')
    assert raw.headers["x-bridgex-bridged"] == "false" and raw.headers["x-bridgex-route"] == "direct"
    assert raw.headers["x-bridgex-decision-source"] == "calibrated"


def test_the_proxy_follows_a_calibrated_bridge_and_a_client_override(proxy):
    client = openai_client(proxy.url)
    meta = word(client, "מים", "he", "sw").parse().model_extra["bridgex"]
    assert (meta["bridge"], meta["decision_source"], meta["route"]) == ("de", "calibrated", "bridge")
    meta = word(client, "maji", bridge="en").parse().model_extra["bridgex"]
    assert (meta["bridge"], meta["decision_source"]) == ("en", "client")


def test_a_calibrated_direct_sentence_is_passed_through_unchanged(proxy):
    r = httpx.post(
        proxy.url + "/v1/completions",
        json={"model": "m", "prompt": "Habari ya asubuhi", "bridgex": {"source": "sw", "target": "he"}},
    )
    assert (
        r.headers["x-bridgex-bridged"] == "false" and r.headers["x-bridgex-decision-source"] == "calibrated"
    )
    assert proxy.stub.requests[-1]["body"] == {"model": "m", "prompt": "Habari ya asubuhi"}
    assert (
        'bridgex_passthroughs_total{reason="calibrated_direct"} 1.0' in httpx.get(proxy.url + "/metrics").text
    )


def test_languages_show_the_decisions(proxy):
    pairs = httpx.get(proxy.url + "/v1/languages").json()["pairs"]
    he_sw = next(p for p in pairs if (p["source"], p["target"]) == ("he", "sw"))
    assert he_sw["decision"]["decision"] == "de" and he_sw["decision"]["gain"] == 0.3


@pytest.mark.parametrize("mode, calls", [("chain", 2), ("two-step", 3)])
@pytest.mark.parametrize(
    "text, reason, bridged, answer",
    [
        ("kitabu", "bridge_is_source", "kitabu", "ספר"),
        ("rafiki", "answer_is_source", "Rafiki", "חבר"),
        ("simu", "answer_is_bridge", "Phone.", "טלפון"),
    ],
)
def test_a_copy_is_answered_by_the_direct_route_and_counted(
    stub,  # noqa: F811
    tmp_path,
    mode,
    calls,
    text,
    reason,
    bridged,
    answer,
):
    path = write_index(tmp_path / "i.duckdb")  # uncalibrated: HSIC's English bridge
    with running(create_app(Settings(index=str(path), upstream=stub.url))) as proxy:
        raw = word(openai_client(proxy.url), text, mode=mode)
        r = raw.parse()
        meta = r.model_extra["bridgex"]
        assert r.choices[0].message.content == answer
        assert (meta["bridge"], meta["route"], meta["fallback"], meta["fallback_reason"]) == (
            "en",
            "direct",
            "copy",
            reason,
        )
        assert (meta["bridged_answer"], meta["calls"], len(stub.requests)) == (bridged, calls, calls)
        assert r.usage.total_tokens == 12 * calls
        direct = stub.requests[-1]["body"]["prompt"]
        assert direct.endswith(f'Kiswahili:"{text}"→עברית:"') and "English" not in direct
        assert raw.headers["x-bridgex-fallback"] == "copy" and raw.headers["x-bridgex-bridged"] == "false"
        metrics = httpx.get(proxy.url + "/metrics").text
        assert (
            f'bridgex_copy_fallbacks_total{{bridge="en",mode="{mode}",reason="{reason}",task="word"}} 1.0'
            in metrics
        )


def test_the_copy_fallback_is_off_with_the_setting(stub, tmp_path):  # noqa: F811
    path = write_index(tmp_path / "i.duckdb")
    settings = Settings.from_env({"BRIDGEX_COPY_FALLBACK": "0"}, index=str(path), upstream=stub.url)
    with running(create_app(settings)) as proxy:
        r = word(openai_client(proxy.url), "kitabu").parse()
        assert r.choices[0].message.content == "kitabu" and r.model_extra["bridgex"]["fallback"] is None
        assert len(stub.requests) == 1


def test_batch_translation_falls_back_per_text(stub, tmp_path):  # noqa: F811
    path = write_index(tmp_path / "i.duckdb")
    with running(create_app(Settings(index=str(path), upstream=stub.url))) as proxy:
        r = httpx.post(
            proxy.url + "/v1/translate",
            json={"q": ["maji", "kitabu"], "source": "sw", "target": "he", "model": "m"},
        )
        out = r.json()["translations"]
        assert [t["text"] for t in out] == ["מים", "ספר"]
        assert [(t["route"], t["fallback"]) for t in out] == [("bridge", None), ("direct", "copy")]


def test_settings_read_the_new_environment_variables():
    env = {"BRIDGEX_COPY_FALLBACK": "off", "BRIDGEX_UNCALIBRATED": "Direct"}
    settings = Settings.from_env(env, index="x")
    assert (settings.copy_fallback, settings.uncalibrated) == (False, "direct")
    assert Settings.from_env({}, index="x").copy_fallback is True
    with pytest.raises(ValueError, match="BRIDGEX_COPY_FALLBACK"):
        Settings.from_env({"BRIDGEX_COPY_FALLBACK": "maybe"})
    with pytest.raises(ValueError, match="uncalibrated"):
        Settings.from_env({"BRIDGEX_UNCALIBRATED": "random"})


def test_cli_options_reach_the_settings(monkeypatch, tmp_path):
    import uvicorn

    from bridgex_serve.cli import main

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(settings=app.state.proxy.settings))
    path = write_index(tmp_path / "i.duckdb")
    result = CliRunner().invoke(
        main, ["--index", str(path), "--no-copy-fallback", "--uncalibrated", "direct"]
    )
    assert result.exit_code == 0, result.output
    assert (seen["settings"].copy_fallback, seen["settings"].uncalibrated) == (False, "direct")
    monkeypatch.setenv("BRIDGEX_UNCALIBRATED", "direct")
    CliRunner().invoke(main, ["--index", str(path)])
    assert (seen["settings"].copy_fallback, seen["settings"].uncalibrated) == (True, "direct")


def test_reload_picks_up_new_decisions(proxy, calibrated):
    client = openai_client(proxy.url)
    assert word(client, "maji").parse().model_extra["bridgex"]["route"] == "direct"
    con = duckdb.connect(str(calibrated))
    con.execute("DELETE FROM routing_decisions WHERE source = 'sw'")
    con.close()
    assert httpx.post(proxy.url + "/admin/reload").status_code == 200
    meta = word(client, "maji").parse().model_extra["bridgex"]
    # no decision left: the route policy's route (the index's policy routes sw→he through en)
    assert (meta["route"], meta["bridge"], meta["decision_source"]) == ("bridge", "en", "prior")
    assert meta["policy"]["route"] == "en" and meta["policy"]["n"] == 0
