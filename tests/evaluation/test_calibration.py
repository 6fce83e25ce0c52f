"""The routing decision rule on planted paired outcomes: exact one-sided McNemar, Holm, Newcombe's CI."""

from __future__ import annotations

import hashlib

import duckdb
import pytest

from bridgex_index.store import ROUTING_COLUMNS, routing_decisions, write_routing_decisions
from index_builder.evaluation.decision import (
    decide,
    holm,
    mcnemar_exact_one_sided,
    paired_difference_interval,
    split_words,
    wilson_interval,
)


def planted(both: int, bridge_only: int, direct_only: int, neither: int) -> tuple[dict, dict]:
    """Per-word hits (direct, bridge) with the given paired table; words w0, w1, ... in a fixed order."""
    pattern = (
        [(True, True)] * both
        + [(False, True)] * bridge_only
        + [(True, False)] * direct_only
        + [(False, False)] * neither
    )
    direct = {f"w{i}": d for i, (d, _b) in enumerate(pattern)}
    bridge = {f"w{i}": b for i, (_d, b) in enumerate(pattern)}
    return direct, bridge


def same_words(direct: dict, **tables: tuple[int, int, int, int]) -> dict[str, dict]:
    """Bridges planted against one direct outcome: each table is (both, bridge_only, direct_only, neither)
    relative to `direct`, which must have both + direct_only hits."""
    out = {}
    right = [w for w, hit in direct.items() if hit]
    wrong = [w for w, hit in direct.items() if not hit]
    for name, (both, bridge_only, direct_only, neither) in tables.items():
        assert both + direct_only == len(right) and bridge_only + neither == len(wrong)
        hits = {w: i < both for i, w in enumerate(right)}
        hits |= {w: i < bridge_only for i, w in enumerate(wrong)}
        out[name] = hits
    return out


def test_a_significant_gain_chooses_the_bridge():
    direct, bridge = planted(both=10, bridge_only=30, direct_only=0, neither=60)
    d = decide(direct, {"en": bridge})
    assert (d.decision, d.bridge, d.n) == ("en", "en", 100)
    assert (d.direct_accuracy, d.bridge_accuracy, d.gain) == (0.10, 0.40, pytest.approx(0.30))
    assert d.p_value == pytest.approx(0.5**30)
    assert 0 < d.ci_low < 0.30 < d.ci_high < 1
    assert d.test.startswith("mcnemar-exact-one-sided+holm(alpha=0.05)")


@pytest.mark.parametrize(
    "table",
    [
        (10, 5, 2, 83),  # small gain: 5 against 2 discordant words, p = 0.23
        (10, 20, 14, 56),  # noisy gain of 6 points: p = 0.19
    ],
)
def test_a_small_or_noisy_gain_stays_direct(table):
    direct, bridge = planted(*table)
    d = decide(direct, {"en": bridge})
    assert d.decision == "direct" and d.bridge == "en" and d.gain > 0
    assert d.p_value > 0.05 and d.ci_low < 0 < d.ci_high


def test_a_worse_bridge_stays_direct():
    direct, bridge = planted(both=5, bridge_only=2, direct_only=20, neither=73)
    d = decide(direct, {"de": bridge})
    assert d.decision == "direct" and d.gain == pytest.approx(-0.18)
    assert d.p_value == pytest.approx(1.0, abs=1e-4) and d.ci_high < 0


def test_holm_turns_a_borderline_gain_into_direct_when_more_bridges_were_tried():
    direct, bridge = planted(both=0, bridge_only=9, direct_only=2, neither=89)  # p = 67/2048 = 0.033
    alone = decide(direct, {"en": bridge})
    assert alone.decision == "en" and alone.p_value == pytest.approx(67 / 2048)
    others = same_words(direct, de=(2, 0, 0, 98), fr=(1, 1, 1, 97))
    family = decide(direct, {"en": bridge, **others})
    assert family.decision == "direct" and family.bridge == "en"
    assert family.p_value == pytest.approx(3 * 67 / 2048)  # Holm: the smallest p times m = 3
    assert [c.significant for c in family.comparisons] == [False, False, False]


def test_ties_between_significant_bridges_go_to_the_smaller_p_then_the_code():
    direct, _ = planted(both=10, bridge_only=0, direct_only=0, neither=90)
    # same accuracy (40%), different discordance: 30 vs 0 against 31 vs 1
    bridges = same_words(direct, fr=(10, 30, 0, 60), de=(9, 31, 1, 59))
    d = decide(direct, bridges)
    assert d.decision == "fr" and d.bridge_accuracy == d.comparisons[0].bridge_accuracy == 0.40
    twins = same_words(direct, fr=(10, 30, 0, 60), de=(10, 30, 0, 60))
    assert decide(direct, twins).decision == "de"  # identical evidence: the first code


def test_equal_discordance_and_identical_outcomes_stay_direct():
    direct, bridge = planted(both=10, bridge_only=8, direct_only=8, neither=74)
    assert decide(direct, {"en": bridge}).decision == "direct"
    direct, bridge = planted(both=30, bridge_only=0, direct_only=0, neither=70)
    d = decide(direct, {"en": bridge})
    assert (d.decision, d.p_value, d.gain) == ("direct", 1.0, 0.0)


def test_no_candidates_is_direct_with_only_the_direct_accuracy():
    direct, _ = planted(both=3, bridge_only=0, direct_only=0, neither=7)
    d = decide(direct, {})
    assert (d.decision, d.bridge, d.direct_accuracy, d.p_value) == ("direct", None, 0.3, None)
    assert d.comparisons == () and d.row("sw", "he")["candidates"] == 0


