"""`bridgex-index` as a user runs it: build on a tiny model, read the index back, and every error path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from index_builder.cli import main

BIN = Path(sys.executable).parent / "bridgex-index"
LANGS = ["en", "de", "sw", "he"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BRIDGE_KEYS = {"source", "target", "bridge", "score", "probability", "rank", "decision", "translate_decision"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _cli(*args) -> object:
    """Run the CLI in-process; stdout and stderr stay apart (click >= 8.2)."""
    return CliRunner().invoke(main, [str(a) for a in args])


def _assert_fails_cleanly(result, *needles: str) -> str:
    """Exit code 2, no traceback, and stderr ends in one `error:` line naming the problem; returns that line.

    Lines before it are the build's progress notes (languages, model) or click's `Usage:` hint.
    """
    assert result.exit_code == 2, (result.exit_code, result.stderr, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.lower().startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]


def _build_args(model: Path, out: Path, *extra) -> list:
    """The authors' selector and --min-set 1: a random tiny model has few language-specific neurons, and these
    tests check the commands, not the selection (tests/test_specific_neurons.py does)."""
    return ["build", "--model", model, "--langs", ",".join(LANGS), "--out", out, "--device", "cpu",
            "--max-pairs", "12", "--top-rate", "0.1", "--selector", "top-rate", "--min-set", "1", "--quiet",
            *extra]  # fmt: skip


# ----------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def built(tiny_llama, tmp_path_factory):
    """An index built through the CLI (in-process: the script itself runs in the error-path tests)."""
    out = tmp_path_factory.mktemp("cli-index") / "index.duckdb"
    result = _cli(*_build_args(tiny_llama, out, "--dictionaries", "cldr"))
    assert result.exit_code == 0, (result.stderr, result.exception)
    return out, result


@pytest.fixture(scope="module")
def index(built) -> Path:
    return built[0]


@pytest.fixture(scope="module")
def garbage_index(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("garbage") / "index.duckdb"
    path.write_bytes(b"not a duckdb file\n" * 300)
    return path


@pytest.fixture(scope="module")
def gpt2_folder(tiny_llama, tmp_path_factory) -> Path:
    """A saved tiny GPT-2 (MLP without a gate) and a fast tokenizer: it loads, but is no gated-MLP decoder."""
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    folder = tmp_path_factory.mktemp("tiny-gpt2")
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    config = GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=len(tokenizer), n_positions=128)
    GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def out_dir(tmp_path) -> Path:
    """An empty directory for the index that a failing build must leave empty."""
    path = tmp_path / "out"
    path.mkdir()
    return path


# ----------------------------------------------------------------------------------- build, then read


def _json(*args) -> list | dict:
    result = _cli(*args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_build_writes_an_index_and_reports_it(built):
    index, done = built
    assert done.stdout.startswith(f"wrote {index}: ")
    assert sorted(p.name for p in index.parent.iterdir()) == [index.name]


def test_quiet_build_shows_no_progress_bars(built):
    """`--quiet` promises no progress bars; fails today: transformers' "Loading weights" bar still shows."""
    _, done = built
    assert "it/s" not in done.stderr and "\r" not in done.stderr, done.stderr


def test_bridges_json_lists_objects_with_exactly_the_documented_keys(index):
    rows = _json("bridges", index)
    con = duckdb.connect(str(index), read_only=True)
    try:
        (count,) = con.execute("SELECT count(*) FROM bridges").fetchone()
    finally:
        con.close()
    assert isinstance(rows, list) and len(rows) == count > 0
    assert all(set(r) == BRIDGE_KEYS for r in rows)
    assert {(r["source"], r["target"]) for r in rows} == {(s, t) for s in LANGS for t in LANGS if s != t}
    keys = [(r["source"], r["target"], r["rank"]) for r in rows]
    assert keys == sorted(keys)


def test_bridges_source_and_target_filter(index):
    rows = _json("bridges", index, "--source", "sw", "--target", "he")
    assert rows and {(r["source"], r["target"]) for r in rows} == {("sw", "he")}
    rows = _json("bridges", index, "--source", "sw")
    assert {r["source"] for r in rows} == {"sw"} and {r["target"] for r in rows} == {"en", "de", "he"}
    rows = _json("bridges", index, "--target", "en", "--top", "1")
    assert sorted(r["source"] for r in rows) == ["de", "he", "sw"] and {r["rank"] for r in rows} == {1}


