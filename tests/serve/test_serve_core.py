"""The pure request core (options, plan, prompts, steps, copies, outcome, the wire's client request) and
the async orchestration, with an in-memory index and a scripted upstream."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import ClassVar

import pytest

from bridgex_serve import copies, prompts, steps
from bridgex_serve.options import Options, RequestError, parse_options
from bridgex_serve.orchestrate import UpstreamError, run_plans
from bridgex_serve.plan import Passthrough, Plan, plan_request
from bridgex_serve.wire import ClientRequest, client_request


class FakeIndex:
    names: ClassVar[dict[str, str]] = {"en": "English", "sw": "Kiswahili", "he": "עברית", "de": "Deutsch"}
    decisions: ClassVar[dict] = {}
    policies: ClassVar[dict] = {}

    def has_language(self, code):
        return code in self.names

    def prompt_name(self, code):
        return self.names[code]

    def english_name(self, code):
        return {"sw": "Swahili", "he": "Hebrew", "de": "German"}.get(code, self.names[code])

    def language_codes(self):
        return sorted(self.names)

    def best_bridge(self, source, target):
        if {source, target} == {"sw", "he"} or source == target == "sw":
            return ("en", 0.7)
        return None

    def bridge_probability(self, source, target, bridge):
        return 0.2 if bridge == "de" and {source, target} == {"sw", "he"} else None

    def decision(self, source, target, task="word"):
        return self.decisions.get((source, target)) if task == "word" else None

    def policy_route(self, source, target, task="word"):
        return self.policies.get((source, target, task))

    def demonstrations(self, langs, k, exclude=None):
        rows = [("maji", "water", "מים"), ("Januari", "January", "ינואר"), ("Jumatatu", "Monday", "יום שני")]
        rows = [r[: len(langs)] if len(langs) == 3 else (r[0], r[2]) for r in rows]
        return tuple(r for r in rows if r[0] != exclude)[:k]

    def distilled(self, source, target, task):
        return None

    def distilled_pairs(self, task):
        return []


LOW = frozenset({"sw", "he"})


def plan(text="kitabu", detect=lambda t: "sw", uncalibrated="hsic", **options) -> Plan | Passthrough:
    """A plan under the paper's rule for uncalibrated pairs (the rank-1 bridge), unless told otherwise."""
    index = FakeIndex()
    return plan_request(
        Options(**options), text, index=index, low_resource=LOW, detect=detect, uncalibrated=uncalibrated
    )


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
        prompts.bridge_prompt(p)
        == 'Kiswahili:"maji"→English:"water"→עברית:"מים"\nKiswahili:"kitabu"→English:"'
    )
    assert prompts.answer_prompt(p, "book").endswith('Kiswahili:"kitabu"→English:"book"→עברית:"')


def test_the_query_word_is_never_its_own_demonstration():
    p = plan(text="maji", task="word", target="he", shots=2)
    assert len(p.demos) == 2 and all(d[0] != "maji" for d in p.demos)


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
    assert steps.parse_chain(p, req, 'book"→עברית:"ספר"') == ("book", "ספר")
    assert steps.parse_chain(p, req, 'book"') == ("book", None)


@pytest.mark.parametrize(
    "a, b",
    [
        ("Maji", " maji "),  # Latin: case and spaces
        ("maji", '"Maji."'),  # quotes and punctuation around the word
        ("Wasser", "«wasser»"),
        ("MASSE", "maße"),  # case folding, not lower-casing
        ("שָׁלוֹם", "שלום"),  # Hebrew: niqqud
        ("בְּרֵאשִׁית", "בראשית"),
        ("كِتَابٌ", "كتاب"),  # Arabic: harakat
        ("كتـــاب", "كتاب"),  # Arabic: tatweel
        ("水", "「水」"),  # CJK brackets
        ("東京", " 東京。"),  # CJK full stop
        ("が", "が"),  # NFC: kana with a combining voicing mark
    ],
)
def test_copies_are_detected_in_every_script(a, b):
    assert copies.is_copy(a, b) and copies.is_copy(b, a)


@pytest.mark.parametrize(
    "a, b",
    [
        ("maji", "water"),
        ("maji", "majini"),
        ("café", "cafe"),  # Latin accents are spelling
        ("ice cream", "icecream"),  # inner spaces count
        ("שלום", "שלומ"),
        ("水", "氷"),
        ("東京", "京東"),
        ("maji", '""'),  # nothing left after normalising is never a copy
    ],
)
def test_different_words_are_not_copies(a, b):
    assert not copies.is_copy(a, b)


