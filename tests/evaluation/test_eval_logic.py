"""The evaluation's pure pieces: parsing, test-word selection, the server options of each arm, cache keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from index_builder.evaluation.client import EvaluationError, base_url, request_key, word_request
from index_builder.evaluation.config import EvalConfig, parse_pairs, parse_strategies
from index_builder.evaluation.held_out import HeldOutWord, select_test_words, split_disagreement
from index_builder.evaluation.tasks import CandidateBridge, PairTask, arm_options, make_jobs, served_request


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


def _task() -> PairTask:
    return PairTask(
        "sw",
        "he",
        [HeldOutWord("maji", ("מים",))],
        [CandidateBridge("en", 0.7, 1), CandidateBridge("de", 0.3, 2)],
        [None, "en", "de"],
    )


CFG = EvalConfig(index=None, endpoint="http://x", model="m", pairs=[("sw", "he")], dictionaries="cldr")


def test_each_arm_is_a_word_request_with_its_route_or_bridge():
    task = _task()
    direct, bridged = arm_options(CFG, task, None), arm_options(CFG, task, "en")
    assert direct == {
        "model": "m", "task": "word", "source": "sw", "target": "he", "shots": 3, "temperature": 0.0,
        "route": "direct",
    }  # fmt: skip
    assert bridged == {**{k: v for k, v in direct.items() if k != "route"}, "bridge": "en", "mode": "chain",
                       "copy_fallback": True}  # fmt: skip
    # the direct arm's request does not depend on the mode or the copy fallback of the run
    two_step = EvalConfig(**{**CFG.__dict__, "mode": "two-step", "copy_fallback": False})
    assert arm_options(two_step, task, None) == direct
    assert arm_options(two_step, task, "en")["mode"] == "two-step"
    jobs = make_jobs(CFG, [task])
    assert [key for key, _r in jobs] == [
        (("sw", "he"), 0, None),
        (("sw", "he"), 0, "en"),
        (("sw", "he"), 0, "de"),
    ]
    served = served_request(CFG, task)
    assert dict(served.options)["route"] == "auto" and served.context == "decision=None"


def test_strategy_cells_skip_english_when_english_is_an_end():
    task = _task()
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
    a = {"path": "/v1/translate", "body": word_request("maji", {"model": "m", "route": "direct"}).body()}
    b = {"body": word_request("maji", {"route": "direct", "model": "m"}).body(), "path": "/v1/translate"}
    assert request_key(a) == request_key(b)
    assert request_key(a) != request_key({**a, "body": {**a["body"], "model": "other"}})
    assert request_key(a) != request_key({**a, "body": {**a["body"], "q": ["moto"]}})
    assert request_key(a) != request_key({**a, "index": "another build"})


def test_the_prompt_style_is_part_of_the_answer_cache_key():
    from index_builder.evaluation.client import TranslateClient

    def client(style: str) -> TranslateClient:
        return TranslateClient(
            None, "idx", endpoint="http://h", api_key=None, timeout=1.0, concurrency=1, prompt_style=style
        )

    request = word_request("maji", {"model": "m", "route": "direct"})
    keys = {client(style).key(request) for style in ("auto", "completion", "chat")}
    assert len(keys) == 3


def test_one_command_line_rebuilder_writes_eval_and_calibrate_lines():
    cfg = EvalConfig(
        index=Path("idx.duckdb"),
        endpoint="http://h:8000/v1",
        model="m",
        pairs=[("sw", "he"), ("he", "sw")],
        dictionaries="cldr",
        strategies=("direct", "bridgex"),
        words="evaluation",
        limit=40,
        copy_fallback=False,
        out=Path("reports/r"),
    )
    assert cfg.command_line("eval") == (
        "bridgex-index eval --index idx.duckdb --endpoint http://h:8000/v1 --model m --task word "
        "--pairs sw-he,he-sw --dictionaries cldr --strategies direct,bridgex --mode chain --shots 3 "
        "--words evaluation --limit 40 --no-copy-fallback --concurrency 32 --out reports/r"
    )
    calibration = EvalConfig(
        index=Path("idx.duckdb"),
        endpoint="http://h:8000/v1",
        model="m",
        pairs=[("sw", "he")],
        dictionaries="",
        test_dict_dir="shipped",
        strategies=("direct", "all-bridges"),
        words="calibration",
        top_bridges=2,
        all_pairs=True,
    )
    assert calibration.command_line("calibrate") == (
        "bridgex-index calibrate --index idx.duckdb --endpoint http://h:8000/v1 --model m --task word "
        "--pairs all --top 2 --test-dict-dir shipped --mode chain --shots 3 --concurrency 32"
    )
    assert "out" not in cfg.parameters() and "all_pairs" not in calibration.parameters()
