"""`bridgex-index calibrate` under the pooled rule (the default): sequential measuring that stops settled
pairs, the evidence and the route policy it writes, and what the server then does, against the evaluation's
oracle stub (answers known)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from test_calibrate import asked_words, calibrate_args, decisions
from test_eval_run import (
    LANGS,
    cli,
    index,  # noqa: F401 (fixture)
    oracle,  # noqa: F401 (fixture)
    rows,
    template_index,  # noqa: F401 (fixture)
)

from index_builder.evaluation.route_policy import DEFAULT_RULE, DENSE


def pooled(path: Path, endpoint: str, *extra, pairs: str = "sw-he,he-ja", limit: int = 40) -> list:
    return calibrate_args(path, endpoint, *extra, pairs=pairs, limit=limit, rule="pooled")


def test_a_pair_whose_bridge_wins_every_word_settles_before_the_budget(index, oracle):  # noqa: F811
    result = cli(*pooled(index, oracle.url))
    assert result.exit_code == 0, (result.stderr, result.exception)
    found = decisions(index)
    assert {k: v[0] for k, v in found.items()} == {("sw", "he"): "en", ("he", "ja"): "en"}
    # settled after the first step of 10 words, not the 40 of the budget
    assert "sw-he: 10 items measured, stopped: bridge" in result.stdout
    assert len(asked_words(oracle.prompts)) == 10
    assert all(n == 10 for _d, _b, n, _p, _m in found.values())
    (test,) = {r[0] for r in rows(index, "SELECT test FROM routing_decisions")}
    assert test.startswith(f"pooled-posterior({DEFAULT_RULE.describe()},margin=2.5)")
    assert "decision rule pooled" in result.stdout


def test_equal_routes_stay_direct_and_use_the_whole_budget(index, oracle):  # noqa: F811
    oracle.direct_knows = True  # direct is as right as English: no gain anywhere
    result = cli(*pooled(index, oracle.url, limit=20))
    assert result.exit_code == 0, (result.stderr, result.exception)
    assert {k: v[0] for k, v in decisions(index).items()} == {("sw", "he"): "direct", ("he", "ja"): "direct"}
    # English ties direct: a gain is neither likely nor ruled out, so the pair is measured to the budget
    assert "sw-he: 20 items measured, stopped: budget" in result.stdout


def test_the_evidence_and_the_policy_of_every_pair_are_written(index, oracle):  # noqa: F811
    result = cli(*pooled(index, oracle.url, "--top", "2", pairs="sw-he,he-ja,ja-sw"))
    assert result.exit_code == 0, (result.stderr, result.exception)
    sql = "SELECT source, target, route, n, gain, se FROM route_evidence WHERE task = 'word'"
    evidence = rows(index, sql)
    assert {(s, t) for s, t, *_ in evidence} == {("sw", "he"), ("he", "ja"), ("ja", "sw")}
    assert len(evidence) >= 6  # English and the top two candidates a pair (English may be one of them)
    english = {(s, t): (n, gain, se) for s, t, route, n, gain, se in evidence if route == "en"}
    assert english[("sw", "he")] == (10, 100.0, 10.0)  # every word right through English, none directly
    policy = rows(index, "SELECT source, target, route, origin, n FROM route_policy WHERE task = 'word'")
    assert {(s, t) for s, t, *_ in policy} == set(itertools.permutations(LANGS, 2))
    by_pair = {(s, t): (route, origin, n) for s, t, route, origin, n in policy}
    assert by_pair[("sw", "he")] == ("en", "evidence", 10)
    assert all(origin == "prior" and n == 0 for (s, t), (_r, origin, n) in by_pair.items()
               if (s, t) not in english)  # fmt: skip
    ((model,),) = rows(index, "SELECT model FROM route_policy_models WHERE task = 'word'")
    assert json.loads(model)["n_pairs"] == 3
    assert f"route policy (word) refitted for {len(policy)} pairs" in result.stdout


def test_recalibrating_a_pair_replaces_its_evidence(index, oracle):  # noqa: F811
    assert cli(*pooled(index, oracle.url, "--top", "3", pairs="sw-he")).exit_code == 0
    assert cli(*pooled(index, oracle.url, "--top", "1", pairs="sw-he")).exit_code == 0
    routes = rows(index, "SELECT route FROM route_evidence WHERE source = 'sw' AND target = 'he'")
    assert routes == [("en",)]  # the rank-1 candidate only, nothing left of the --top 3 run


def test_route_prints_what_the_server_does_and_why(index, oracle):  # noqa: F811
    from test_eval_run import assert_fails_cleanly

    before = json.loads(cli("route", index, "--source", "sw", "--target", "he", "--json").stdout)
    assert (before["route"], before["decision_source"]) == ("direct", "default")  # never calibrated
    assert cli(*pooled(index, oracle.url, pairs="sw-he,he-ja,ja-sw")).exit_code == 0
    after = json.loads(cli("route", index, "--source", "sw", "--target", "he", "--json").stdout)
    assert (after["route"], after["decision_source"]) == ("en", "calibrated")
    assert after["expected_gain"] == 100.0  # the measured gain: every word right through English only
    # a pair nobody measured follows the prior learned from the calibrated ones
    ((route, gain),) = rows(index, "SELECT route, expected_gain FROM route_policy"
                                   " WHERE source = 'sw' AND target = 'ja' AND task = 'word'")  # fmt: skip
    other = json.loads(cli("route", index, "--source", "sw", "--target", "ja", "--json", "--explain").stdout)
    assert (other["route"], other["decision_source"], other["expected_gain"]) == (route, "prior", gain)
    explain = other["explain"]
    assert explain["fitted"] and explain["n_pairs"] == 3
    assert explain["terms"][0]["term"] == "intercept"
    assert set(explain["feature_set"]) <= set(DENSE)  # the dense set the fit chose, the terms it printed
    assert set(explain["feature_set"]) <= {t["term"] for t in explain["terms"]}
    assert {c["bridge"] for c in explain["candidates"]} == set(LANGS) - {"ja", "sw"}
    text = cli("route", index, "--source", "sw", "--target", "ja", "--explain").stdout
    assert "source prior" in text and "coefficients per standard deviation" in text
    assert "(the set that best predicted a held-out pair)" in text
    hsic = json.loads(cli("route", index, "--source", "sw", "--target", "ja", "--json",
                          "--uncalibrated", "hsic").stdout)  # fmt: skip
    assert hsic["decision_source"] == "hsic"
    assert_fails_cleanly(cli("route", index, "--source", "xx", "--target", "sw"), "'xx' is not in this index")


def test_two_calibrated_pairs_are_no_ground_for_the_prior(index, oracle):  # noqa: F811
    assert cli(*pooled(index, oracle.url)).exit_code == 0  # sw-he and he-ja only
    others = rows(index, "SELECT DISTINCT route, origin FROM route_policy WHERE task = 'word'"
                         " AND (source || '-' || target) NOT IN ('sw-he', 'he-ja')")  # fmt: skip
    assert others == [("direct", "prior")]
    ((model,),) = rows(index, "SELECT model FROM route_policy_models WHERE task = 'word'")
    assert json.loads(model)["n_pairs"] == 0