def test_copy_reasons_in_order_of_precedence():
    assert copies.copy_reason("kitabu", "Kitabu", "kitabu") == "bridge_is_source"
    assert copies.copy_reason("rafiki", "friend", "Rafiki") == "answer_is_source"
    assert copies.copy_reason("simu", "phone", "Phone.") == "answer_is_bridge"
    assert copies.copy_reason("maji", "water", "מים") is None
    assert copies.copy_reason("maji", None, "") is None


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


@pytest.mark.parametrize("mode, calls", [("chain", 2), ("two-step", 3)])
def test_a_copied_bridge_word_is_answered_again_by_the_direct_route_with_one_extra_call(mode, calls):
    def answer(prompt, body):
        if prompt.endswith('Kiswahili:"kitabu"→עברית:"'):
            return "ספר"  # the direct prompt
        if prompt.endswith('→English:"'):
            return "kitabu" if mode == "two-step" else 'kitabu"→עברית:"kitabu"'
        return "kitabu"

    up = Scripted(answer)
    p = plan(task="word", target="he", mode=mode)
    outcomes, usage = asyncio.run(run_plans([p], ClientRequest("completions", "m"), up))
    o = outcomes[0]
    assert (o.answer, o.calls, o.fallback, o.fallback_reason, o.bridged_answer, o.route) == (
        "ספר",
        calls,
        "copy",
        "bridge_is_source",
        "kitabu",
        "direct",
    )
    direct = up.calls[-1][1]
    assert direct["prompt"] == (
        'Kiswahili:"maji"→עברית:"מים"\nKiswahili:"Januari"→עברית:"ינואר"\n'
        'Kiswahili:"Jumatatu"→עברית:"יום שני"\nKiswahili:"kitabu"→עברית:"'
    )  # the same demonstrations minus the bridge
    assert direct["stop"] == ['"', "\n"] and len(up.calls) == calls and usage.prompt_tokens == 5 * calls
    meta = o.metadata()
    assert (meta["bridge"], meta["route"], meta["fallback"], meta["bridge_copied"]) == (
        "en",
        "direct",
        "copy",
        True,
    )


def test_the_copy_fallback_can_be_switched_off_and_leaves_good_answers_alone():
    up = Scripted(lambda p, b: 'kitabu"→עברית:"kitabu"')
    req = ClientRequest("completions", "m")
    outcomes, _ = asyncio.run(run_plans([plan(task="word", target="he")], req, up, copy_fallback=False))
    assert (outcomes[0].answer, outcomes[0].fallback, outcomes[0].route, len(up.calls)) == (
        "kitabu",
        None,
        "bridge",
        1,
    )
    up = Scripted(lambda p, b: 'book"→עברית:"ספר"')
    outcomes, _ = asyncio.run(run_plans([plan(task="word", target="he")], req, up))
    assert outcomes[0].fallback is None and len(up.calls) == 1


def test_qa_and_chat_answers_never_fall_back():
    up = Scripted(lambda p, b: 'Maji ni baridi."→Kiswahili answer:"Maji ni baridi."')
    p = plan(text="Maji ni baridi.\n\nJe, maji ni baridi?", task="qa")
    outcomes, _ = asyncio.run(run_plans([p], ClientRequest("completions", "m"), up))
    assert outcomes[0].fallback is None and len(up.calls) == 1


def test_upstream_errors_propagate():
    async def failing(path, body):
        raise UpstreamError(502, message="down")

    with pytest.raises(UpstreamError):
        asyncio.run(run_plans([plan(task="word", target="he")], ClientRequest("completions", "m"), failing))


def test_rewrite_core_is_pure():
    modules = "bridgex_serve.options, bridgex_serve.plan, bridgex_serve.prompts, bridgex_serve.steps, " + (
        "bridgex_serve.copies, bridgex_serve.outcome, bridgex_serve.wire, bridgex_serve.orchestrate"
    )
    code = (
        f"import sys, {modules}; bad = {{'starlette', 'httpx', 'aiohttp', 'duckdb', 'torch'}} & "
        "set(sys.modules); print(sorted(bad)); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
