"""`prompts.with_examples`: sentence examples in front of a direct plan's prompt (issue 20, distilled)."""

from __future__ import annotations

import pytest

from bridgex_serve import prompts
from bridgex_serve.plan import Plan

DIRECT = Plan(
    task="translate",
    mode="direct",
    source="sw",
    target="de",
    bridge=None,
    probability=None,
    names=("Kiswahili", "Deutsch", None),
    text="Habari ya asubuhi",
    demos=(("maji", "Wasser"),),
)


def test_examples_come_first_in_the_direct_format_then_the_word_demonstrations():
    p = prompts.with_examples(DIRECT, [("Karibu  sana\n", "Herzlich willkommen"), ("Asante", "Danke")])
    assert prompts.bridge_prompt(p) == (
        'Kiswahili:"Karibu sana"→Deutsch:"Herzlich willkommen"\n'
        'Kiswahili:"Asante"→Deutsch:"Danke"\n'
        'Kiswahili:"maji"→Deutsch:"Wasser"\n'
        'Kiswahili:"Habari ya asubuhi"→Deutsch:"'
    )
    assert DIRECT.demos == (("maji", "Wasser"),)  # pure: the plan given is unchanged


def test_the_same_examples_give_every_text_the_same_prompt_prefix():
    from dataclasses import replace

    examples = [("Karibu", "Willkommen")]
    a = prompts.bridge_prompt(prompts.with_examples(DIRECT, examples))
    b = prompts.bridge_prompt(prompts.with_examples(replace(DIRECT, text="Kwaheri"), examples))
    head = 'Kiswahili:"Karibu"→Deutsch:"Willkommen"\nKiswahili:"maji"→Deutsch:"Wasser"\nKiswahili:"'
    assert a.startswith(head) and b.startswith(head)


def test_no_examples_leave_the_prompt_as_it_was():
    assert prompts.bridge_prompt(prompts.with_examples(DIRECT, [])) == prompts.bridge_prompt(DIRECT)


@pytest.mark.parametrize(
    ("plan", "examples", "match"),
    [
        (Plan(**{**DIRECT.__dict__, "bridge": "en", "mode": "chain"}), [("a", "b")], "direct"),
        (Plan(**{**DIRECT.__dict__, "style": "chat"}), [("a", "b")], "direct"),
        (DIRECT, [(" ", "b")], "empty"),
        (DIRECT, [("a", 'er sagte "ja"')], "quote"),
    ],
)
def test_what_cannot_take_sentence_examples_is_a_value_error(plan, examples, match):
    with pytest.raises(ValueError, match=match):
        prompts.with_examples(plan, examples)
