"""The reporting room: the terminal table, the summary sentences, the Markdown reports and the metadata an
`eval` or `calibrate` run prints and writes, from hand-made summaries (no model, no server)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

from index_builder.evaluation.calibrate import Calibration
from index_builder.evaluation.config import EvalConfig
from index_builder.evaluation.decision import RouteDecision
from index_builder.evaluation.scoring import Candidate, PairSummary, overall
from index_builder.reporting.markdown import (
    candidate_table,
    category_table,
    copy_table,
    markdown,
    summary_lines,
    table,
    write_report,
    write_sentence_report,
)
from index_builder.reporting.run_report import calibration_lines, sentence_meta, word_meta, word_test_set_line

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _pairs() -> list[PairSummary]:
    """sw→he: the index's bridge en is the measured best of three; he→ja: the index ranks no bridge."""
    ranked = PairSummary(
        "sw",
        "he",
        10,
        direct=20.0,
        english=50.0,
        chosen="en",
        bridgex=50.0,
        candidates=(
            Candidate("en", 0.5, 1, 50.0, copy_rate=0.0),
            Candidate("de", 0.3, 2, 30.0, copy_rate=40.0),
            Candidate("ja", 0.2, 3, 10.0, copy_rate=80.0),
        ),
        shots=3,
    )
    unranked = PairSummary("he", "ja", 10, direct=40.0, english=30.0, chosen=None, bridgex=40.0, shots=3)
    return [ranked, unranked]


def test_table_has_a_row_per_pair_the_mean_and_names_each_route():
    pairs = _pairs()
    lines = table(pairs, overall(pairs)).splitlines()
    assert lines[0].split()[:5] == ["pair", "n", "shots", "direct", "english"]
    rows = {line.split()[0]: line.split() for line in lines if line and not line.startswith("-")}
    assert rows["sw→he"][3:7] == ["20.0", "50.0", "50.0", "(en)"]
    assert rows["sw→he"][7:9] == ["50.0", "(en)"]  # the oracle
    assert rows["he→ja"][3:7] == ["40.0", "30.0", "40.0", "(direct)"]  # no ranking: the direct route
    assert rows["mean"][1] == "20" and rows["mean"][2:5] == ["30.0", "40.0", "45.0"]


def test_summary_says_the_gains_the_oracle_agreement_and_the_unranked_pairs():
    pairs = _pairs()
    lines = summary_lines(overall(pairs), {"direct": (15.0, 5.0, 25.0, 20)})
    assert lines[0] == (
        "BridgeX bridge vs direct zero-bridge: +15.00 points (mean over 2 pairs; 95% paired-bootstrap "
        "interval over 20 words [+5.00, +25.00])"
    )
    assert lines[1].startswith("BridgeX bridge vs English pivot: +5.00 points")
    assert "chosen bridge is the oracle best in 1 of 1 pairs" in lines[2]
    assert any(line.startswith("1 of 2 pairs have no bridge ranking in the index") for line in lines)


def test_candidate_copy_and_category_tables():
    pairs = _pairs()
    candidates = candidate_table(pairs).splitlines()
    assert candidates[0] == "| pair | de | en | ja |"
    assert candidates[2] == "| sw→he | 30.0 (2) | **50.0 (1)** | 10.0 (3) |"
    assert candidates[3] == "| he→ja |  |  |  |"
    assert copy_table(pairs).splitlines()[-1] == "| copies % | 40 | 0 | 80 |"
    assert copy_table([pairs[1]]) == ""
    categories = category_table({"month": {"direct": (1, 4), "bridgex": (3, 4)}, "unit": {"direct": (0, 2)}})
    assert categories.splitlines()[0] == "| category | words | direct | bridgex |"
    assert categories.splitlines()[2:] == ["| month | 4 | 25.0 | 75.0 |", "| unit | 2 | 0.0 | – |"]


def test_markdown_report_quotes_the_command_and_the_settings():
    pairs = _pairs()
    text = markdown(
        pairs, overall(pairs), {"model": "m", "mode": "chain", "shots": "3"}, "bridgex-index eval x"
    )
    assert text.startswith("# BLI evaluation: m (chain mode)\n")
    assert "```bash\nbridgex-index eval x\n```" in text
    assert "| shots | 3 |" in text
    assert (
        "## Every candidate bridge" in text and "![P@1 accuracy per pair and strategy](accuracy.png)" in text
    )


def test_write_report_writes_the_markdown_and_a_png_chart(tmp_path):
    pairs = _pairs()
    report, chart = write_report(tmp_path / "out", pairs, overall(pairs), {"model": "m"}, "cmd")
    assert report == tmp_path / "out" / "report.md" and chart == tmp_path / "out" / "accuracy.png"
    assert "cmd" in report.read_text(encoding="utf-8")
    assert chart.read_bytes().startswith(PNG_SIGNATURE)


