"""Mode `distilled` (issue 20): one direct call with the pair's distilled demonstrations in front, on request
(`bridgex.mode`) and for sentences of a pair that has a set; planning against a real DuckDB index, then end
to end through the proxy (stub upstream, real `openai` client). The real-vLLM path is in
test_serve_vllm.py."""

from __future__ import annotations

import httpx
import openai
import pytest
from click.testing import CliRunner
from serve_support import (
    openai_client,
    running,
    stub,  # noqa: F401 (fixture)
    write_index,
)

from bridgex_serve.app import create_app
from bridgex_serve.index import IndexLoadError, load_index
from bridgex_serve.options import RequestError, parse_options
from bridgex_serve.plan import Passthrough, Plan, plan_request
from bridgex_serve.prompts import bridge_prompt
from bridgex_serve.settings import Settings

SENTENCES = (("Habari za asubuhi", "בוקר טוב"), ("Asante sana", "תודה רבה"))
WORDS = (("mto", "נהר"),)
SETS = {
    ("sw", "he", "translate"): SENTENCES,
    ("sw", "he", "word"): WORDS,
    ("de", "en", "translate"): SENTENCES,
}
SENTENCE = "Maji ni baridi leo"


@pytest.fixture
def distilled_index(tmp_path):
    return write_index(tmp_path / "distilled.duckdb", distilled=SETS)


def plan(index, text=SENTENCE, distilled="auto", detect=lambda t: "sw", **raw) -> Plan | Passthrough:
    return plan_request(
        parse_options(raw),
        text,
        index=index,
        low_resource=index.low_resource(),
        detect=detect,
        uncalibrated="policy",
        distilled=distilled,
    )


# -- planning ---------------------------------------------------------------------------------------------


def test_mode_distilled_puts_the_set_before_the_gold_words_in_one_direct_call(distilled_index):
    index = load_index(distilled_index)
    p = plan(index, task="translate", target="he", mode="distilled")
    assert (p.mode, p.bridge, p.decision_source, p.one_call) == ("distilled", None, "client", True)
    assert p.demos[:2] == SENTENCES and len(p.demos) == 5  # 2 distilled + 3 gold words
    assert p.distilled.summary(3) == {
        "examples": 2,
        "gold": 3,
        "made_by": "en",
        "model": "tiny-test",
        "created_at": None,
    }
    prompt = bridge_prompt(p)
    assert prompt.startswith('Kiswahili:"Habari za asubuhi"→עברית:"בוקר טוב"\n')
    assert prompt.endswith(f'Kiswahili:"{SENTENCE}"→עברית:"')
    word = plan(index, text="maji", task="word", target="he", mode="distilled", shots=0)
    assert word.demos == WORDS and word.answer_tokens == 16


def test_sentences_of_a_pair_with_a_set_are_distilled_unless_the_setting_is_off(distilled_index):
    index = load_index(distilled_index)
    for task in ("translate", "auto"):
        p = plan(index, task=task, target="he")
        assert (p.mode, p.decision_source, p.policy) == ("distilled", "distilled", None)
    off = plan(index, task="translate", target="he", distilled="off")
    assert (off.mode, off.bridge, off.decision_source) == ("chain", "en", "prior")
    # words are never distilled unless asked (not measured), nor requests naming a mode, route or bridge
    assert plan(index, text="maji", task="word", target="he").mode == "chain"
    assert plan(index, task="translate", target="he", mode="two-step").mode == "two-step"
    assert isinstance(plan(index, task="translate", target="he", route="direct"), Passthrough)
    assert plan(index, task="translate", target="he", bridge="de").bridge == "de"
    # the low-resource gate still holds for the server's own choice (de → en is not low-resource) ...
    german = plan(index, task="translate", target="en", detect=lambda t: "de")
    assert isinstance(german, Passthrough) and german.label == "not_low_resource"
    # ... but a client asking for the mode gets it
    asked = plan(index, task="translate", target="en", detect=lambda t: "de", mode="distilled")
    assert asked.mode == "distilled"


