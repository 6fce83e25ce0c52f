"""The pure rewrite core and the async orchestration, with an in-memory index and a scripted upstream."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import ClassVar

import pytest

from bridgex_serve import rewrite
from bridgex_serve.orchestrate import UpstreamError, run_plans
from bridgex_serve.rewrite import (
    ClientRequest,
    Options,
    Passthrough,
    Plan,
    RequestError,
    client_request,
    parse_options,
    plan_request,
)


class FakeIndex:
    names: ClassVar[dict[str, str]] = {"en": "English", "sw": "Kiswahili", "he": "עברית", "de": "Deutsch"}
    decisions: ClassVar[dict] = {}

    def has_language(self, code):
        return code in self.names

    def prompt_name(self, code):
        return self.names[code]

    def language_codes(self):
        return sorted(self.names)

    def best_bridge(self, source, target):
        if {source, target} == {"sw", "he"} or source == target == "sw":
            return ("en", 0.7)
        return None

    def bridge_probability(self, source, target, bridge):
        return 0.2 if bridge == "de" and {source, target} == {"sw", "he"} else None

    def decision(self, source, target):
        return self.decisions.get((source, target))

    def demonstrations(self, langs, k, exclude=None):
        rows = [("maji", "water", "מים"), ("Januari", "January", "ינואר"), ("Jumatatu", "Monday", "יום שני")]
        rows = [r[: len(langs)] if len(langs) == 3 else (r[0], r[2]) for r in rows]
        return tuple(r for r in rows if r[0] != exclude)[:k]


LOW = frozenset({"sw", "he"})


def plan(text="kitabu", detect=lambda t: "sw", **options) -> Plan | Passthrough:
    return plan_request(Options(**options), text, index=FakeIndex(), low_resource=LOW, detect=detect)


def test_word_plan_uses_the_index_bridge_and_three_probe_demonstrations():
    p = plan(task="word", target="he")
    assert (p.task, p.source, p.target, p.bridge, p.mode, p.probability) == (
        "word",
        "sw",
        "he",
        "en",
        "chain",
        0.7,
    )
    assert len(p.demos) == 3


def test_prompt_is_the_bli_chain_ending_in_colon_quote():
    p = plan(task="word", target="he", shots=1)
    assert (
        rewrite.bridge_prompt(p)
        == 'Kiswahili:"maji"→English:"water"→עברית:"מים"\nKiswahili:"kitabu"→English:"'
    )
    assert rewrite.answer_prompt(p, "book").endswith('Kiswahili:"kitabu"→English:"book"→עברית:"')


def test_the_query_word_is_never_its_own_demonstration():
    p = plan(text="maji", task="word", target="he", shots=2)
    assert all(d[0] != "maji" for d in p.demos)


def test_auto_picks_word_for_one_word_and_translate_for_a_sentence_and_chat_without_target():
    assert plan(target="he").task == "word"
    assert plan(text="Habari ya asubuhi rafiki", target="he").task == "translate"
    chat = plan(text="Habari ya asubuhi rafiki")
    assert (chat.task, chat.target, chat.bridge) == ("chat", "sw", "en")


def test_pairs_that_are_not_low_resource_pass_through():
    p = plan(text="Guten Morgen", detect=lambda t: "de", target="en")
    assert isinstance(p, Passthrough) and "low-resource" in p.reason


def test_a_pair_without_a_bridge_passes_through():
    p = plan(target="de")
    assert isinstance(p, Passthrough) and p.reason.startswith("no bridge")


def test_undetected_source_passes_through_in_auto_and_is_a_400_for_an_explicit_task():
    assert isinstance(plan(detect=lambda t: None), Passthrough)
    with pytest.raises(RequestError, match="detect"):
        plan(detect=lambda t: None, task="word", target="he")


@pytest.mark.parametrize(
    "options, match",
    [
        ({"task": "word", "target": "xx"}, "unknown language 'xx'"),
        ({"task": "word"}, "target is required"),
        ({"task": "word", "target": "sw"}, "both 'sw'"),
        ({"task": "word", "target": "he", "bridge": "he"}, "is the source or the target"),
    ],
)
def test_impossible_requests_are_request_errors(options, match):
    with pytest.raises(RequestError, match=match):
        plan(**options)


@pytest.mark.parametrize(
    "raw, match",
    [
        ("word", "must be an object"),
        ({"task": "poem"}, "task"),
        ({"mode": "fast"}, "mode"),
        ({"shots": -1}, "shots"),
        ({"shots": True}, "shots"),
        ({"colour": "red"}, "unknown bridgex option"),
        ({"target": 3}, "target"),
    ],
)
def test_bad_options_are_request_errors(raw, match):
    with pytest.raises(RequestError, match=match):
        parse_options(raw)


def test_options_accept_two_step_spellings_and_auto_source():
    assert parse_options({"mode": "two_step", "source": "auto"}) == Options(mode="two-step")


def test_qa_splits_passage_and_question_at_the_last_blank_line():
    p = plan(text="Maji ni baridi.\n\nJe, maji ni baridi?", task="qa")
    assert (p.text, p.question, p.target) == ("Maji ni baridi.", "Je, maji ni baridi?", "sw")
    with pytest.raises(RequestError, match="passage"):
        plan(text="no passage here", task="qa")


def test_chain_output_is_split_into_bridge_and_answer():
    p = plan(task="word", target="he")
    req = ClientRequest("completions", "m")
    assert rewrite.parse_chain(p, req, 'book"→עברית:"ספר"') == ("book", "ספר")
    assert rewrite.parse_chain(p, req, 'book"') == ("book", None)


def test_copies_of_the_source_are_detected():
    assert rewrite.is_copy("Maji", " maji ")
    assert not rewrite.is_copy("maji", "water")


def test_client_request_rejects_bodies_it_cannot_bridge():
    with pytest.raises(RequestError, match="n=1"):
        client_request("chat", {"model": "m", "n": 2, "messages": [{"role": "user", "content": "x"}]})
    with pytest.raises(RequestError, match="user turn"):
        client_request("chat", {"model": "m", "messages": [{"role": "system", "content": "x"}]})
    with pytest.raises(RequestError, match="one prompt"):
        client_request("completions", {"model": "m", "prompt": ["a", "b"]})
    req, text = client_request(
        "chat",
        {
            "model": "m",
            "temperature": 0,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "maji"}]}],
        },
    )
    assert text == "maji" and req.sampling == {"temperature": 0}


class Scripted:
    """An upstream that answers each completion prompt from a function and records the calls."""

    def __init__(self, answer):
        self.answer, self.calls = answer, []

    async def __call__(self, path, body):
        self.calls.append((path, body))
        prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
        return {
            "choices": [
                {"index": i, "text": self.answer(p, body), "finish_reason": "stop"}
                for i, p in enumerate(prompts)
            ],
            "usage": {"prompt_tokens": 5, "completion_tokens": 1},
        }


def test_chain_is_one_call_when_the_model_follows_the_format():
    up = Scripted(lambda p, b: 'book"→עברית:"ספר"')
    outcomes, usage = asyncio.run(
        run_plans([plan(task="word", target="he")], ClientRequest("completions", "m"), up)
    )
    assert (outcomes[0].answer, outcomes[0].bridge_text, outcomes[0].calls) == ("ספר", "book", 1)
    assert up.calls[0][1]["stop"] == ["\n"]
    assert usage.as_dict() == {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}


def test_chain_continues_with_a_second_call_when_the_model_stops_after_the_bridge():
    up = Scripted(lambda p, b: "ספר" if p.endswith('עברית:"') else 'book"')
    outcomes, usage = asyncio.run(
        run_plans([plan(task="word", target="he")], ClientRequest("completions", "m"), up)
    )
    assert (outcomes[0].answer, outcomes[0].calls) == ("ספר", 2)
    assert up.calls[1][1]["prompt"].startswith(up.calls[0][1]["prompt"])  # prefix cache friendly
    assert usage.prompt_tokens == 10


def test_two_step_asks_for_the_bridge_then_the_target_with_quote_and_newline_stops():
    up = Scripted(lambda p, b: "ספר" if p.endswith('עברית:"') else "book")
    outcomes, _ = asyncio.run(
        run_plans([plan(task="word", target="he", mode="two-step")], ClientRequest("completions", "m"), up)
    )
    assert outcomes[0].answer == "ספר" and [c[1]["stop"] for c in up.calls] == [['"', "\n"]] * 2


def test_many_plans_are_merged_into_batched_upstream_requests():
    plans = [plan(text=f"neno{i}", task="word", target="he") for i in range(5)]
    up = Scripted(lambda p, b: 'x"→עברית:"y"')
    outcomes, _ = asyncio.run(run_plans(plans, ClientRequest("completions", "m"), up, max_batch=2))
    sizes = [len(c[1]["prompt"]) if isinstance(c[1]["prompt"], list) else 1 for c in up.calls]
    assert sizes == [2, 2, 1]
    assert [o.answer for o in outcomes] == ["y"] * 5


def test_upstream_errors_propagate():
    async def failing(path, body):
        raise UpstreamError(502, message="down")

    with pytest.raises(UpstreamError):
        asyncio.run(run_plans([plan(task="word", target="he")], ClientRequest("completions", "m"), failing))


def test_rewrite_core_is_pure():
    code = (
        "import sys, bridgex_serve.rewrite; bad = {'starlette', 'httpx', 'aiohttp', 'duckdb', 'torch'} & "
        "set(sys.modules); print(sorted(bad)); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