def test_write_sentence_report_lists_its_settings_and_lines(tmp_path):
    report = write_sentence_report(tmp_path, ["line one", "line two"], {"model": "m", "mode": "chain"}, "cmd")
    text = report.read_text(encoding="utf-8")
    assert text.startswith("# Sentence translation: m, chain mode\n")
    assert "- **model**: m" in text and "```\nline one\nline two\n```" in text


def _result(**fields) -> SimpleNamespace:
    base = dict(
        run_id="abc123",
        created_at=datetime(2026, 12, 5, 3, 4),
        seconds=12.4,
        upstream_calls=7,
        cached_calls=3,
        provenance={"model": "/home/someone/models/gemma-3-270m", "created_at": "2026-12-01T00:00:00+00:00"},
    )
    return SimpleNamespace(**(base | fields))


def _cfg(**fields) -> EvalConfig:
    base = dict(index=Path("/data/idx.duckdb"), endpoint="http://h:8000/v1", model="m", pairs=[("sw", "he")])
    return EvalConfig(**(base | {"dictionaries": "cldr"} | fields))


def test_word_meta_names_the_model_folder_only_and_the_run():
    meta = word_meta(_cfg(limit=40, copy_fallback=False), _result())
    assert meta["index"] == "idx.duckdb (built from gemma-3-270m, 2026-12-01T00:00:00+00:00)"  # no home path
    assert meta["test words per pair"] == "40" and meta["copy fallback"] == "off (the bridged answer as is)"
    assert meta["run"] == "abc123, 2026-12-05 03:04 UTC, 12 s"
    assert meta["words asked"] == "7 (+3 answered from the cache)"
    assert meta["dictionaries"] == "cldr"


def test_a_word_test_set_is_named_with_where_it_is_and_its_hash():
    shipped = {"name": "django-words", "kind": "shipped", "sha256": "0123456789abcdef0123"}
    assert word_test_set_line(shipped) == (
        "test set django-words (shipped in index_builder/data/words, sha256 0123456789abcdef…)"
    )
    meta = word_meta(_cfg(test_set={**shipped, "path": "x"}), _result())
    assert meta["dictionaries"].startswith("test set django-words")


def test_sentence_meta_names_the_test_set_and_the_sentences_asked():
    test_set = {"name": "flores", "kind": "flores-200", "sha256": "ff"}
    meta = sentence_meta(_cfg(task="translate", test_set=test_set), _result())
    assert meta["test set"] == "flores (flores-200, sha256 ff)"
    assert meta["sentences per pair"] == "all" and meta["sentences asked"] == "7 (+3 answered from the cache)"


def test_calibration_lines_show_each_decision_and_what_was_written():
    bridged = RouteDecision("en", "en", 100, 0.1, 0.4, 0.3, 0.2, 0.4, 1e-9, "t", 0.05, ())
    direct = RouteDecision("direct", None, 80, 0.5, None, None, None, None, None, "t", 0.05, ())
    done = Calibration(
        _result(),
        {("sw", "he"): bridged, ("he", "ja"): direct},
        [{}, {}],
        "held-out split (cldr)",
        rule="strict",
        policy_pairs=12,
        policy_bridged=3,
        upstream_calls=7,
        cached_calls=3,
    )
    lines = calibration_lines(done, "word", Path("idx.duckdb"))
    assert lines[0] == "scores: P@1 (fraction of words)"
    assert lines[2].split() == [
        "sw-he",
        "en",
        "100",
        "0.100",
        "0.400",
        "en",
        "+0.300",
        "[+0.20,+0.40]",
        "1e-09",
    ]
    assert lines[3].split() == ["he-ja", "direct", "80", "0.500", "-", "-", "-", "-"]
    assert lines[-3:] == [
        "measured on held-out split (cldr); decision rule strict",
        "wrote 2 word routing decisions to idx.duckdb; 7 upstream calls, 3 cached",
        "route policy (word) refitted for 12 pairs, 3 of them bridged"
        " (bridgex-index route idx.duckdb --source S --target T --task word --explain)",
    ]


def test_calibration_lines_say_how_many_items_each_pair_used_and_why_it_stopped():
    from index_builder.evaluation.route_policy import RouteChoice, Settled

    choice = RouteChoice("direct", "evidence", 0.0, 0.0, 0.0, 0.0, 20, None)
    settled = {("sw", "he"): Settled(choice, 20, "budget"), ("he", "ja"): Settled(choice, 10, "direct")}
    done = Calibration(_result(), {}, [], "s", settled=settled)
    lines = calibration_lines(done, "word", Path("i"))
    assert "sw-he: 20 items measured, stopped: budget" in lines
    assert "he-ja: 10 items measured, stopped: direct" in lines


def test_calibration_lines_say_sentence_scores_are_chrf():
    done = Calibration(_result(), {}, [], "s")
    assert calibration_lines(done, "translate", Path("i"))[0] == "scores: corpus chrF++ / 100"