def test_bridges_table_has_a_line_per_bridge(index):
    result = _cli("bridges", index, "--source", "en", "--target", "de")
    assert result.exit_code == 0
    header, *lines = result.stdout.splitlines()
    assert header.split() == [
        "source",
        "target",
        "rank",
        "bridge",
        "probability",
        "score",
        "decision",
        "translate",
    ]
    assert [line.split()[:4] for line in lines] == [
        ["en", "de", str(r["rank"]), r["bridge"]]
        for r in _json("bridges", index, "--source", "en", "--target", "de")
    ]


def test_similarity_json_lists_every_language_pair(index):
    rows = _json("similarity", index)
    assert rows
    assert all(set(r) == {"lang_a", "lang_b", "n_overlap", "jaccard", "similarity"} for r in rows)
    assert sorted((r["lang_a"], r["lang_b"]) for r in rows) == sorted(
        tuple(sorted((a, b))) for i, a in enumerate(LANGS) for b in LANGS[i + 1 :]
    )
    assert all(r["lang_a"] < r["lang_b"] for r in rows)
    sims = [r["similarity"] for r in rows if r["similarity"] is not None]
    assert sims == sorted(sims, reverse=True)


def test_show_prints_provenance_and_row_counts(index, tiny_llama):
    result = _cli("show", index)
    assert result.exit_code == 0
    assert f"model                  {tiny_llama}" in result.stdout
    assert "bridges" in result.stdout and "rows" in result.stdout
    shown = _json("show", index)
    assert shown["provenance"]["parameters"]["langs"] == LANGS
    assert shown["provenance"]["schema_version"] == "1"
    assert shown["counts"]["bridges"] == len(_json("bridges", index))
    assert shown["counts"]["languages"] == len(LANGS)


def test_plot_writes_two_png_files(index, tmp_path):
    out = tmp_path / "plots" / "nested"
    result = _cli("plot", index, "--out", out)
    assert result.exit_code == 0, result.stderr
    written = [Path(line) for line in result.stdout.splitlines()]
    assert sorted(p.name for p in written) == ["overlap_layers.png", "similarity.png"]
    assert sorted(out.iterdir()) == sorted(written)
    for path in written:
        data = path.read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 1000
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        assert width > 100 and height > 100


# ------------------------------------------------------------------------------------ build error paths


def test_unknown_language_exits_2_with_one_line_and_leaves_no_file(tiny_llama, out_dir):
    """Through the real script: the exit code and stderr a shell sees."""
    done = subprocess.run(
        [BIN, "build", "--model", tiny_llama, "--langs", "en,xx,sw", "--dictionaries", "cldr",
         "--out", out_dir / "index.duckdb"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "error: unknown language code 'xx' (expected an ISO 639-1 code babel knows, e.g. en, sw, he)"
    ]
    assert done.stdout == ""
    assert list(out_dir.iterdir()) == []


def test_unreadable_index_exits_2_with_one_line_through_the_script(garbage_index):
    done = subprocess.run([BIN, "bridges", garbage_index], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"error: {garbage_index} is not a readable DuckDB file")


@pytest.fixture(scope="module")
def muse_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("muse-cli")
    good, bad = root / "good", root / "bad"
    for d in (good, bad):
        d.mkdir()
        (d / "de-en.txt").write_text("Hund dog\nKatze cat\nHaus house\n", encoding="utf-8")
        (d / "en-sw.txt").write_text("dog mbwa\ncat paka\nhouse nyumba\n", encoding="utf-8")
    (bad / "de-sw.txt").write_text("Hund mbwa\nKatze paka\nHaus nyumba kubwa\n", encoding="utf-8")
    return {"good": good, "bad": bad}


@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        (["--langs", "en,de"], ["need at least 3 languages"]),
        (["--bridges", "fr"], ["bridge candidate(s) fr not among --langs"]),
        (["--bridges", "zz"], ["unknown language code 'zz'"]),
        (["--low-resource", "fr"], ["--low-resource", "fr"]),
        (["--top-rate", "1.5"], ["--top-rate"]),
        (["--batch-size", "0"], ["--batch-size"]),
        (["--device", "cuda:7"], ["cuda:7"]),
    ],
)
def test_invalid_build_options_exit_2_and_leave_no_file(tiny_llama, out_dir, extra, needles):
    args = [*_build_args(tiny_llama, out_dir / "index.duckdb", "--dictionaries", "cldr"), *extra]
    _assert_fails_cleanly(_cli(*args), *needles)
    assert list(out_dir.iterdir()) == []