def test_outcomes_must_be_paired_on_the_same_words():
    direct, bridge = planted(both=1, bridge_only=1, direct_only=1, neither=1)
    del bridge["w0"]
    with pytest.raises(ValueError, match="same words"):
        decide(direct, {"en": bridge})
    with pytest.raises(ValueError, match="no paired words"):
        decide({}, {})


def test_statistics_match_published_values():
    # Cavo et al. 2012 as tabulated by Fagerland, Lydersen & Laake (contingencytables, chapter 8):
    # Newcombe square-and-add -0.0621 (95% CI -0.1186 to -0.0046); exact conditional McNemar P = 0.052479.
    low, high = paired_difference_interval(59, 6, 16, 80)
    assert (round(low, 4), round(high, 4)) == (-0.1186, -0.0046)
    assert 2 * mcnemar_exact_one_sided(6 + 10, 6) == pytest.approx(0.052479, abs=1e-6)
    assert mcnemar_exact_one_sided(0, 0) == 1.0
    assert wilson_interval(0, 10)[1] == pytest.approx(0.2775, abs=1e-4)
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def test_split_is_deterministic_order_free_stable_and_independent_of_the_test_split():
    words = [f"sw:neno{i}" for i in range(2000)]
    cal, ev = split_words(words)
    assert split_words(list(reversed(words))) == (list(reversed(cal)), list(reversed(ev)))
    assert set(cal) | set(ev) == set(words) and not set(cal) & set(ev)
    assert 900 < len(cal) < 1100
    more_cal, _ = split_words([*words, "sw:mpya"])
    assert set(cal) <= set(more_cal)

    # the dictionaries hold out keys whose unsalted hash is under 0.2: those must still split in halves
    def unsalted(key: str) -> float:
        return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64

    held_out = [w for w in words if unsalted(w) < 0.2]
    cal, ev = split_words(held_out)
    assert 0.4 < len(cal) / len(held_out) < 0.6


def test_a_decision_round_trips_through_the_index_table(tmp_path):
    direct, bridge = planted(both=10, bridge_only=30, direct_only=0, neither=60)
    row = decide(direct, {"en": bridge}).row("sw", "he", model="gemma-3-270m", endpoint="http://x")
    assert tuple(row) == ROUTING_COLUMNS
    con = duckdb.connect(str(tmp_path / "i.duckdb"))
    assert routing_decisions(con) == {}  # no table: no decisions
    write_routing_decisions(con, [row])
    write_routing_decisions(con, [dict(row, decision="direct")])  # re-calibrating replaces the row
    stored = routing_decisions(con)
    assert list(stored) == [("sw", "he")] and stored[("sw", "he")]["decision"] == "direct"
    assert stored[("sw", "he")]["candidates"] == 1 and stored[("sw", "he")]["n"] == 100
    with pytest.raises(ValueError, match="no columns"):
        write_routing_decisions(con, [{"source": "sw", "colour": "red"}])


TASK_ERA_ROUTING = """CREATE TABLE routing_decisions (source VARCHAR NOT NULL, target VARCHAR NOT NULL,
    decision VARCHAR NOT NULL, bridge VARCHAR, direct_accuracy DOUBLE, bridge_accuracy DOUBLE, n INTEGER,
    gain DOUBLE, ci_low DOUBLE, ci_high DOUBLE, p_value DOUBLE, test VARCHAR, candidates INTEGER,
    model VARCHAR, endpoint VARCHAR, created_at TIMESTAMP, task VARCHAR NOT NULL DEFAULT 'word',
    PRIMARY KEY (source, target, task))"""


def test_a_table_from_before_test_set_is_read_and_gains_the_column_on_write(tmp_path):
    path = tmp_path / "i.duckdb"
    con = duckdb.connect(str(path))
    con.execute(TASK_ERA_ROUTING)
    con.execute("INSERT INTO routing_decisions (source, target, decision) VALUES ('he', 'sw', 'de')")
    con.close()
    con = duckdb.connect(str(path), read_only=True)  # as the server reads it: no write, test_set NULL
    assert routing_decisions(con)[("he", "sw")]["test_set"] is None
    con.close()
    direct, bridge = planted(both=10, bridge_only=30, direct_only=0, neither=60)
    row = decide(direct, {"en": bridge}).row("sw", "he", test_set="bridgex-django-words sha256:ab")
    con = duckdb.connect(str(path))
    write_routing_decisions(con, [row])
    con.close()
    con = duckdb.connect(str(path), read_only=True)
    stored = routing_decisions(con)
    assert stored[("he", "sw")]["decision"] == "de" and stored[("he", "sw")]["test_set"] is None
    assert stored[("sw", "he")]["test_set"] == "bridgex-django-words sha256:ab"
    con.close()


def test_sentence_decisions_take_a_bridge_only_when_its_chrf_gain_is_significant():
    from index_builder.evaluation.decision import decide_sentences

    references = [f"the cat number {i} sat on the mat near door {i}" for i in range(30)]
    sources = [f"paka namba {i}" for i in range(30)]
    wrong = ["xyz"] * 30
    d = decide_sentences(sources, references, wrong, {"en": references, "de": wrong}, "en")
    assert (d.decision, d.bridge, d.task, d.candidates) == ("en", "en", "translate", 2)
    assert d.bridge_accuracy == 1.0 and d.p_value == 0.0 and d.ci_low > 0
    assert d.row("sw", "en")["task"] == "translate" and d.row("sw", "en")["candidates"] == 2
    same = decide_sentences(sources, references, references, {"en": references}, "en")
    assert (same.decision, same.p_value, same.gain) == ("direct", 1.0, 0.0)
    with pytest.raises(ValueError, match="same sentences"):
        decide_sentences(sources, references[:3], references, {}, "en")
