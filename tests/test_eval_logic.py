"""The evaluation's pure pieces: parsing, test-word selection, shared demonstrations, plans and cache keys."""

from __future__ import annotations

import pytest

from bridgex_serve import rewrite
from index_builder.evaluation import (
    CandidateBridge,
    EvalConfig,
    EvaluationError,
    HeldOutWord,
    PairTask,
    aligned_demonstrations,
    base_url,
    make_plan,
    parse_pairs,
    parse_strategies,
    request_key,
    select_test_words,
    split_disagreement,
)

NAMES = {"sw": "Kiswahili", "he": "עברית", "en": "English", "de": "Deutsch"}


def test_parse_pairs_keeps_order_and_drops_repeats():
    assert parse_pairs(" sw-he, ID-JA ,sw-he,") == [("sw", "he"), ("id", "ja")]


@pytest.mark.parametrize("text", ["swhe", "sw-", "-he", "sw-he-ja", "sw-sw", "", ","])
def test_parse_pairs_rejects_malformed(text):
    with pytest.raises(EvaluationError):
        parse_pairs(text)


def test_parse_strategies_canonical_order_and_unknown():
    assert parse_strategies("all-bridges,direct") == ("direct", "all-bridges")
    with pytest.raises(EvaluationError, match="'magic'"):
        parse_strategies("direct,magic")


@pytest.mark.parametrize(
    ("endpoint", "base"),
    [
        ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000"),
        ("http://127.0.0.1:8000/v1/", "http://127.0.0.1:8000"),
        ("https://api.example.com", "https://api.example.com"),
    ],
)
def test_base_url(endpoint, base):
    assert base_url(endpoint) == base


def test_base_url_must_be_http():
    with pytest.raises(EvaluationError, match="http"):
        base_url("127.0.0.1:8000")


def test_test_words_drop_probe_words_group_golds_and_limit_stably():
    entries = [("maji", "מים"), ("mbwa", "כלב"), ("maji", "מי"), ("paka", "חתול"), ("Januari", "ינואר")]
    words, dropped = select_test_words(entries, {"paka"}, None, ("sw", "he"), {"maji": "noun"})
    assert dropped == 1
    assert {w.word for w in words} == {"maji", "mbwa", "Januari"}
    assert next(w for w in words if w.word == "maji") == HeldOutWord("maji", ("מים", "מי"), "noun")
    first_two, _ = select_test_words(entries, {"paka"}, 2, ("sw", "he"))
    assert [w.word for w in first_two] == [w.word for w in words[:2]]  # a limit is a prefix


def test_split_disagreement_names_the_difference():
    same = {("a", "b"), ("c", "d")}
    assert split_disagreement(same, set(same)) is None
    message = split_disagreement(same, {("a", "b")})
    assert message is not None and "1 test entries only in the index" in message and "c → d" in message


def test_demonstrations_are_shared_by_every_arm_and_skip_copies_and_gaps():
    words = {
        "sw": {"m1": "Januari", "m2": "Februari", "u1": "kilogramu", "d1": "Jumatatu"},
        "he": {"m1": "ינואר", "m2": "פברואר", "u1": "קילוגרם", "d1": "יום שני"},
        "en": {"m1": "January", "m2": "February", "u1": "kilogram", "d1": "Monday"},
        "de": {"m1": "Januar", "m2": "Februari", "u1": "Kilogramm"},  # m2: a copy of the Swahili word
    }
    demos = aligned_demonstrations(words, ["u1", "m1", "m2", "d1"], "sw", "he", ["en", "de"], 3)
    assert [d["sw"] for d in demos] == ["kilogramu", "Januari"]  # m2 copies, d1 has no German word
    assert aligned_demonstrations(words, ["u1"], "sw", "he", ["en"], 0) == []


def _task(demos) -> PairTask:
    return PairTask(
        "sw",
        "he",
        [HeldOutWord("maji", ("מים",))],
        [CandidateBridge("en", 0.7, 1), CandidateBridge("de", 0.3, 2)],
        [None, "en", "de"],
        demos,
    )


def test_plans_use_the_same_demonstration_words_with_and_without_the_bridge():
    demos = [{"sw": "Januari", "he": "ינואר", "en": "January", "de": "Januar"}]
    cfg = EvalConfig(index=None, endpoint="http://x", model="m", pairs=[("sw", "he")], dictionaries="cldr")
    task = _task(demos)
    direct = make_plan(task, "maji", None, cfg, NAMES)
    bridged = make_plan(task, "maji", "en", cfg, NAMES)
    req = rewrite.ClientRequest("completions", "m", {"temperature": 0.0})
    assert (
        rewrite.first_step(direct, req).body["prompt"]
        == 'Kiswahili:"Januari"→עברית:"ינואר"\nKiswahili:"maji"→עברית:"'
    )
    assert rewrite.first_step(bridged, req).body["prompt"] == (
        'Kiswahili:"Januari"→English:"January"→עברית:"ינואר"\nKiswahili:"maji"→English:"'
    )
    assert bridged.probability == 0.7 and direct.probability is None
    assert make_plan(task, "maji", "de", cfg, NAMES).mode == "chain"
    assert task.chosen == "en"


def test_strategy_cells_skip_english_when_english_is_an_end():
    task = _task([])
    assert task.strategy_arms(("direct", "english", "bridgex", "all-bridges")) == [
        ("direct", None),
        ("english", "en"),
        ("bridgex", "en"),
        ("all-bridges", "en"),
        ("all-bridges", "de"),
    ]
    task.target = "en"
    assert ("english", "en") not in task.strategy_arms(("english",))


def test_request_key_depends_on_everything_but_key_order():
    a = rewrite.Step("/v1/completions", {"model": "m", "prompt": "p", "max_tokens": 16})
    b = rewrite.Step("/v1/completions", {"max_tokens": 16, "prompt": "p", "model": "m"})
    assert request_key(a) == request_key(b)
    assert request_key(a) != request_key(rewrite.Step("/v1/completions", {**a.body, "model": "other"}))
    assert request_key(a) != request_key(rewrite.Step("/v1/completions", {**a.body, "prompt": "q"}))
