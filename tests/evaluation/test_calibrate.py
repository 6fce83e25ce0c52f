"""`bridgex-index calibrate` and the `calibrated` evaluation strategy, against the evaluation's oracle stub
(answers known, so every decision is exact), and calibrate → proxy route on a real tiny vLLM (slow)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import httpx
import pytest
from serve_support import (
    openai_client,
    running,
    serve_index,  # noqa: F401 (fixture)
    vllm_tiny,  # noqa: F401 (fixture)
)
from test_eval_run import (
    LANGS,
    accuracies,
    assert_fails_cleanly,
    cli,
    entries_of,
    eval_args,
    free_port,
    index,  # noqa: F401 (fixture)
    oracle,  # noqa: F401 (fixture)
    rows,
    template_index,  # noqa: F401 (fixture)
)

from index_builder.evaluation.decision import split_words
from index_builder.evaluation.testsets import shipped_words
from index_builder.indexing.languages import prompt_name


def calibrate_args(path: Path, endpoint: str, *extra, pairs: str = "sw-he,he-ja", limit: int = 10,
                   model: str = "stub", rule: str = "strict") -> list:  # fmt: skip
    """The command line of a calibration; by default under the per-pair Holm-McNemar rule (`strict`), whose
    exact decisions these tests check (the pooled rule: tests/evaluation/test_calibrate_pooled.py)."""
    return ["calibrate", "--index", path, "--endpoint", endpoint, "--model", model, "--pairs", pairs,
            "--dictionaries", "cldr", "--limit", str(limit), "--decision", rule, "--quiet",
            *extra]  # fmt: skip


def decisions(path: Path) -> dict[tuple[str, str], tuple]:
    found = rows(path, "SELECT source, target, decision, bridge, n, p_value, model FROM routing_decisions")
    return {(s, t): tuple(rest) for s, t, *rest in found}


def asked_words(prompts: list[str], label: str = "Kiswahili") -> set[str]:
    """Source words of the questions (the last line of each prompt) asked from the language `label`."""
    questions = [p.split("\n")[-1].split("→")[0] for p in prompts]
    return {q.partition(':"')[2].rstrip('"') for q in questions if q.startswith(f'{label}:"')}


def test_calibrate_decides_the_bridge_that_wins_significantly(index, oracle):  # noqa: F811
    result = cli(*calibrate_args(index, oracle.url))
    assert result.exit_code == 0, (result.stderr, result.exception)
    found = decisions(index)
    # only English answers right: where it is among the top 3 it wins on every word, significantly
    assert found[("sw", "he")][:3] == ("en", "en", 10)
    assert found[("he", "ja")][:3] == ("en", "en", 10)  # English is rank 2 there: measured, not ranked
    assert all(p < 0.05 and model == "stub" for _d, _b, _n, p, model in found.values())
    assert "wrote 2 word routing decisions" in result.stdout
    # the calibration half only: every word asked splits to the calibration side
    words = asked_words(oracle.prompts)
    calibration, evaluation = split_words(f"sw:{w}" for w in words)
    assert len(calibration) == 10 and not evaluation
    runs = rows(index, "SELECT command FROM evaluation_runs")
    assert len(runs) == 1 and runs[0][0].startswith("bridgex-index calibrate --index")


def test_equal_routes_stay_direct(index, oracle):  # noqa: F811
    oracle.direct_knows = True  # direct is as right as English: no gain
    assert cli(*calibrate_args(index, oracle.url)).exit_code == 0
    assert {k: v[0] for k, v in decisions(index).items()} == {("sw", "he"): "direct", ("he", "ja"): "direct"}


def test_too_few_words_stay_direct_and_recalibrating_replaces_rows(index, oracle):  # noqa: F811
    assert cli(*calibrate_args(index, oracle.url, pairs="sw-he", limit=10)).exit_code == 0
    assert decisions(index)[("sw", "he")][0] == "en"
    # English wins every word, but 3 words × 3 candidates is no evidence (Holm: 3 × 1/8 > 0.05)
    result = cli(*calibrate_args(index, oracle.url, limit=3))
    assert result.exit_code == 0, result.stderr
    found = decisions(index)
    assert {k: v[0] for k, v in found.items()} == {("sw", "he"): "direct", ("he", "ja"): "direct"}
    assert found[("sw", "he")][1] == "en" and found[("sw", "he")][3] > 0.05  # best candidate reported
    assert rows(index, "SELECT count(*) FROM routing_decisions") == [(2,)]  # replaced, not added


def test_calibrated_strategy_follows_the_decision_on_the_evaluation_half(index, oracle, tmp_path):  # noqa: F811
    assert cli(*calibrate_args(index, oracle.url, "--top", "1")).exit_code == 0
    # top 1: sw-he tests English (rank 1) and wins; he-ja tests German (rank 1) and English (always
    # measured besides the top HSIC bridges), and English wins there too
    assert {k: v[0] for k, v in decisions(index).items()} == {("sw", "he"): "en", ("he", "ja"): "en"}
    calibration_words = asked_words(oracle.prompts)
    oracle.prompts.clear()
    args = eval_args(index, oracle.url, tmp_path / "r", "--strategies", "direct,bridgex,calibrated",
                     "--words", "evaluation", pairs="sw-he,he-ja,ja-sw")  # fmt: skip
    result = cli(*args)
    assert result.exit_code == 0, (result.stderr, result.exception)
    acc = accuracies(index)
    assert acc[("sw", "he", "calibrated", "en")] == 100.0
    assert acc[("he", "ja", "calibrated", "en")] == 100.0  # English, as decided
    assert acc[("he", "ja", "bridgex", "de")] == 0.0  # the index's own rank 1 would have been wrong
    # uncalibrated: the route policy's route, refitted by the calibration from the two calibrated pairs
    ((route,),) = rows(index, "SELECT route FROM route_policy WHERE source = 'ja' AND target = 'sw'"
                              " AND task = 'word'")  # fmt: skip
    assert ("ja", "sw", "calibrated", None if route == "direct" else route) in acc
    assert not asked_words(oracle.prompts) & calibration_words  # judged on words not calibrated on
    assert "calibrated sw→he: 100.0 via en (stored)" in result.stdout
    # pooled: the paired gain over direct with its interval, the difference of the two accuracies
    num = r"([+-]?[\d.]+)"
    pattern = rf"calibrated pooled: {num} over \d+ words \(direct {num}; {num} \[{num}, {num}\]"
    pooled = re.search(pattern + r" points, 95% paired bootstrap\)", result.stdout)
    assert pooled is not None, result.stdout
    cal, direct, gain, low, high = map(float, pooled.groups())
    assert gain == pytest.approx(cal - direct, abs=0.01) and low <= gain <= high and gain > 0


def test_bridges_shows_the_stored_decision(index, oracle):  # noqa: F811
    assert cli(*calibrate_args(index, oracle.url, pairs="sw-he")).exit_code == 0
    table = cli("bridges", index, "--source", "sw")
    assert table.exit_code == 0, table.stderr
    assert "decision" in table.stdout.splitlines()[0]
    he = [line.split() for line in table.stdout.splitlines()[1:] if line.split()[1] == "he"]
    ja = [line.split() for line in table.stdout.splitlines()[1:] if line.split()[1] == "ja"]
    assert he and all(r[-2:] == ["en", "-"] for r in he) and all(r[-2:] == ["-", "-"] for r in ja)
    data = json.loads(cli("bridges", index, "--source", "sw", "--json").stdout)
    keys = {"source", "target", "bridge", "score", "probability", "rank", "decision", "translate_decision"}
    assert data and all(set(r) == keys for r in data)
    assert {r["decision"] for r in data if r["target"] == "he"} == {"en"}


def test_translate_calibration_is_stored_beside_the_word_decision(index, oracle):  # noqa: F811
    oracle.learn_sentences(["en", "sw", "he"])
    assert cli(*calibrate_args(index, oracle.url, pairs="sw-he")).exit_code == 0
    args = [
        a
        for a in calibrate_args(index, oracle.url, pairs="sw-he", limit=30)
        if a not in ("--dictionaries", "cldr")
    ]
    result = cli(*args, "--task", "translate")
    assert result.exit_code == 0, (result.stderr, result.exception)
    assert "wrote 1 translate routing decisions" in result.stdout
    found = rows(index, "SELECT task, decision, n, test FROM routing_decisions ORDER BY task")
    assert [r[:2] for r in found] == [("translate", "en"), ("word", "en")]
    assert found[0][2] <= 30 and found[0][3].startswith("paired-bootstrap-chrf++")
    table = cli("bridges", index, "--source", "sw", "--target", "he")
    lines = table.stdout.splitlines()[1:]
    assert lines and all(line.split()[-2:] == ["en", "en"] for line in lines)


@pytest.mark.parametrize(
    ("extra", "pairs", "needles"),
    [
        (["--top", "0"], "sw-he", ["--top must be at least 1"]),
        ([], "sw-xx", ["'xx' is not in this index"]),
        ([], "swhe", ["not a pair like sw-he"]),
        (["--limit", "0"], "sw-he", ["--limit must be at least 1"]),
    ],
)
def test_bad_calibrate_input_is_one_line_exit_2(index, extra, pairs, needles):  # noqa: F811
    url = f"http://127.0.0.1:{free_port()}/v1"
    assert_fails_cleanly(cli(*calibrate_args(index, url, *extra, pairs=pairs)), *needles)
    assert_fails_cleanly(cli(*calibrate_args(index, url, pairs="sw-he")), "cannot reach")
    tables = "SELECT count(*) FROM information_schema.tables WHERE table_name = 'evaluations'"
    assert rows(index, tables)[0][0]
    assert rows(index, "SELECT count(*) FROM routing_decisions") == [(0,)]  # nothing decided without answers


# ------------------------------------------------------------------------ a word test set (--test-dict-dir)


def word_set_args(path: Path, endpoint: str, test_dict_dir, *extra) -> list:
    return ["calibrate", "--index", path, "--endpoint", endpoint, "--model", "stub", "--test-dict-dir",
            test_dict_dir, "--limit", "10", "--quiet", *extra]  # fmt: skip


def test_calibrate_on_a_muse_test_dir_takes_its_pairs_and_records_its_name_and_hash(index, oracle, tmp_path):  # noqa: F811
    held = sorted(
        (wt, ws)
        for s, t, ws, wt, split in entries_of(index)
        if (s, t, split) == ("he", "sw", "test") and " " not in ws + wt
    )
    probe = next(wt for s, t, _ws, wt, split in entries_of(index) if (s, t, split) == ("he", "sw", "probe"))
    (tmp_path / "muse-test").mkdir()
    lines = [f"{sw} {he}" for sw, he in held] + [f"{probe} שלום"]  # a probe word: dropped
    (tmp_path / "muse-test" / "sw-he.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = cli(*word_set_args(index, oracle.url, tmp_path / "muse-test"))  # no --pairs: the files' pairs
    assert result.exit_code == 0, (result.stderr, result.exception)
    found = rows(index, "SELECT source, target, decision, n, test_set FROM routing_decisions")
    assert [r[:4] for r in found] == [("sw", "he", "en", 10)]
    name, _, digest = found[0][4].partition(" sha256:")
    assert name == "muse-test (minus 1 probe words)" and len(digest) == 64
    assert f"measured on {found[0][4]}" in result.stdout
    words = asked_words(oracle.prompts)  # the calibration half of the test set's words, no probe word
    assert probe not in words and words <= {sw for sw, _he in held}
    assert not split_words(f"sw:{w}" for w in words)[1]
    (command, params) = rows(index, "SELECT command, parameters FROM evaluation_runs")[0]
    assert "--pairs" not in command and f"--test-dict-dir {tmp_path / 'muse-test'}" in command
    assert json.loads(params)["test_set"]["sha256"] == digest


def test_calibrate_on_the_shipped_word_set(index, oracle):  # noqa: F811
    names = {c: prompt_name(c) for c in LANGS}
    for (s, t), d in shipped_words(LANGS).dictionaries.items():  # the stub learns the Django words
        for e in d.entries:
            oracle.gold.setdefault((names[s], e.source_word, names[t]), e.target_word)
    result = cli(*word_set_args(index, oracle.url, "shipped", "--pairs", "sw-he", "--top", "1"))
    assert result.exit_code == 0, (result.stderr, result.exception)
    ((decision, n, test_set),) = rows(index, "SELECT decision, n, test_set FROM routing_decisions")
    assert (decision, n) == ("en", 10)
    assert test_set.startswith("bridgex-django-words") and " sha256:" in test_set
    sw_words = {e.source_word for e in shipped_words(LANGS, ["sw-he"]).dictionaries[("sw", "he")].entries}
    assert asked_words(oracle.prompts) <= sw_words
    (command,) = rows(index, "SELECT command FROM evaluation_runs")[0]
    assert "--pairs sw-he --top 1 --test-dict-dir shipped --mode chain" in command


@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        (["--task", "translate", "--pairs", "sw-he"], ["--task translate reads sentences"]),
        (["--dictionaries", "cldr"], ["--test-dict-dir replaces --dictionaries"]),
        (["--pairs", "sw-xx"], ["'xx' is not in this index"]),
        (["--pairs", "sw-he", "--top", "0"], ["--top must be at least 1"]),
    ],
)
def test_bad_word_set_calibration_is_one_line_exit_2(index, extra, needles):  # noqa: F811
    url = f"http://127.0.0.1:{free_port()}/v1"
    assert_fails_cleanly(cli(*word_set_args(index, url, "shipped", *extra)), *needles)


def test_a_missing_word_set_or_missing_pairs_is_one_line_exit_2(index, tmp_path):  # noqa: F811
    url = f"http://127.0.0.1:{free_port()}/v1"
    assert_fails_cleanly(cli(*word_set_args(index, url, tmp_path / "none")), "--test-dict-dir", "none")
    args = [a for a in calibrate_args(index, url) if a not in ("--pairs", "sw-he,he-ja")]
    assert_fails_cleanly(cli(*args), "--pairs is required")


# ------------------------------------------------------------------------------------ real vLLM (slow)


@pytest.mark.slow
def test_calibrate_then_the_proxy_follows_the_decision(vllm_tiny, index, tmp_path):  # noqa: F811
    from bridgex_serve.app import create_app
    from bridgex_serve.settings import Settings

    path = Path(shutil.copy(index, tmp_path / "served.duckdb"))
    with running(create_app(Settings(index=str(path), upstream=vllm_tiny.url))) as proxy:
        client = openai_client(proxy.url, timeout=120)

        def meta() -> dict:
            r = client.completions.create(
                model="tiny", prompt="maji", max_tokens=4,
                extra_body={"bridgex": {"task": "word", "source": "sw", "target": "he"}},
            )  # fmt: skip
            return r.model_extra["bridgex"]

        assert meta()["decision_source"] == "default"  # never calibrated: direct under the route policy
        result = cli(*calibrate_args(path, vllm_tiny.url + "/v1", pairs="sw-he", limit=4, model="tiny"))
        assert result.exit_code == 0, (result.stderr, result.exception)
        decided = decisions(path)[("sw", "he")][0]
        assert httpx.post(proxy.url + "/admin/reload", timeout=60).status_code == 200
        after = meta()
    assert after["decision_source"] == "calibrated"
    assert (after.get("bridge") or "direct") == decided
