"""`bridgex-index eval --demo-bridges model`: the demonstrations' bridge words are the model's own greedy
renderings (one zero-shot `{S}:"a"→{B}:"` call per demonstration word and bridge); gold stays the default."""

from __future__ import annotations

import pytest
from serve_support import running
from test_eval_run import (  # noqa: F401 (fixtures)
    OracleStub,
    cli,
    eval_args,
    index,
    template_index,
)

from index_builder.languages import prompt_name


class MakerStub(OracleStub):
    """The oracle, plus zero-shot demonstration requests: `made-<word>`, or the word itself (`copy`)."""

    copy = False

    def answer(self, prompt: str, stop: list[str]) -> str:
        if "\n" not in prompt:  # `{S}:"a"→{B}:"`, no demonstrations
            word = self._field(prompt.split("→")[0])[1]
            return word if self.copy else f"made-{word}"
        return super().answer(prompt, stop)


@pytest.fixture
def maker(index):  # noqa: F811
    stub = MakerStub(index)
    with running(stub.app) as server:
        stub.server = server
        stub.url = server.url + "/v1"
        yield stub


def demo_lines(prompts: list[str]) -> list[list[str]]:
    """The demonstration lines of every bridged (three-field) prompt, split at the arrows."""
    return [line.split("→") for p in prompts for line in p.split("\n")[:-1] if line.count("→") == 2]


@pytest.mark.parametrize("copy", [False, True])
def test_model_made_demonstration_bridges_replace_gold_ones(index, maker, tmp_path, copy):  # noqa: F811
    maker.copy = copy
    args = eval_args(index, maker.url, tmp_path / "r", "--strategies", "direct,bridgex")
    result = cli(*args, "--demo-bridges", "model")
    assert result.exit_code == 0, (result.stderr, result.exception)
    made = [p for p in maker.prompts if "\n" not in p]
    # 2 pairs × 1 bridge × 3 demonstrations: zero-shot, temperature 0, stop at quote and newline
    assert len(made) == 6 and all(p.endswith(':"') and p.count("→") == 1 for p in made)
    assert all(
        b["temperature"] == 0.0 and b["stop"] == ['"', "\n"] for b in maker.bodies if "\n" not in b["prompt"]
    )
    english = prompt_name("en")
    assert any(p.startswith(f'{prompt_name("sw")}:"') and p.endswith(f'→{english}:"') for p in made)
    lines = demo_lines(maker.prompts)
    assert lines
    for source, bridge, _target in lines:
        word = OracleStub._field(source)[1]
        assert OracleStub._field(bridge)[1] == (word if copy else f"made-{word}")
    expected = "6 of 6 (100.0%)" if copy else "0 of 6 (0.0%)"
    assert f"demonstration bridge words model-made: {expected} copy the source word" in result.stdout
    assert "--demo-bridges model" in (tmp_path / "r" / "report.md").read_text()

    # the default is gold: same bridged prompts but dictionary bridge words, no zero-shot requests
    maker.prompts.clear()
    result = cli(*eval_args(index, maker.url, tmp_path / "g", "--strategies", "direct,bridgex"))
    assert result.exit_code == 0, result.stderr
    assert all("\n" in p for p in maker.prompts)
    gold = demo_lines(maker.prompts)
    assert gold and not any(OracleStub._field(b)[1].startswith("made-") for _s, b, _t in gold)
    assert not any(OracleStub._field(s)[1] == OracleStub._field(b)[1] for s, b, _t in gold)