def test_missing_dictionary_dir_exits_2(tiny_llama, out_dir, tmp_path):
    missing = tmp_path / "no-such-dir"
    result = _cli(*_build_args(tiny_llama, out_dir / "index.duckdb", "--dict-dir", missing))
    _assert_fails_cleanly(result, str(missing), "no such dictionary directory")
    assert list(out_dir.iterdir()) == []


def test_malformed_muse_file_names_file_and_line(tiny_llama, out_dir, muse_dirs):
    result = _cli(
        "build", "--model", tiny_llama, "--langs", "en,de,sw", "--dict-dir", muse_dirs["bad"],
        "--out", out_dir / "index.duckdb", "--quiet",
    )  # fmt: skip
    _assert_fails_cleanly(result, f"{muse_dirs['bad'] / 'de-sw.txt'}:3", "Haus nyumba kubwa")
    assert list(out_dir.iterdir()) == []


def test_muse_directory_builds(tiny_llama, out_dir, muse_dirs):
    result = _cli(
        "build", "--model", tiny_llama, "--langs", "en,de,sw", "--dict-dir", muse_dirs["good"],
        "--out", out_dir / "index.duckdb", "--quiet", "--test-fraction", "0", "--top-rate", "0.1",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert [p.name for p in out_dir.iterdir()] == ["index.duckdb"]


@pytest.mark.parametrize("both", [True, False])
def test_exactly_one_dictionary_source_is_required(tiny_llama, out_dir, muse_dirs, both):
    extra = ["--dictionaries", "cldr", "--dict-dir", muse_dirs["good"]] if both else []
    result = _cli(*_build_args(tiny_llama, out_dir / "index.duckdb", *extra))
    _assert_fails_cleanly(result, "exactly one of --dictionaries cldr or --dict-dir")
    assert list(out_dir.iterdir()) == []


def test_model_folder_that_does_not_exist_exits_2(out_dir, tmp_path):
    missing = tmp_path / "no-model"
    result = _cli(*_build_args(missing, out_dir / "index.duckdb", "--dictionaries", "cldr"))
    _assert_fails_cleanly(result, "model not found", str(missing))
    assert list(out_dir.iterdir()) == []


def test_folder_without_config_is_not_a_model(out_dir, tmp_path):
    result = _cli(*_build_args(tmp_path, out_dir / "index.duckdb", "--dictionaries", "cldr"))
    _assert_fails_cleanly(result, "no config.json")
    assert list(out_dir.iterdir()) == []


def test_model_without_gated_mlp_exits_2_naming_its_class(gpt2_folder, out_dir):
    result = _cli(*_build_args(gpt2_folder, out_dir / "index.duckdb", "--dictionaries", "cldr"))
    _assert_fails_cleanly(result, "GPT2LMHeadModel", "gate_proj")
    assert list(out_dir.iterdir()) == []


def test_output_directory_missing_exits_2(tiny_llama, tmp_path):
    out = tmp_path / "no-such-dir" / "index.duckdb"
    result = _cli(*_build_args(tiny_llama, out, "--dictionaries", "cldr"))
    _assert_fails_cleanly(result, "output directory does not exist", str(out.parent))
    assert not out.parent.exists()


def test_output_path_that_is_a_directory_exits_2(tiny_llama, out_dir):
    """Fails today: the build runs to the end, then os.replace raises IsADirectoryError (a traceback)."""
    result = _cli(*_build_args(tiny_llama, out_dir, "--dictionaries", "cldr"))
    _assert_fails_cleanly(result, str(out_dir))
    assert list(out_dir.iterdir()) == []
    assert not list(out_dir.parent.glob(f".{out_dir.name}.tmp-*"))


@pytest.mark.parametrize(
    ("band", "needles"),
    [("abc", ["--middle-band", "'abc'"]), ("0.7,0.3", ["--middle-band", "0 <= start < end <= 1"])],
)
def test_malformed_middle_band_is_a_usage_error(tiny_llama, out_dir, band, needles):
    args = _build_args(tiny_llama, out_dir / "index.duckdb", "--dictionaries", "cldr")
    result = _cli(*args, "--middle-band", band)
    _assert_fails_cleanly(result, *needles)
    assert list(out_dir.iterdir()) == []


def test_build_prints_the_health_verdict(built):
    _, result = built
    assert "health: verdict" in result.stderr
    assert "; health " in result.stdout and "bridgex-index health" in result.stdout


def test_strict_build_of_a_degenerate_index_exits_2_and_writes_nothing(tiny_llama, out_dir):
    """No band layer can reach a minimum set of 10^6 neurons: no pair is ranked, whatever the weights."""
    args = _build_args(tiny_llama, out_dir / "index.duckdb", "--dictionaries", "cldr", "--strict")
    args[args.index("--min-set") + 1] = "1000000"
    _assert_fails_cleanly(
        _cli(*args), "--strict", "degenerate", "no pair has a bridge ranking", "means stay in"
    )
    assert [p.name for p in out_dir.iterdir()] == ["index.duckdb.means"], (
        "no index; the pass kept for a re-run"
    )


def test_a_means_dir_under_a_file_exits_2_before_the_model_loads(tiny_llama, out_dir, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    args = _build_args(tiny_llama, out_dir / "index.duckdb", "--dictionaries", "cldr")
    result = _cli(*args, "--means-dir", blocker / "means")
    _assert_fails_cleanly(result, "cannot store the pass's means", "is not a directory")
    assert "model:" not in result.stderr, "refused before loading the model"
    assert list(out_dir.iterdir()) == [] and blocker.read_text() == "not a folder"


@pytest.mark.parametrize("option", ["--langs", "--bridges"])
def test_empty_language_list_exits_2(tiny_llama, out_dir, option):
    """An empty --langs or --bridges is one error line (validate_codes' ValueError becomes a BuildError)."""
    args = _build_args(tiny_llama, out_dir / "index.duckdb", "--dictionaries", "cldr")
    if option == "--langs":
        args[args.index("--langs") + 1] = ","
    else:
        args += [option, ","]
    _assert_fails_cleanly(_cli(*args), "no language codes given")
    assert list(out_dir.iterdir()) == []


def test_empty_low_resource_list_marks_no_language_low_resource(tiny_llama, out_dir):
    """`--low-resource ,` is an explicit empty list: the build runs and no language is low-resource (without
    the option, he and sw would be)."""
    out = out_dir / "index.duckdb"
    result = _cli(*_build_args(tiny_llama, out, "--dictionaries", "cldr", "--low-resource", ","))
    assert result.exit_code == 0, (result.stderr, result.exception)
    con = duckdb.connect(str(out), read_only=True)
    try:
        marked = dict(con.execute("SELECT code, low_resource FROM languages").fetchall())
    finally:
        con.close()
    assert marked == dict.fromkeys(LANGS, False)


# ------------------------------------------------------------------------------------- read error paths


@pytest.mark.parametrize("command", ["bridges", "similarity", "show", "plot"])
def test_reading_a_garbage_index_exits_2(garbage_index, tmp_path, command):
    extra = ["--out", tmp_path / "plots"] if command == "plot" else []
    result = _cli(command, garbage_index, *extra)
    _assert_fails_cleanly(result, str(garbage_index), "not a readable DuckDB file")
    assert not (tmp_path / "plots").exists()


@pytest.mark.parametrize("command", ["bridges", "similarity", "show", "plot"])
def test_reading_a_missing_index_exits_2(tmp_path, command):
    extra = ["--out", tmp_path / "plots"] if command == "plot" else []
    result = _cli(command, tmp_path / "missing.duckdb", *extra)
    _assert_fails_cleanly(result, "index not found", str(tmp_path / "missing.duckdb"))


@pytest.mark.parametrize("command", ["bridges", "similarity", "show", "plot"])
def test_reading_a_duckdb_file_that_is_no_index_exits_2(tmp_path, command):
    path = tmp_path / "other.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE t (x INTEGER)")
    con.close()
    extra = ["--out", tmp_path / "plots"] if command == "plot" else []
    _assert_fails_cleanly(_cli(command, path, *extra), "not a BridgeX index")


@pytest.mark.parametrize("flag", ["--source", "--target"])
def test_unknown_language_in_bridges_filter_exits_2(index, flag):
    result = _cli("bridges", index, flag, "fr")
    _assert_fails_cleanly(result, f"{flag} 'fr' is not in this index", "de, en, he, sw")
