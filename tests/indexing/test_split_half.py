"""`--probe-half`: two builds probe disjoint halves of the same entries (for split-half stability)."""

from __future__ import annotations

from pathlib import Path

import pytest

from index_builder.indexing.config import DEFAULT_TOP_RATE, BuildConfig, BuildError, validate

LANGS = ["en", "de", "sw"]


def _plan(half: int | None):
    return validate(
        BuildConfig(model="unused", langs=LANGS, out=Path("x.duckdb"), max_pairs=30, probe_half=half)
    )


def test_the_two_halves_are_disjoint_and_together_the_full_probe_set():
    full, h0, h1 = _plan(None), _plan(0), _plan(1)
    assert full.probe_entries
    for pair, entries in full.probe_entries.items():
        a, b = h0.probe_entries.get(pair, []), h1.probe_entries.get(pair, [])
        assert not set(a) & set(b)
        assert sorted(a + b, key=entries.index) == entries
        assert h0.test_entries[pair] == h1.test_entries[pair] == full.test_entries[pair]


def test_a_third_half_is_an_input_error():
    with pytest.raises(BuildError, match="--probe-half"):
        _plan(2)


def test_top_rate_defaults_follow_the_selector():
    for selector, rate in DEFAULT_TOP_RATE.items():
        assert BuildConfig(model="m", langs=LANGS, out=Path("x"), selector=selector).top_rate == rate
    assert BuildConfig(model="m", langs=LANGS, out=Path("x"), top_rate=0.2).top_rate == 0.2