def test_bad_distilled_requests_are_400s_that_say_what_to_do(distilled_index):
    index = load_index(distilled_index)
    for raw, param in (({"bridge": "en"}, "bridgex.bridge"), ({"route": "hsic"}, "bridgex.route")):
        with pytest.raises(RequestError, match=r"give no bridgex\.bridge or bridgex\.route") as err:
            parse_options({"mode": "distilled", **raw})
        assert err.value.param == param
    with pytest.raises(RequestError, match="no distilled demonstrations for he→sw") as err:
        plan(index, text="שלום עולם", detect=lambda t: "he", task="translate", target="sw", mode="distilled")
    assert err.value.code == "no_distilled_demonstrations" and "sw→he" in err.value.message
    with pytest.raises(RequestError, match="tasks word and translate, not chat"):
        plan(index, task="chat", mode="distilled")
    with pytest.raises(RequestError, match="not one of chain, two-step, distilled"):
        parse_options({"mode": "distil"})


def test_a_set_the_server_cannot_put_in_a_prompt_stops_the_load(tmp_path):
    assert load_index(write_index(tmp_path / "none.duckdb")).distilled_sets == {}
    quoted = write_index(tmp_path / "q.duckdb", distilled={("sw", "he", "translate"): [("a b", 'say "x"')]})
    with pytest.raises(IndexLoadError, match="a quote"):
        load_index(quoted)
    unknown = write_index(tmp_path / "u.duckdb", distilled={("sw", "xx", "translate"): SENTENCES})
    with pytest.raises(IndexLoadError, match="unknown pair sw→xx"):
        load_index(unknown)


def test_the_route_command_says_what_the_server_does(distilled_index):
    from index_builder.cli import main

    args = [str(distilled_index), "--source", "sw", "--target", "he", "--task", "translate"]
    out = CliRunner().invoke(main, ["route", *args])
    assert out.exit_code == 0 and "sw → he (translate): distilled — source distilled" in out.output
    off = CliRunner().invoke(main, ["route", *args, "--distilled", "off"])
    assert off.exit_code == 0 and ": en — source prior" in off.output


# -- through the proxy --------------------------------------------------------------------------------------


def test_distilled_through_the_proxy_plain_streamed_and_batched(distilled_index, stub):  # noqa: F811
    with running(create_app(Settings(index=str(distilled_index), upstream=stub.url))) as proxy:
        client = openai_client(proxy.url)
        options = {"task": "translate", "source": "sw", "target": "he", "mode": "distilled"}
        r = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": SENTENCE}], extra_body={"bridgex": options}
        )
        meta = r.model_extra["bridgex"]
        assert (meta["mode"], meta["route"], meta["calls"], meta["bridge"]) == (
            "distilled",
            "distilled",
            1,
            None,
        )
        assert meta["distilled"]["examples"] == 2 and meta["distilled"]["gold"] == 3
        assert r.choices[0].message.content == f"<he> {SENTENCE}"
        sent = stub.requests[-1]["body"]
        assert sent["prompt"].startswith('Kiswahili:"Habari za asubuhi"→עברית:"בוקר טוב"\n')
        assert len(stub.requests) == 1  # one upstream call

        stream = client.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": SENTENCE}],
            extra_body={"bridgex": options},
            stream=True,
        )
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert text == f"<he> {SENTENCE}"

        raw = httpx.post(
            proxy.url + "/v1/translate",
            json={"q": [SENTENCE, "Habari yako"], "source": "sw", "target": "he", "model": "m"},
        ).json()
        assert [t["mode"] for t in raw["translations"]] == ["distilled", "distilled"]
        assert raw["translations"][0]["distilled"]["made_by"] == "en"
        assert raw["translations"][0]["decision_source"] == "distilled"

        pairs = httpx.get(proxy.url + "/v1/languages").json()["pairs"]
        sw_he = next(p for p in pairs if (p["source"], p["target"]) == ("sw", "he"))
        assert (
            set(sw_he["distilled"]) == {"word", "translate"} and sw_he["distilled"]["word"]["examples"] == 1
        )

        with pytest.raises(openai.BadRequestError) as err:
            client.chat.completions.create(
                model="m",
                messages=[{"role": "user", "content": "שלום עולם"}],
                extra_body={
                    "bridgex": {"task": "translate", "source": "he", "target": "sw", "mode": "distilled"}
                },
            )
        body = err.value.response.json()["error"]
        assert body["code"] == "no_distilled_demonstrations" and body["param"] == "bridgex.mode"
