"""Chat-style prompts (`--prompt-style chat`, the default for instruct families such as Qwen2): words and
sentences asked through the chat template, answers read back by `extract_translation`."""

from __future__ import annotations

import asyncio

import pytest
from test_serve_core import LOW, FakeIndex

from bridgex_serve import engines
from bridgex_serve.options import Options
from bridgex_serve.orchestrate import run_plans
from bridgex_serve.plan import plan_request
from bridgex_serve.settings import Settings
from bridgex_serve.wire import ClientRequest

ONLY = "Reply with the translation only."


def chat_plan(text="kitabu", **options):
    return plan_request(
        Options(**options),
        text,
        index=FakeIndex(),
        low_resource=LOW,
        detect=lambda t: "sw",
        prompt_style="chat",
        uncalibrated="hsic",
    )


class ChatUpstream:
    """Answers chat calls from a function of the last user turn; records the calls."""

    def __init__(self, answer):
        self.answer, self.calls = answer, []

    async def __call__(self, path, body):
        assert path == "/v1/chat/completions", path
        self.calls.append(body)
        return {
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": self.answer(body["messages"][-1]["content"])},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 7, "completion_tokens": 2},
        }


def test_the_family_of_the_index_model_picks_the_style():
    assert engines.family_of_architecture("Qwen2ForCausalLM") == "qwen2"
    assert engines.prompt_style_for("Qwen2ForCausalLM", "cpu") == {"word": "chat", "translate": "completion"}
    completion = {"word": "completion", "translate": "completion"}
    assert engines.prompt_style_for("Gemma3ForCausalLM", "cpu") == completion
    assert engines.prompt_style_for("LlamaForCausalLM", "cpu") == completion  # no entry: completion
    assert engines.prompt_style_for(None, "cpu") == completion
    assert engines.family_of_architecture("ForCausalLM") is None


def test_a_prompt_style_outside_the_three_is_refused():
    with pytest.raises(ValueError, match="prompt_style"):
        Settings.from_env({"BRIDGEX_PROMPT_STYLE": "raw"})
    assert Settings.from_env({"BRIDGEX_PROMPT_STYLE": "Chat"}).prompt_style == "chat"
    assert Settings().prompt_style == "auto"


def test_chat_style_is_two_step_and_a_translate_plan_has_no_word_demonstrations():
    word = chat_plan(task="word", target="he")
    assert (word.style, word.mode, word.english, len(word.demos)) == (
        "chat",
        "two-step",
        ("Swahili", "Hebrew", "English"),
        3,
    )
    sentence = chat_plan("Habari ya asubuhi rafiki", task="translate", target="he", mode="chain")
    assert (sentence.mode, sentence.demos) == ("two-step", ())
    assert chat_plan("Habari ya asubuhi", task="translate", target="he", shots=2).demos != ()


def test_a_bridged_word_goes_source_to_bridge_then_bridge_to_target_with_demonstrations_as_turns():
    def answer(turn):
        if 'Swahili word "kitabu" into English' in turn:
            return "Here is the translation:\nbook"
        if 'English word "book" into Hebrew' in turn:
            return '"ספר"'
        raise AssertionError(turn)

    up = ChatUpstream(answer)
    outcomes, usage = asyncio.run(
        run_plans([chat_plan(task="word", target="he")], ClientRequest("chat", "m"), up)
    )
    o = outcomes[0]
    assert (o.bridge_text, o.answer, o.calls, o.route) == ("book", "ספר", 2, "bridge")
    first = up.calls[0]["messages"]
    assert first[0] == {
        "role": "user",
        "content": 'Translate the Swahili word "maji" into English. Reply with the translation only.',
    }
    assert first[1] == {"role": "assistant", "content": "water"}
    second = up.calls[1]["messages"]
    assert second[0]["content"].startswith('Translate the English word "water" into Hebrew')
    assert second[1] == {"role": "assistant", "content": "מים"}
    assert usage.prompt_tokens == 14


def test_a_sentence_answer_is_the_translation_without_its_preamble():
    def answer(turn):
        if turn == f"Translate the following Swahili text into English. {ONLY}\n\nHabari ya asubuhi rafiki":
            return "Here is the translation:\n\nGood morning friend"
        assert turn == f"Translate the following English text into Hebrew. {ONLY}\n\nGood morning friend"
        return "Voici la traduction en hébreu :\n\nבוקר טוב חבר\n\nNote: this is informal."

    up = ChatUpstream(answer)
    p = chat_plan("Habari ya asubuhi rafiki", task="translate", target="he", mode="two-step")
    outcomes, _ = asyncio.run(run_plans([p], ClientRequest("chat", "m"), up))
    assert (outcomes[0].bridge_text, outcomes[0].answer) == ("Good morning friend", "בוקר טוב חבר")


def test_a_copied_chat_bridge_falls_back_to_a_direct_chat_call():
    def answer(turn):
        if "into English" in turn:
            return "kitabu"  # a copy of the source
        if 'Swahili word "kitabu" into Hebrew' in turn:
            return "Hebrew: ספר"
        return "kitabu"

    up = ChatUpstream(answer)
    outcomes, _ = asyncio.run(
        run_plans([chat_plan(task="word", target="he")], ClientRequest("chat", "m"), up)
    )
    o = outcomes[0]
    assert (o.answer, o.fallback, o.route) == ("ספר", "copy", "direct")
    direct = up.calls[-1]["messages"]
    assert [m["content"] for m in direct if m["role"] == "assistant"] == ["מים", "ינואר", "יום שני"]


def test_completion_style_plans_are_unchanged():
    p = plan_request(
        Options(task="word", target="he"),
        "kitabu",
        index=FakeIndex(),
        low_resource=LOW,
        detect=lambda t: "sw",
        uncalibrated="hsic",
    )
    assert (p.style, p.mode, p.chat_style) == ("completion", "chain", False)


def test_a_style_per_task_applies_to_its_task_only():
    styles = {"word": "chat", "translate": "completion"}

    def planned(text, task):
        return plan_request(
            Options(task=task, target="he"),
            text,
            index=FakeIndex(),
            low_resource=LOW,
            detect=lambda t: "sw",
            prompt_style=styles,
            uncalibrated="hsic",
        )

    assert (planned("kitabu", "word").style, planned("kitabu", "word").mode) == ("chat", "two-step")
    sentence = planned("Habari ya asubuhi rafiki", "translate")
    assert (sentence.style, sentence.mode, len(sentence.demos)) == ("completion", "chain", 3)


@pytest.mark.parametrize(
    ("answer", "word"),
    [
        ('"Mostretable" translates to German as "Anzeigenbar".', "Anzeigenbar"),
        ("The Hebrew word for “book” is “ספר”.", "ספר"),
        ("ספר", "ספר"),
        ('"ספר"', "ספר"),
        ("New York", "New York"),  # no quotes: kept whole
    ],
)
def test_a_word_answered_in_a_sentence_is_its_last_quoted_part(answer, word):
    from bridgex_serve.steps import read_translation

    assert read_translation(chat_plan(task="word", target="he"), answer, 1) == word
