"""`bridgex-index eval` end to end: a real index over CLDR dictionaries, an OpenAI-compatible stub whose
answers are known (so every accuracy is exact), the cache, partial results, bad input; and the same
pipeline against a real vLLM server on a tiny random model (slow)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import shutil
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner
from serve_support import (
    free_port,
    running,
    serve_index,  # noqa: F401 (fixture)
    vllm_tiny,  # noqa: F401 (fixture)
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bridgex_index.store import write_index
from index_builder.cli import main
from index_builder.evaluation.client import Window
from index_builder.evaluation.run import UNRANKED
from index_builder.indexing.config import BuildConfig, validate
from index_builder.indexing.languages import english_name, prompt_name

LANGS = ["de", "en", "he", "ja", "sw"]
SENTENCES = Path(__file__).parents[2] / "index_builder" / "data" / "sentences"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The index ranks English first for sw↔he, and (alphabetically) German first everywhere else.
PREFERRED = {("sw", "he"): ["en", "de", "ja"], ("he", "sw"): ["en", "de", "ja"]}
PROBABILITIES = [0.5, 0.3, 0.2]


# ------------------------------------------------------------------------------------------ the index


def build_eval_index(path: Path, langs=LANGS, dictionaries: str = "cldr") -> Path:
    """A real BridgeX index (builder schema and split) with made-up bridge rankings and no neuron tables."""
    plan = validate(
        BuildConfig(model="tiny", langs=list(langs), out=path, dictionaries=dictionaries, max_pairs=40)
    )
    entries: dict[str, list] = {
        k: [] for k in ("source", "target", "source_word", "target_word", "concept", "category", "split")
    }
    for pair in sorted(plan.dictionaries):
        for split, rows in (("probe", plan.probe_entries.get(pair, [])), ("test", plan.test_entries[pair])):
            for e in rows:
                for key, value in zip(
                    entries, (*pair, e.source_word, e.target_word, e.concept, e.category, split), strict=True
                ):
                    entries[key].append(value)
    bridges: dict[str, list] = {k: [] for k in ("source", "target", "bridge", "score", "probability", "rank")}
    for s, t in itertools.permutations(plan.langs, 2):
        others = [c for c in plan.langs if c not in (s, t)]
        order = [c for c in PREFERRED.get((s, t), others) if c in others][:3]
        for rank, (bridge, p) in enumerate(zip(order, PROBABILITIES, strict=False), start=1):
            for key, value in zip(bridges, (s, t, bridge, 1.0 / rank, p, rank), strict=True):
                bridges[key].append(value)
    languages = {
        "code": plan.langs,
        "prompt_name": [prompt_name(c) for c in plan.langs],
        "english_name": [english_name(c) for c in plan.langs],
        "low_resource": [c in plan.low_resource for c in plan.langs],
        "n_tokens": [1] * len(plan.langs),
        "n_neurons": [1] * len(plan.langs),
    }
    params = {"test_fraction": 0.2, "max_pairs": 40, "dictionaries": dictionaries}
    write_index(
        path,
        {"model": "tiny-test", "created_at": "2026-01-01T00:00:00+00:00", "parameters": json.dumps(params)},
        {"languages": languages, "bridges": bridges, "dictionary_entries": entries},
    )
    return path


@pytest.fixture(scope="module")
def template_index(tmp_path_factory) -> Path:
    return build_eval_index(tmp_path_factory.mktemp("eval-index") / "index.duckdb")


@pytest.fixture
def index(template_index, tmp_path) -> Path:
    """A fresh copy per test: evaluation writes its cache and results into the index file."""
    return Path(shutil.copy(template_index, tmp_path / "index.duckdb"))


def rows(index: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(index), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def entries_of(index: Path) -> list[tuple]:
    return rows(index, "SELECT source, target, source_word, target_word, split FROM dictionary_entries")


# ------------------------------------------------------------------------------------------ the stub


class OracleStub:
    """An OpenAI completions server that knows every gold translation, and answers right only through
    English: direct answers are wrong, an English bridge gives the gold, any other bridge copies the source
    word and then answers wrong. `die_after` shuts the server down after that many answers."""

    def __init__(self, index: Path, model: str = "stub"):
        names = {c: prompt_name(c) for c in LANGS}
        self.gold: dict[tuple[str, str, str], str] = {}
        for s, t, ws, wt, _split in entries_of(index):
            self.gold.setdefault((names[s], ws, names[t]), wt)
            self.gold.setdefault((names[t], wt, names[s]), ws)
        self.model = model
        self.prompts: list[str] = []
        self.bodies: list[dict] = []
        self.die_after: int | None = None
        self.direct_knows = False  # True: direct prompts get the gold answer too
        self.demonstrated = False  # True: so do direct prompts whose first demonstration is a sentence
        self.server = None
        self.delay = 0.0  # seconds every completion waits before answering (timeouts)
        self.serial = asyncio.Lock()  # with `one_at_a_time`: completions wait here, as on a busy CPU server
        self.one_at_a_time = False
        self.waiting = 0  # completions received and not yet answered
        self.peak_waiting = 0
        self.app = Starlette(
            routes=[
                Route("/v1/completions", self.completions, methods=["POST"]),
                Route("/v1/models", self.models, methods=["GET"]),
            ]
        )

    def learn_sentences(self, languages: list[str]) -> None:
        """Every line of the shipped sentence set becomes a gold translation of its other languages."""
        lines = {c: (SENTENCES / f"{c}.txt").read_text(encoding="utf-8").split("\n") for c in languages}
        names = {c: prompt_name(c) for c in LANGS}
        for a, b in itertools.permutations(languages, 2):
            for x, y in zip(lines[a], lines[b], strict=True):
                if x.strip() and y.strip():
                    self.gold.setdefault((names[a], x.strip(), names[b]), y.strip())

    @staticmethod
    def _field(segment: str) -> tuple[str, str]:
        label, _, rest = segment.partition(':"')
        return label, rest.rstrip('"')

    def answer(self, prompt: str, stop: list[str]) -> str:
        lines = prompt.split("\n")
        last = lines[-1].split("→")
        demo_arrows = lines[0].count("→") if len(lines) > 1 else 0
        source_name, word = self._field(last[0])
        label = last[-1][:-2]
        if len(last) == 3:  # two-step answer call: S:"w"→B:"b"→T:"
            return (
                self.gold.get((source_name, word, label), "?") if last[1].startswith("English:") else "nope"
            )
        if demo_arrows == 1:  # direct (distilled: sentence demonstrations first)
            knows = self.direct_knows or (self.demonstrated and " " in self._field(lines[0].split("→")[0])[1])
            return self.gold.get((source_name, word, label), "?") if knows else "nope"
        target = lines[0].split("→")[2].partition(':"')[0]
        english = label == "English"
        bridge = self.gold.get((source_name, word, "English"), "bridge") if english else word
        answer = self.gold.get((source_name, word, target), "?") if english else "nope"
        return bridge if '"' in stop else f'{bridge}"→{target}:"{answer}"'

    async def models(self, request: Request):
        return JSONResponse({"object": "list", "data": [{"id": self.model, "object": "model"}]})

    async def completions(self, request: Request):
        """One prompt or a batch of them (bridgex-serve merges prompts into one request)."""
        body = await request.json()
        if body.get("model") != self.model:
            return JSONResponse(
                {"error": {"message": f"The model `{body.get('model')}` does not exist."}}, 404
            )
        if self.die_after is not None and len(self.prompts) >= self.die_after:
            # shutting down: uvicorn stops accepting within 0.1 s and finishes what is in flight
            self.server.server.should_exit = True
            await asyncio.sleep(0.3)
        self.waiting += 1
        self.peak_waiting = max(self.peak_waiting, self.waiting)
        try:
            async with self.serial if self.one_at_a_time else contextlib.nullcontext():
                if self.delay:
                    await asyncio.sleep(self.delay)
        finally:
            self.waiting -= 1
        prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
        self.prompts += prompts
        self.bodies.append(body)
        texts = [self.answer(prompt, body.get("stop") or []) for prompt in prompts]
        choices = [{"index": i, "text": text, "finish_reason": "stop"} for i, text in enumerate(texts)]
        return JSONResponse({"choices": choices})


@pytest.fixture
def oracle(index):
    stub = OracleStub(index)
    with running(stub.app) as server:
        stub.server = server
        stub.url = server.url + "/v1"
        yield stub


# ------------------------------------------------------------------------------------------ helpers


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def eval_args(index: Path, endpoint: str, out: Path, *extra, pairs: str = "sw-he,he-ja", model: str = "stub"):
    return ["eval", "--index", index, "--endpoint", endpoint, "--model", model, "--pairs", pairs,
            "--dictionaries", "cldr", "--limit", "4", "--out", out, "--quiet", *extra]  # fmt: skip


def assert_fails_cleanly(result, *needles: str) -> str:
    """Exit code 2, no traceback, and stderr is one `error:` line naming the problem."""
    assert result.exit_code == 2, (result.exit_code, result.stderr, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) >= 1 and lines[-1].startswith("error: "), result.stderr
    assert sum(line.startswith("error:") for line in lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[-1], (needle, lines[-1])
    return lines[-1]


def accuracies(index: Path) -> dict[tuple[str, str, str, str | None], float]:
    return {
        (s, t, strategy, bridge): acc
        for s, t, strategy, bridge, acc in rows(
            index, "SELECT source, target, strategy, bridge, accuracy FROM evaluations"
        )
    }


# ------------------------------------------------------------------------------------ exact outcomes


@pytest.mark.parametrize(("mode", "calls"), [("chain", 48), ("two-step", 72)])
def test_every_strategy_scores_exactly_what_the_endpoint_answered(index, oracle, tmp_path, mode, calls):
    result = cli(*eval_args(index, oracle.url, tmp_path / "report", "--mode", mode))
    assert result.exit_code == 0, (result.stderr, result.exception)
    # 2 pairs × 4 words × (direct + 3 bridges); two-step asks twice per bridge; the server's copy fallback
    # asks the direct route once more for each word through the two copying (non-English) bridges
    assert len(oracle.prompts) == calls
    acc = accuracies(index)
    assert acc[("sw", "he", "direct", None)] == 0.0
    assert acc[("sw", "he", "english", "en")] == 100.0
    assert acc[("sw", "he", "bridgex", "en")] == 100.0  # the index's choice here is English
    assert acc[("he", "ja", "bridgex", "de")] == 0.0  # and German there
    assert acc[("he", "ja", "english", "en")] == 100.0
    assert {b: a for (s, t, st, b), a in acc.items() if (s, t, st) == ("he", "ja", "all-bridges")} == {
        "de": 0.0,
        "en": 100.0,
        "sw": 0.0,
    }
    copies = rows(index, "SELECT bridge, copies, n FROM evaluations WHERE strategy = 'all-bridges'")
    assert all((c == n) == (b != "en") for b, c, n in copies)  # the stub copies through non-English bridges
    assert rows(index, "SELECT DISTINCT mode, shots, model FROM evaluations") == [(mode, 3, "stub")]

    out = result.stdout
    assert "sw→he" in out and "he→ja" in out
    assert "vs direct zero-bridge: +50.00 points" in out
    assert "vs English pivot: -50.00 points" in out
    assert "oracle best in 1 of 2 pairs" in out
    report = (tmp_path / "report" / "report.md").read_text()
    assert "bridgex-index eval --index" in report and f"--mode {mode}" in report
    assert "| sw→he | 4 | 3 | 0.0 | 100.0 | 100.0 (en) | 100.0 (en) |" in report
    assert "## By word category" in report and "## Every candidate bridge" in report
    assert (tmp_path / "report" / "accuracy.png").read_bytes().startswith(PNG_SIGNATURE)


@pytest.mark.parametrize(("flag", "copying_bridges"), [([], 100.0), (["--no-copy-fallback"], 0.0)])
def test_copy_fallback_answers_copied_bridges_directly_as_the_proxy_does(
    index, oracle, tmp_path, flag, copying_bridges
):
    oracle.direct_knows = True  # direct is right; non-English bridges copy the source word
    result = cli(*eval_args(index, oracle.url, tmp_path / "r", *flag))
    assert result.exit_code == 0, result.stderr
    # the server's copy fallback: one more (direct) call per word through a copying bridge, 2 × 4 × 2
    assert len(oracle.prompts) == (48 if not flag else 32)
    acc = accuracies(index)
    assert acc[("he", "ja", "direct", None)] == 100.0
    assert acc[("he", "ja", "english", "en")] == 100.0
    assert acc[("he", "ja", "bridgex", "de")] == copying_bridges
    calls = rows(index, "SELECT calls FROM evaluations WHERE strategy = 'bridgex' AND source = 'he'")
    assert calls == [(8 if not flag else 4,)]  # one more call per word when falling back
    expected = "on (as the proxy serves)" if not flag else "off (the bridged answer as is)"
    assert f"| copy fallback | {expected} |" in (tmp_path / "r" / "report.md").read_text()


def test_requests_are_temperature_zero_completions_that_stop_at_quote_or_newline(index, oracle, tmp_path):
    result = cli(*eval_args(index, oracle.url, tmp_path / "r", "--strategies", "direct,english"))
    assert result.exit_code == 0, result.stderr
    for body in oracle.bodies:
        assert body["temperature"] == 0.0 and body["model"] == "stub" and body["stream"] is False
        assert body["max_tokens"] <= 40
        assert body["stop"] in (['"', "\n"], ["\n"])
    direct = [p for p in oracle.prompts if p.split("\n")[0].count("→") == 1]
    assert direct and all(p.endswith(':"') for p in direct)
    sw_he = [p for p in direct if p.split("\n")[-1].startswith('Kiswahili:"')]
    assert len(sw_he) == 4 and all(p.endswith('→עברית:"') for p in sw_he)


def test_test_words_are_held_out_and_demonstrations_are_probe_words(index, oracle, tmp_path):
    result = cli(*eval_args(index, oracle.url, tmp_path / "r", "--shots", "2"))
    assert result.exit_code == 0, result.stderr
    names = {prompt_name(c): c for c in LANGS}
    probe, test = set(), set()
    for s, t, ws, wt, split in entries_of(index):
        (probe if split == "probe" else test).update({(s, ws), (t, wt)})
    for prompt in oracle.prompts:
        lines = prompt.split("\n")
        last = [OracleStub._field(seg) for seg in lines[-1].split("→")]
        source, word = names[last[0][0]], last[0][1]
        assert (source, word) in test and (source, word) not in probe
        assert len(lines) == 3  # two demonstrations, then the question
        for line in lines[:-1]:
            fields = [OracleStub._field(seg) for seg in line.split("→")]
            for label, demo_word in fields:
                assert (names[label], demo_word) not in test


def test_limit_takes_a_stable_sample(index, oracle, tmp_path):
    cli(*eval_args(index, oracle.url, tmp_path / "a", "--strategies", "direct"))
    first = list(oracle.prompts)
    oracle.prompts.clear()
    other = Path(shutil.copy(index, tmp_path / "other.duckdb"))
    rows_before = rows(other, "SELECT count(*) FROM eval_answers")[0][0]
    con = duckdb.connect(str(other))
    con.execute("DELETE FROM eval_answers")
    con.close()
    assert rows_before == 8
    cli(*eval_args(other, oracle.url, tmp_path / "b", "--strategies", "direct"))
    assert sorted(oracle.prompts) == sorted(first)


def test_a_bridgex_endpoint_is_asked_directly_without_a_child_server(index, oracle, tmp_path, monkeypatch):
    from bridgex_serve.app import create_app
    from bridgex_serve.settings import Settings
    from index_builder.evaluation import client

    def no_child(*_args, **_kwargs):
        raise AssertionError("a BridgeX endpoint needs no child server")

    monkeypatch.setattr(client.subprocess, "Popen", no_child)
    with running(create_app(Settings(index=str(index), upstream=oracle.url.removesuffix("/v1")))) as proxy:
        result = cli(*eval_args(index, proxy.url + "/v1", tmp_path / "r"))
    assert result.exit_code == 0, (result.stderr, result.exception)
    assert len(oracle.prompts) == 48  # the same upstream calls as through a child server
    assert accuracies(index)[("sw", "he", "english", "en")] == 100.0


def test_a_child_server_that_cannot_start_is_one_line_and_exit_2(index, oracle, tmp_path, monkeypatch):
    monkeypatch.setenv("BRIDGEX_LOW_RESOURCE", "xx")  # the child reads its settings from the environment
    result = cli(*eval_args(index, oracle.url, tmp_path / "r"))
    assert_fails_cleanly(result, "bridgex-serve: cannot start", "'xx'")
    assert oracle.prompts == [] and rows(index, "SELECT count(*) FROM eval_answers") == [(0,)]


# ------------------------------------------------------------------------------------------ the cache


def test_a_rerun_makes_no_upstream_call_even_with_the_endpoint_down(index, oracle, tmp_path):
    args = eval_args(index, oracle.url, tmp_path / "r")
    assert cli(*args).exit_code == 0
    made = len(oracle.prompts)
    assert rows(index, "SELECT count(*) FROM eval_answers")[0][0] == 32  # one answer per (word, arm)

    again = cli(*args)
    assert again.exit_code == 0, again.stderr
    assert len(oracle.prompts) == made
    assert "0 upstream calls" in again.stdout

    down = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    offline = cli(*eval_args(index, down, tmp_path / "r2"))
    assert offline.exit_code == 0, offline.stderr
    runs = rows(index, "SELECT upstream_calls, complete FROM evaluation_runs ORDER BY created_at")
    assert runs == [(32, True), (0, True), (0, True)]
    per_run = rows(index, "SELECT run_id, count(*), sum(hits) FROM evaluations GROUP BY run_id")
    assert len(per_run) == 3 and len({(n, h) for _r, n, h in per_run}) == 1


def test_dry_run_counts_requests_and_cached_ones_without_calling(index, oracle, tmp_path):
    args = eval_args(index, oracle.url, tmp_path / "r")
    before = cli(*args, "--dry-run")
    assert before.exit_code == 0, before.stderr
    assert "32 words to ask bridgex-serve (0 cached)" in before.stdout
    assert oracle.prompts == [] and not (tmp_path / "r").exists()
    assert cli(*args).exit_code == 0
    after = cli(*args, "--dry-run")
    assert "32 words to ask bridgex-serve (32 cached)" in after.stdout


def test_direct_prompts_do_not_depend_on_the_strategies_asked_for(index, oracle, tmp_path):
    assert cli(*eval_args(index, oracle.url, tmp_path / "a", "--strategies", "direct")).exit_code == 0
    direct = list(oracle.prompts)
    assert cli(*eval_args(index, oracle.url, tmp_path / "b")).exit_code == 0
    assert len(oracle.prompts) == 48  # the 8 direct words came from the cache (+16 copy fallbacks)
    assert not set(direct) & set(oracle.prompts[len(direct) :])
    assert "95% paired-bootstrap interval over 8 words" in (tmp_path / "b" / "report.md").read_text()


def test_the_cache_is_keyed_by_model_and_request(index, oracle, tmp_path):
    assert cli(*eval_args(index, oracle.url, tmp_path / "a", "--strategies", "direct")).exit_code == 0
    made = len(oracle.prompts)
    assert (
        cli(*eval_args(index, oracle.url, tmp_path / "b", "--strategies", "direct", "--shots", "2")).exit_code
        == 0
    )
    assert len(oracle.prompts) == 2 * made  # other demonstrations: other prompts
    oracle.model = "other"
    result = cli(*eval_args(index, oracle.url, tmp_path / "c", "--strategies", "direct", model="other"))
    assert result.exit_code == 0
    assert len(oracle.prompts) == 3 * made
    assert rows(index, "SELECT model, count(*) FROM eval_answers GROUP BY model ORDER BY model") == [
        ("other", made),
        ("stub", 2 * made),
    ]


# ------------------------------------------------------------------------------------ failures


def test_endpoint_dying_mid_run_keeps_answers_and_complete_cells_then_resumes(index, oracle, tmp_path):
    oracle.die_after = 12
    args = eval_args(index, oracle.url, tmp_path / "r", "--concurrency", "2")
    result = cli(*args)
    line = assert_fails_cleanly(result, "cannot reach", oracle.url, "run the same command again")
    assert "complete cells written" in line
    cached = {canonical_body(r) for (r,) in rows(index, "SELECT request FROM eval_answers")}
    assert 1 <= len(cached) < 32
    cells = rows(index, "SELECT n FROM evaluations")
    assert cells and all(n == 4 for (n,) in cells)  # only complete cells
    assert len(cells) < 10  # 2 pairs × (direct, english, bridgex, 3 candidates) when complete
    assert rows(index, "SELECT complete FROM evaluation_runs") == [(False,)]
    assert not (tmp_path / "r" / "report.md").exists()

    revived = OracleStub(index)
    with running(revived.app) as server:
        resumed = cli(*eval_args(index, server.url + "/v1", tmp_path / "r"))
    assert resumed.exit_code == 0, resumed.stderr
    everything = {canonical_body(r) for (r,) in rows(index, "SELECT request FROM eval_answers")}
    assert cached < everything and len(everything) == 32
    runs = rows(index, "SELECT upstream_calls, complete FROM evaluation_runs ORDER BY created_at")
    assert runs[1] == (32 - len(cached), True)  # nothing asked twice


def canonical_body(request: str) -> str:
    return json.dumps(json.loads(request)["body"], sort_keys=True)


def test_a_timeout_says_which_knobs_to_turn(index, oracle, tmp_path):
    oracle.delay = 2.0
    result = cli(*eval_args(index, oracle.url, tmp_path / "r", "--timeout", "0.5"))
    line = assert_fails_cleanly(result, "Timeout", "run the same command again")
    assert line.endswith("it timed out: raise --timeout)")


def unrank(index: Path, *pairs: tuple[str, str]) -> None:
    """Drop the index's bridge ranking of `pairs` (both directions), as a build whose pair had no voting
    layer writes it."""
    con = duckdb.connect(str(index))
    try:
        for s, t in pairs:
            con.execute("DELETE FROM bridges WHERE (source, target) IN ((?, ?), (?, ?))", [s, t, t, s])
    finally:
        con.close()


def test_an_unranked_pair_scores_direct_and_english_and_bridgex_is_its_direct_route(index, oracle, tmp_path):
    """Finding 3 of issue 22: a pair the index ranks no bridge for used to stop the whole evaluation."""
    unrank(index, ("sw", "he"))
    strategies = ("--strategies", "direct,english,bridgex")
    result = cli(*eval_args(index, oracle.url, tmp_path / "r", *strategies))
    assert result.exit_code == 0, (result.stderr, result.exception)
    acc = accuracies(index)
    assert acc[("sw", "he", "direct", None)] == 0.0
    assert acc[("sw", "he", "english", "en")] == 100.0
    assert acc[("sw", "he", "bridgex", None)] == 0.0  # the index's route: direct, the same answers
    assert acc[("he", "ja", "bridgex", "de")] == 0.0  # the ranked pair keeps its bridge
    table = {line.split()[0]: line.split() for line in result.stdout.splitlines() if "→" in line}
    assert table["sw→he"][3:7] == ["0.0", "100.0", "0.0", "(direct)"]  # direct, english, bridgex (route)
    assert table["he→ja"][3:7] == ["0.0", "100.0", "0.0", "(de)"]
    assert "1 of 2 pairs have no bridge ranking in the index: BridgeX routes them directly" in result.stdout
    report = (tmp_path / "r" / "report.md").read_text(encoding="utf-8")
    assert "| sw→he | 4 | 3 | 0.0 | 100.0 | 0.0 (direct) |" in report


def test_an_unranked_pair_is_named_with_its_direct_route_when_not_quiet(index, oracle, tmp_path):
    unrank(index, ("sw", "he"))
    args = [a for a in eval_args(index, oracle.url, tmp_path / "r", "--dry-run") if a != "--quiet"]
    result = cli(*args)
    assert result.exit_code == 0, (result.stderr, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.startswith("sw→he:")]
    assert lines, result.stderr
    assert lines[0].endswith(UNRANKED)
    assert "its route is direct (bridgex is scored as direct)" in UNRANKED


def test_a_server_answering_one_batch_at_a_time_is_not_flooded_into_timeouts(index, oracle, tmp_path):
    """Finding 3 of issue 22: with every batch sent at once, a server that answers one at a time (the
    README's CPU vLLM) kept the last ones queued past --timeout. Here 16 batches (4 pairs × 4 arms) need
    about 24 serial completions of 0.25 s: 6 s of work, twice the timeout. The client's window sends more
    batches only while answers come back quickly, so no request waits out its timeout in the queue."""
    oracle.one_at_a_time, oracle.delay = True, 0.25
    pairs = "sw-he,he-ja,de-sw,ja-de"
    result = cli(*eval_args(index, oracle.url, tmp_path / "r", "--timeout", "3", pairs=pairs))
    assert result.exit_code == 0, (result.stderr, result.exception)
    assert len(rows(index, "SELECT * FROM evaluations")) == 4 * (
        3 + 3
    )  # direct, english, bridgex + 3 bridges
    assert 1 <= oracle.peak_waiting <= 8  # never half of the 16 batches at once


def test_the_window_opens_on_quick_answers_and_halves_on_slow_ones():
    window = Window(ceiling=3, timeout=100.0)
    assert window.limit == 1
    for _ in range(5):
        window.answered(25.0)  # a quarter of the timeout: room for one more batch
    assert window.limit == 3  # never above --concurrency
    window.answered(40.0)  # between a quarter and a half: hold
    assert window.limit == 3
    window.answered(51.0)
    assert window.limit == 1
    window.timed_out()
    assert window.limit == 1  # never below one


def test_the_window_holds_back_batches_beyond_its_limit():
    """Requests past the limit wait in the client (their timeout has not started) until one comes back."""

    async def scenario() -> list[int]:
        window = Window(ceiling=8, timeout=100.0)
        window.limit = 2
        release = asyncio.Event()
        entered: list[int] = []

        async def batch(k: int) -> None:
            async with window:
                entered.append(k)
                await release.wait()

        tasks = [asyncio.ensure_future(batch(k)) for k in range(4)]
        for _ in range(20):  # let every task run until it blocks
            await asyncio.sleep(0)
        held = len(entered)
        release.set()
        await asyncio.gather(*tasks)
        return [held, len(entered), window.peak]

    assert asyncio.run(scenario()) == [2, 4, 2]


def test_endpoint_down_is_one_line_and_exit_2(index, tmp_path):
    url = f"http://127.0.0.1:{free_port()}/v1"
    line = assert_fails_cleanly(cli(*eval_args(index, url, tmp_path / "r")), f"cannot reach {url}")
    assert line.startswith(f"error: cannot reach {url}: ")
    assert rows(index, "SELECT count(*) FROM eval_answers") == [(0,)]
    assert rows(index, "SELECT count(*) FROM evaluations") == [(0,)]


def test_model_the_endpoint_does_not_serve_is_one_line(index, oracle, tmp_path):
    result = cli(*eval_args(index, oracle.url, tmp_path / "r", model="nope"))
    assert_fails_cleanly(result, "answered 404", "does not exist")


@pytest.mark.parametrize(
    ("pairs", "needles"),
    [
        ("sw-xx", ["sw-xx", "'xx' is not in this index", "de, en, he, ja, sw"]),
        ("fr-sw", ["'fr' is not in this index"]),
        ("swhe", ["'swhe' is not a pair like sw-he"]),
        ("sw-sw", ["same source and target"]),
        ("sw-he-ja", ["not a pair"]),
        (",", ["no pair given"]),
    ],
)
def test_bad_pairs_fail_before_any_call(index, tmp_path, pairs, needles):
    url = f"http://127.0.0.1:{free_port()}/v1"
    assert_fails_cleanly(cli(*eval_args(index, url, tmp_path / "r", pairs=pairs)), *needles)


@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        (["--strategies", "direct,magic"], ["unknown strategy 'magic'"]),
        (["--shots", "17"], ["--shots must be 0..16"]),
        (["--limit", "0"], ["--limit must be at least 1"]),
        (["--concurrency", "0"], ["--concurrency must be at least 1"]),
    ],
)
def test_bad_options_fail_cleanly(index, tmp_path, extra, needles):
    url = f"http://127.0.0.1:{free_port()}/v1"
    assert_fails_cleanly(cli(*eval_args(index, url, tmp_path / "r", *extra)), *needles)


def test_bad_endpoint_and_dictionary_flags(index, tmp_path):
    assert_fails_cleanly(cli(*eval_args(index, "localhost:8000", tmp_path / "r")), "http(s) URL")
    args = [
        a
        for a in eval_args(index, "http://127.0.0.1:9/v1", tmp_path / "r")
        if a not in ("--dictionaries", "cldr")
    ]
    assert_fails_cleanly(cli(*args), "exactly one of --dictionaries cldr or --dict-dir")
    assert_fails_cleanly(cli(*args, "--dictionaries", "cldr", "--dict-dir", tmp_path), "exactly one of")


def test_unreadable_or_missing_index_is_exit_2(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/v1"
    garbage = tmp_path / "garbage.duckdb"
    garbage.write_bytes(b"not a duckdb file\n" * 300)
    assert_fails_cleanly(cli(*eval_args(garbage, url, tmp_path / "r")), "not a readable DuckDB file")
    assert_fails_cleanly(cli(*eval_args(tmp_path / "missing.duckdb", url, tmp_path / "r")), "index not found")
    empty = tmp_path / "empty.duckdb"
    duckdb.connect(str(empty)).close()
    assert_fails_cleanly(cli(*eval_args(empty, url, tmp_path / "r")), "not a BridgeX index")


def test_dictionaries_other_than_the_index_was_built_from_are_refused(index, tmp_path):
    muse = tmp_path / "muse"
    muse.mkdir()
    for a, b in itertools.combinations(LANGS, 2):
        (muse / f"{a}-{b}.txt").write_text(f"{a}word {b}word\n{a}other {b}other\n", encoding="utf-8")
    args = [
        a
        for a in eval_args(index, "http://127.0.0.1:9/v1", tmp_path / "r")
        if a not in ("--dictionaries", "cldr")
    ]
    assert_fails_cleanly(cli(*args, "--dict-dir", muse), "held-out split does not match --dict-dir")


def test_muse_index_evaluates_with_its_dict_dir(tmp_path):
    """A MUSE index (no concepts): demonstrations are aligned through the source word."""
    muse = tmp_path / "muse"
    muse.mkdir()
    words = {c: [f"{c}{i:02d}" for i in range(60)] for c in ("en", "sw", "he", "de")}
    for a, b in itertools.combinations(sorted(words), 2):
        lines = [f"{x} {y}" for x, y in zip(words[a], words[b], strict=True)]
        (muse / f"{a}-{b}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    index = build_eval_index(tmp_path / "muse.duckdb", ["de", "en", "he", "sw"], str(muse))
    stub = OracleStub(index)
    with running(stub.app) as server:
        args = [a for a in eval_args(index, server.url + "/v1", tmp_path / "r", pairs="sw-he") if a != "cldr"]
        args[args.index("--dictionaries")] = "--dict-dir"
        args.insert(args.index("--dict-dir") + 1, str(muse))
        result = cli(*args)
    assert result.exit_code == 0, result.stderr
    assert accuracies(index)[("sw", "he", "english", "en")] == 100.0
    assert stub.prompts and all(p.count("\n") == 3 for p in stub.prompts)  # three demonstrations each


# ------------------------------------------------------------------------------- --test-dict-dir (MUSE)


def muse_test_args(index: Path, endpoint: str, out: Path, test_dir: Path, *extra) -> list:
    return ["eval", "--index", index, "--endpoint", endpoint, "--model", "stub", "--test-dict-dir", test_dir,
            "--strategies", "direct,english", "--out", out, "--quiet", *extra]  # fmt: skip


def write_test_dict(index: Path, directory: Path) -> tuple[list[str], str]:
    """`sw-he.txt` of 5 held-out sw→he entries the stub knows, plus one line whose sw word is a probe word
    of the index. Returns (the held-out source words, the probe word)."""
    directory.mkdir()
    held = {(ws, wt) for s, t, ws, wt, split in entries_of(index) if (s, t, split) == ("he", "sw", "test")}
    probe = sorted(wt for s, t, _ws, wt, split in entries_of(index) if (s, t, split) == ("he", "sw", "probe"))
    chosen = sorted((wt, ws) for ws, wt in held if " " not in ws + wt and wt not in probe)[:5]
    lines = [f"{sw} {he}" for sw, he in chosen] + [f"{probe[0]} שלום"]
    (directory / "sw-he.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [sw for sw, _he in chosen], probe[0]


def test_a_muse_test_dir_is_scored_without_its_probe_words_and_named_in_the_run(index, oracle, tmp_path):
    words, probe_word = write_test_dict(index, tmp_path / "muse-test")
    result = cli(*muse_test_args(index, oracle.url, tmp_path / "r", tmp_path / "muse-test"))
    assert result.exit_code == 0, (result.stderr, result.exception)
    asked = {OracleStub._field(p.split("\n")[-1].split("→")[0])[1] for p in oracle.prompts}
    assert probe_word not in asked and set(words) <= asked
    counts = dict(
        ((s, t, strategy), (n, acc))
        for s, t, strategy, n, acc in rows(
            index, "SELECT source, target, strategy, n, accuracy FROM evaluations"
        )
    )
    assert counts == {("sw", "he", "direct"): (5, 0.0), ("sw", "he", "english"): (5, 100.0)}
    (params,) = rows(index, "SELECT parameters FROM evaluation_runs")[0]
    test_set = json.loads(params)["test_set"]
    assert test_set["name"].startswith("muse-test") and len(test_set["sha256"]) == 64
    assert test_set["probe_words_dropped"] >= 1 and test_set["pairs"] == ["sw-he"]
    assert "muse-test" in (tmp_path / "r" / "report.md").read_text(encoding="utf-8")


def test_shipped_is_the_installed_word_set_named_in_the_run_and_report(index, oracle, tmp_path):
    from index_builder.evaluation.testsets import shipped_words

    names = {c: prompt_name(c) for c in LANGS}
    for (s, t), d in shipped_words(LANGS).dictionaries.items():  # the stub learns the Django words
        for e in d.entries:
            oracle.gold.setdefault((names[s], e.source_word, names[t]), e.target_word)
    args = muse_test_args(index, oracle.url, tmp_path / "r", "shipped", "--pairs", "sw-he", "--limit", "4")
    result = cli(*args)
    assert result.exit_code == 0, (result.stderr, result.exception)
    assert accuracies(index) == {("sw", "he", "direct", None): 0.0, ("sw", "he", "english", "en"): 100.0}
    command, params = rows(index, "SELECT command, parameters FROM evaluation_runs")[0]
    test_set = json.loads(params)["test_set"]
    assert (test_set["kind"], test_set["pairs"]) == ("shipped", ["sw-he"])
    assert test_set["name"].startswith("bridgex-django-words") and len(test_set["sha256"]) == 64
    assert "--test-dict-dir shipped" in command
    report = (tmp_path / "r" / "report.md").read_text(encoding="utf-8")
    assert "bridgex-django-words" in report and "shipped in index_builder/data/words" in report


def test_test_dict_dir_validation_is_one_line_and_exit_2(index, tmp_path):
    url = f"http://127.0.0.1:{free_port()}/v1"
    muse = tmp_path / "t"
    muse.mkdir()
    (muse / "sw-xx.txt").write_text("mbwa dog\n", encoding="utf-8")
    assert_fails_cleanly(cli(*muse_test_args(index, url, tmp_path / "r", muse)), "'xx' is not in the index")
    (muse / "sw-xx.txt").unlink()
    (muse / "sw-he.txt").write_text("mbwa כלב\nonlyoneword\n", encoding="utf-8")
    assert_fails_cleanly(cli(*muse_test_args(index, url, tmp_path / "r", muse)), "sw-he.txt", ":2")
    args = muse_test_args(index, url, tmp_path / "r", muse, "--pairs", "he-sw")
    assert_fails_cleanly(cli(*args), "he-sw.txt: no such file")
    args = muse_test_args(index, url, tmp_path / "r", muse, "--dictionaries", "cldr")
    assert_fails_cleanly(cli(*args), "--test-dict-dir replaces --dictionaries")
    assert_fails_cleanly(
        cli(*muse_test_args(index, url, tmp_path / "r", tmp_path / "none")), "--test-dict-dir"
    )


# ------------------------------------------------------------------------------ --task translate


def translate_args(index: Path, endpoint: str, out: Path, *extra, pairs: str = "sw-he") -> list:
    return ["eval", "--index", index, "--endpoint", endpoint, "--model", "stub", "--task", "translate",
            "--pairs", pairs, "--limit", "6", "--out", out, "--quiet", *extra]  # fmt: skip


def test_sentences_are_scored_with_chrf_per_strategy_against_direct(index, oracle, tmp_path):
    oracle.learn_sentences(["en", "sw", "he"])
    args = translate_args(index, oracle.url, tmp_path / "r", "--strategies", "direct,english,bridgex")
    result = cli(*args)
    assert result.exit_code == 0, (result.stderr, result.exception)
    sw = [line.strip() for line in (SENTENCES / "sw.txt").read_text(encoding="utf-8").split("\n")]
    asked = {OracleStub._field(p.split("\n")[-1].split("→")[0])[1] for p in oracle.prompts}
    assert len(asked) == 6 and asked <= set(sw)
    got = {
        (strategy, metric): (task, n, hits, score)
        for strategy, task, metric, n, hits, score in rows(
            index, "SELECT strategy, task, metric, n, hits, score FROM evaluations"
        )
    }
    # the stub answers right only through English: that route is the reference itself, cut at its first
    # quote (the prompt's closing quote) where the reference has one
    assert got[("english", "chrf++")][:3] == ("translate", 6, None)
    assert got[("english", "chrf++")][3] > 90.0 and got[("english", "bleu")][3] > 80.0
    assert got[("direct", "chrf++")][3] < 10.0
    assert set(got) == {(s, m) for s in ("direct", "english", "bridgex") for m in ("chrf++", "bleu")}
    assert "english" in result.stdout and "*" in result.stdout  # +Δ with an interval that excludes 0
    # the last column is the length ratio: the English route's answers are the references (some cut short)
    english = next(line for line in result.stdout.splitlines() if line.split()[1:2] == ["english"])
    assert result.stdout.splitlines()[0].split()[-1] == "len" and 0.5 < float(english.split()[-1]) <= 1.0
    (params,) = rows(index, "SELECT parameters FROM evaluation_runs")[0]
    test_set = json.loads(params)["test_set"]
    assert test_set["name"] == "bridgex-django-sentences" and len(test_set["sha256"]) == 64
    assert "chrF++" in (tmp_path / "r" / "report.md").read_text(encoding="utf-8")


OLD_EVALUATIONS = """CREATE TABLE evaluations (run_id VARCHAR NOT NULL, created_at TIMESTAMP NOT NULL,
    model VARCHAR NOT NULL, endpoint VARCHAR NOT NULL, mode VARCHAR NOT NULL, shots INTEGER NOT NULL,
    strategy VARCHAR NOT NULL, source VARCHAR NOT NULL, target VARCHAR NOT NULL, bridge VARCHAR,
    probability DOUBLE, n INTEGER NOT NULL, hits INTEGER NOT NULL, accuracy DOUBLE NOT NULL,
    copies INTEGER NOT NULL, calls INTEGER NOT NULL, seconds DOUBLE NOT NULL)"""


def test_an_index_with_old_evaluation_rows_gains_task_metric_and_score(index, oracle, tmp_path):
    con = duckdb.connect(str(index))
    con.execute(OLD_EVALUATIONS)
    con.execute("INSERT INTO evaluations VALUES ('old', now(), 'm', 'e', 'chain', 3, 'direct', 'sw', 'he',"
                " NULL, NULL, 4, 1, 25.0, 0, 4, 1.0)")  # fmt: skip
    con.close()
    oracle.learn_sentences(["sw", "he"])
    result = cli(*translate_args(index, oracle.url, tmp_path / "t", "--strategies", "direct"))
    assert result.exit_code == 0, (result.stderr, result.exception)
    result = cli(*eval_args(index, oracle.url, tmp_path / "w", "--strategies", "direct", pairs="sw-he"))
    assert result.exit_code == 0, (result.stderr, result.exception)
    got = rows(index, "SELECT run_id = 'old', task, metric, score = accuracy FROM evaluations ORDER BY ALL")
    assert got == [
        (False, "translate", "bleu", None),
        (False, "translate", "chrf++", None),
        (False, "word", "p@1", True),
        (True, "word", "p@1", True),
    ]


def test_a_flores_layout_is_read_as_the_test_dir(index, oracle, tmp_path):
    flores = tmp_path / "flores" / "devtest"
    flores.mkdir(parents=True)
    (flores / "swh_Latn.devtest").write_text("Habari ya asubuhi\nAsante sana\n", encoding="utf-8")
    (flores / "heb_Hebr.devtest").write_text("בוקר טוב\nתודה רבה\n", encoding="utf-8")
    args = translate_args(index, oracle.url, tmp_path / "r", "--test-dir", tmp_path / "flores")
    result = cli(*args, "--strategies", "direct")
    assert result.exit_code == 0, (result.stderr, result.exception)
    asked = {OracleStub._field(p.split("\n")[-1].split("→")[0])[1] for p in oracle.prompts}
    assert asked == {"Habari ya asubuhi", "Asante sana"}
    assert rows(index, "SELECT DISTINCT task, n FROM evaluations") == [("translate", 2)]


@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        (["--dictionaries", "cldr"], ["--task translate reads sentences"]),
        (["--test-dir", "/nonexistent/set"], ["--test-dir", "no such"]),
    ],
)
def test_translate_validation_is_one_line_and_exit_2(index, tmp_path, extra, needles):
    url = f"http://127.0.0.1:{free_port()}/v1"
    assert_fails_cleanly(cli(*translate_args(index, url, tmp_path / "r", *extra)), *needles)


def test_a_sentence_set_without_a_pair_language_is_refused(index, tmp_path):
    url = f"http://127.0.0.1:{free_port()}/v1"
    parallel = tmp_path / "set"
    parallel.mkdir()
    for code in ("sw", "he"):
        (parallel / f"{code}.txt").write_text("a\nb\n", encoding="utf-8")
    args = translate_args(index, url, tmp_path / "r", "--test-dir", parallel, pairs="sw-ja")
    assert_fails_cleanly(cli(*args), "ja.txt: no such file")
    (parallel / "ja.txt").write_text("a\n", encoding="utf-8")
    assert_fails_cleanly(cli(*args), "lines where the other files have")


def test_test_dir_without_translate_is_refused(index, tmp_path):
    url = f"http://127.0.0.1:{free_port()}/v1"
    args = eval_args(index, url, tmp_path / "r", "--test-dir", tmp_path)
    assert_fails_cleanly(cli(*args), "--test-dir is a sentence set")


# ------------------------------------------------------------------------------------ real vLLM (slow)


@pytest.mark.slow
def test_strategies_against_real_vllm_with_cache_and_report(vllm_tiny, index, tmp_path):  # noqa: F811
    """A random tiny model: accuracies are meaningless, but every call, parse, cache and file is real."""
    url = vllm_tiny.url + "/v1"
    out = tmp_path / "report"
    args = eval_args(index, url, out, "--limit", "3", "--concurrency", "16", model="tiny")
    first = cli(*args)
    assert first.exit_code == 0, (first.stderr, first.exception)
    made = rows(index, "SELECT upstream_calls FROM evaluation_runs")[0][0]
    assert made >= 2 * 3 * 4  # at least one call per pair × word × arm
    assert rows(index, "SELECT count(*) FROM eval_answers WHERE model = 'tiny'")[0][0] == made
    cells = rows(index, "SELECT strategy, n, accuracy FROM evaluations")
    assert len(cells) == 2 * 6 and all(n == 3 and 0 <= a <= 100 for _s, n, a in cells)
    assert (out / "report.md").read_text().count("→") >= 2
    assert (out / "accuracy.png").read_bytes().startswith(PNG_SIGNATURE)

    down = f"http://127.0.0.1:{free_port()}/v1"  # the re-run needs no server at all
    again = cli(*eval_args(index, down, out, "--limit", "3", "--concurrency", "16", model="tiny"))
    assert again.exit_code == 0, again.stderr
    assert rows(index, "SELECT upstream_calls FROM evaluation_runs ORDER BY created_at") == [(made,), (0,)]
    by_run = rows(index, "SELECT run_id, sum(hits), count(*) FROM evaluations GROUP BY run_id")
    assert len({(h, n) for _r, h, n in by_run}) == 1


@pytest.mark.slow
def test_two_step_against_real_vllm(vllm_tiny, index, tmp_path):  # noqa: F811
    url = vllm_tiny.url + "/v1"
    result = cli(*eval_args(index, url, tmp_path / "r", "--mode", "two-step", "--limit", "2",
                            "--no-copy-fallback", "--strategies", "direct,bridgex", pairs="sw-he",
                            model="tiny"))  # fmt: skip
    assert result.exit_code == 0, (result.stderr, result.exception)
    # direct: one call per word; two-step bridge: two calls per word
    assert rows(index, "SELECT strategy, calls FROM evaluations ORDER BY strategy") == [
        ("bridgex", 4),
        ("direct", 2),
    ]


@pytest.mark.slow
def test_translate_against_real_vllm_with_cache(vllm_tiny, index, tmp_path):  # noqa: F811
    """Sentences through the proxy's translate path on a random tiny model: scores are meaningless, but
    every call, answer, score row, interval and the cache are real."""
    url = vllm_tiny.url + "/v1"
    args = translate_args(
        index, url, tmp_path / "r", "--limit", "3", "--strategies", "direct,english,bridgex"
    )
    first = cli(*[a if a != "stub" else "tiny" for a in args])
    assert first.exit_code == 0, (first.stderr, first.exception)
    made = rows(index, "SELECT upstream_calls FROM evaluation_runs")[0][0]
    assert made >= 2 * 3  # every sentence × arm (english and bridgex share the en arm for sw→he)
    cells = rows(index, "SELECT task, strategy, metric, n, score FROM evaluations ORDER BY strategy, metric")
    assert [(s, m) for _t, s, m, _n, _x in cells] == [
        (s, m) for s in ("bridgex", "direct", "english") for m in ("bleu", "chrf++")
    ]
    assert all(t == "translate" and n == 3 and 0 <= x <= 100 for t, _s, _m, n, x in cells)
    assert "Δ chrF++ vs direct" in first.stdout
    again = cli(*[a if a != "stub" else "tiny" for a in translate_args(
        index, f"http://127.0.0.1:{free_port()}/v1", tmp_path / "r", "--limit", "3",
        "--strategies", "direct,english,bridgex")])  # fmt: skip
    assert again.exit_code == 0, again.stderr
    assert rows(index, "SELECT upstream_calls FROM evaluation_runs ORDER BY created_at") == [(made,), (0,)]


# ------------------------------------------------------------------------------ distill (issue 20)


def distill_args(index: Path, endpoint: str, *extra, pairs: str = "sw-he") -> list:
    return ["distill", "--index", index, "--endpoint", endpoint, "--model", "stub", "--pairs", pairs,
            "--quiet", *extra]  # fmt: skip


def distilled_rows(index: Path) -> list[tuple]:
    return rows(
        index,
        "SELECT source, target, task, position, source_text, target_text, route, model, text_source "
        "FROM distilled_demonstrations ORDER BY source, target, task, position",
    )


def test_distill_keeps_the_bridges_clean_answers_from_the_calibration_half(index, oracle):
    from index_builder.evaluation.held_out import stable_order, word_half

    oracle.learn_sentences(["en", "sw", "he"])
    oracle.demonstrated = True  # the distilled mode answers right: the check stores the set
    result = cli(*distill_args(index, oracle.url, "--k", "4"))
    assert result.exit_code == 0, (result.stderr, result.exception)
    got = distilled_rows(index)
    assert [r[:4] for r in got] == [("sw", "he", "translate", i) for i in range(4)]
    sw = (SENTENCES / "sw.txt").read_text(encoding="utf-8").split("\n")
    he = (SENTENCES / "he.txt").read_text(encoding="utf-8").split("\n")
    both = [x.strip() for x, y in zip(sw, he, strict=True) if x.strip() and y.strip()]
    calibration = word_half(("sw", "he"), stable_order("sw", "he", both), "calibration")
    assert [r[4] for r in got] == calibration[:4]  # the first clean ones, in the stable order
    for source, target, route, model, origin in (r[4:] for r in got):
        line = int(origin.rsplit(" ", 1)[1])
        assert sw[line - 1].strip() == source and he[line - 1].strip().startswith(target)  # English: gold
        assert (route, model) == ("en", "stub") and "calibration half" in origin
    assert "sw→he: 4 demonstrations; distilled − direct +" in result.stdout and ": stored" in result.stdout
    checked = [p for p in oracle.prompts if p.startswith(f'Kiswahili:"{got[0][4]}"')]
    # the check: up to 40 other calibration sentences (sw→he has 39, 4 of them the set) in the distilled mode
    assert len(checked) == min(40, len(calibration) - 4) == 35
    assert not {p.split("\n")[-1] for p in checked} & {f'Kiswahili:"{r[4]}"→עברית:"' for r in got}
    asked = len(oracle.prompts)
    again = cli(*distill_args(index, oracle.url, "--k", "4"))
    assert again.exit_code == 0 and len(oracle.prompts) == asked  # every answer from the cache
    assert distilled_rows(index) == got


def test_eval_scores_the_distilled_mode_against_direct_on_the_other_half(index, oracle, tmp_path):
    oracle.learn_sentences(["en", "sw", "he"])
    oracle.demonstrated = True  # the distilled mode answers right, direct does not
    assert cli(*distill_args(index, oracle.url, "--k", "3", "--check", "0")).exit_code == 0
    demos = [r[4] for r in distilled_rows(index)]
    before = len(oracle.prompts)
    strategies = ("--strategies", "direct,distilled,calibrated", "--words", "evaluation")
    result = cli(*translate_args(index, oracle.url, tmp_path / "r", *strategies, pairs="sw-he,he-sw"))
    assert result.exit_code == 0, (result.stderr, result.exception)
    prompts = oracle.prompts[before:]
    distilled = [p for p in prompts if p.startswith(f'Kiswahili:"{demos[0]}"')]
    # every evaluated sentence, one call each, the set in front; and calibrated's `route: auto` request,
    # which names no mode: the server answers it in the distilled mode
    assert len(distilled) == 6 + 1
    assert all(not any(p.split("\n")[-1].startswith(f'Kiswahili:"{d}"') for d in demos) for p in prompts)
    cells = rows(index, "SELECT source, strategy, bridge FROM evaluations WHERE metric = 'chrf++'")
    # he→sw has no set: its distilled cell is skipped; calibrated follows the server (distilled for sw→he,
    # direct for he→sw: never calibrated, no route policy)
    assert sorted(cells) == [
        ("he", "calibrated", None),
        ("he", "direct", None),
        ("sw", "calibrated", None),
        ("sw", "direct", None),
        ("sw", "distilled", None),
    ]
    chrf = dict(
        rows(index, "SELECT strategy, score FROM evaluations WHERE source = 'sw' AND metric = 'chrf++'")
    )
    assert chrf["calibrated"] == chrf["distilled"] > 90.0 > 10.0 > chrf["direct"]


def test_a_set_that_does_not_beat_direct_on_the_check_is_not_stored(index, oracle):
    oracle.learn_sentences(["en", "sw", "he"])
    oracle.demonstrated = True
    assert cli(*distill_args(index, oracle.url, "--k", "2", "--check", "12")).exit_code == 0
    assert len(distilled_rows(index)) == 2
    oracle.demonstrated = False  # now the distilled mode answers as badly as direct: no gain
    result = cli(*distill_args(index, oracle.url, "--k", "3", "--check", "12"))
    assert result.exit_code == 0, (result.stderr, result.exception)
    assert (
        "+0.00 chrF++" in result.stdout and "NOT stored: no gain, the pair's set is removed" in result.stdout
    )
    assert distilled_rows(index) == []  # the earlier set is gone too: the pair is routed as before


def test_a_pair_without_a_clean_answer_keeps_its_set_and_exits_1(index, oracle):
    oracle.learn_sentences(["en", "sw", "he", "ja"])
    assert cli(*distill_args(index, oracle.url, "--k", "2", "--check", "0", pairs="he-ja")).exit_code == 0
    kept = distilled_rows(index)
    # through German the stub copies the source: the server answers directly instead (a copy fallback)
    result = cli(
        *distill_args(index, oracle.url, "--k", "2", "--bridge", "de", "--max-texts", "4", pairs="he-ja")
    )
    assert result.exit_code == 1, (result.stderr, result.exception)
    assert "he→ja: no clean answer among 4 texts; the pair's set is unchanged" in result.stdout
    assert distilled_rows(index) == kept and len(kept) == 2
    removed = CliRunner().invoke(main, ["distill", "--index", str(index), "--pairs", "he-ja", "--remove"])
    assert removed.exit_code == 0 and "removed 2 translate demonstrations" in removed.stdout
    assert distilled_rows(index) == []


def test_distill_reads_a_text_dir_in_file_order(index, oracle, tmp_path):
    oracle.learn_sentences(["en", "sw", "he"])
    sw = [x.strip() for x in (SENTENCES / "sw.txt").read_text(encoding="utf-8").split("\n") if x.strip()]
    texts = tmp_path / "texts"
    texts.mkdir()
    (texts / "sw.txt").write_text(f"\ufeff{sw[5]}\n\n{sw[5]}\n{sw[2]}\n", encoding="utf-8")  # a BOM
    result = cli(*distill_args(index, oracle.url, "--text-dir", texts, "--k", "3"))
    assert result.exit_code == 0, (result.stderr, result.exception)
    assert "unchecked (no reference translations (words, or --text-dir)): stored" in result.stdout
    got = distilled_rows(index)
    assert [r[4] for r in got] == [sw[5], sw[2]]  # the BOM dropped, blank and repeated lines skipped
    assert got[1][8].startswith("sw.txt sha256:") and got[1][8].endswith("line 4")


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--text-dir", "{tmp}"], "no {tmp}/sw.txt"),
        (["--bridge", "sw"], "the bridge 'sw' is the source or the target"),
        (["--bridge", "xx"], "--bridge 'xx' is not in this index"),
        (["--k", "0"], "--k must be at least 1"),
        (["--k", "5", "--max-texts", "4"], "--max-texts (4) must be at least --k (5)"),
        (["--check", "-1"], "--check must be 0 or more"),
    ],
)
def test_distill_bad_input_is_one_line_and_exit_2(index, tmp_path, extra, needle):
    extra = [str(a).replace("{tmp}", str(tmp_path)) for a in extra]
    url = f"http://127.0.0.1:{free_port()}/v1"  # never asked
    assert_fails_cleanly(cli(*distill_args(index, url, *extra)), needle.replace("{tmp}", str(tmp_path)))
    no_endpoint = CliRunner().invoke(main, ["distill", "--index", str(index), "--pairs", "sw-he"])
    assert_fails_cleanly(no_endpoint, "--endpoint is required (unless --remove)")
    missing = CliRunner().invoke(
        main, ["distill", "--index", str(tmp_path / "no.duckdb"), "--pairs", "sw-he", "--remove"]
    )
    assert missing.exit_code == 2 and not (tmp_path / "no.duckdb").exists()
