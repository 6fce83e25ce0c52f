"""Serving settings are declared once (`bridgex_serve.settings`): the command line, the environment of both
deployments and the README's table all come from the declarations."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest
from click.testing import CliRunner
from serve_support import write_index

from bridgex_serve.cli import main
from bridgex_serve.settings import Settings, env_var, kind_of, markdown_table, option_name

README = Path(__file__).resolve().parents[2] / "README.md"
DECLARED = fields(Settings)
# A value other than the default for each kind of setting, as an environment variable writes it.
SAMPLE = {"int": ("7", 7), "float": ("7.5", 7.5), "bool": ("1", True), "keys": ("a,b", ("a", "b"))}


def test_the_readme_settings_table_is_the_generated_one():
    text = README.read_text(encoding="utf-8")
    found = re.search(r"<!-- settings table:[^\n]*-->\n(.*?)<!-- end of settings table -->", text, re.S)
    assert found, "the README has no generated settings table"
    assert found.group(1) == markdown_table(), "stale: run python -m bridgex_serve.settings --markdown"


def test_every_setting_has_a_command_line_option_and_an_environment_variable():
    assert DECLARED
    options = {opt for p in main.params for opt in p.opts}
    for f in DECLARED:
        assert option_name(f) in options, f.name
        assert env_var(f).startswith("BRIDGEX_"), f.name
    assert {p.name for p in main.params} - {"help"} == {f.name for f in DECLARED} | {"log_level"}


@pytest.mark.parametrize("f", [f for f in DECLARED if kind_of(f) in SAMPLE], ids=lambda f: f.name)
def test_each_setting_is_read_from_its_environment_variable(f):
    raw, value = SAMPLE[kind_of(f)]
    if f.name == "port":
        raw, value = "8081", 8081
    if kind_of(f) == "bool" and f.default:
        raw, value = "0", False
    settings = Settings.from_env({env_var(f): raw}, index="x")
    assert getattr(settings, f.name) == value != f.default


def test_the_command_line_wins_over_the_environment(monkeypatch, tmp_path):
    import uvicorn

    seen = {}
    monkeypatch.setattr(
        uvicorn, "run", lambda app, **kw: seen.update(settings=app.state.proxy.settings, **kw)
    )
    monkeypatch.setenv("BRIDGEX_HEADER_TIMEOUT", "3")
    monkeypatch.setenv("BRIDGEX_MAX_TEXTS", "9")
    path = write_index(tmp_path / "i.duckdb")
    result = CliRunner().invoke(main, ["--index", str(path), "--max-texts", "5", "--uncalibrated", "Direct"])
    assert result.exit_code == 0, result.output
    settings = seen["settings"]
    assert (settings.max_texts, settings.header_timeout, settings.uncalibrated) == (5, 3.0, "direct")
    assert seen["http"].header_timeout == 3.0


def test_a_value_out_of_its_declared_range_is_refused_with_its_name():
    with pytest.raises(ValueError, match="max_batch must be at least 1"):
        Settings.from_env({"BRIDGEX_MAX_BATCH": "0"})
    with pytest.raises(ValueError, match="port must be at most 65535"):
        Settings(port=70000).validate()
    result = CliRunner().invoke(main, ["--index", "x", "--header-timeout", "0"])
    assert result.exit_code == 2 and "header-timeout" in result.output


def test_no_index_stops_start_up_with_a_sentence(monkeypatch):
    monkeypatch.delenv("BRIDGEX_INDEX", raising=False)
    result = CliRunner().invoke(main, [])
    assert result.exit_code == 2 and "--index or BRIDGEX_INDEX" in result.output
