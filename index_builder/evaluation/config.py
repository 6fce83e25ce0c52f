"""Every parameter of one evaluation run (`EvalConfig`) and the parsing of `--pairs` and `--strategies`."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from .client import (
    EvaluationError,
)

TASKS = ("word", "translate")  # word: BLI P@1 on dictionaries; translate: sentence chrF++ on a parallel set
STRATEGIES = ("direct", "english", "bridgex", "calibrated", "all-bridges", "distilled")
WORD_SETS = ("all", "calibration", "evaluation")
MODES = ("chain", "two-step")  # the server's bridged modes (it validates them too)
DEFAULT_MODE = "chain"
DEFAULT_SHOTS = 3  # the server's default for words, and chain mode needs them
MAX_SHOTS = 16
DEFAULT_CONCURRENCY = 32
DEFAULT_TEST_FRACTION = 0.2
Pair = tuple[str, str]


@dataclass
class EvalConfig:
    """Every parameter of one evaluation run (recorded in `evaluation_runs.parameters`)."""

    index: Path
    endpoint: str
    model: str
    pairs: list[Pair]
    dictionaries: str  # "cldr", a directory of MUSE files, or "" with `test_dict_dir`
    strategies: tuple[str, ...] = STRATEGIES
    mode: str = DEFAULT_MODE
    shots: int = DEFAULT_SHOTS
    limit: int | None = None  # test words per pair (stable hash order); None = all
    concurrency: int = DEFAULT_CONCURRENCY
    timeout: float = 300.0  # seconds per request (a busy CPU server queues requests)
    copy_fallback: bool = True  # as the proxy: a bridged answer that is a copy is asked again directly
    prompt_style: str = "auto"  # as the proxy's --prompt-style: auto | completion | chat
    words: str = (
        "all"  # all | calibration | evaluation: which half of the test words (calibration.split_words)
    )
    top_bridges: int | None = None  # all-bridges: only the index's best N candidates (None = every one)
    task: str = "word"  # word | translate: the `/v1/translate` task asked and how answers are scored
    test_dir: str | None = None  # translate: a parallel set DIR/<lang>.txt or FLORES-200 (None: shipped set)
    test_dict_dir: str | None = None  # MUSE test dictionaries not used in the build (replaces the split)
    test_set: dict | None = None  # the test set's provenance (name, hash, ...), filled in when read
    api_key: str | None = None
    command: str = ""  # the command line that reproduces the run (`command_line`), recorded with it
    out: Path | None = None  # eval: the report directory
    all_pairs: bool = False  # calibrate `--pairs all`: every pair the index ranks (expanded into `pairs`)

    def parameters(self) -> dict:
        data = asdict(self)
        for kept_out in ("api_key", "command", "out", "all_pairs"):  # a secret, or said by `command`
            data.pop(kept_out)
        data["index"] = str(self.index)
        data["pairs"] = [f"{s}-{t}" for s, t in self.pairs]
        data["strategies"] = list(self.strategies)
        return data

    def command_line(self, name: str) -> str:
        """The canonical `bridgex-index eval` or `calibrate` command line of this run (what `evaluation_runs`
        and the report quote to reproduce it). `calibrate` fixes the strategies and the words itself."""
        import shlex

        args = ["bridgex-index", name, "--index", str(self.index), "--endpoint", self.endpoint]
        args += ["--model", self.model, "--task", self.task]
        if self.all_pairs:
            args += ["--pairs", "all"]
        elif self.pairs:  # none: a --test-dict-dir's own pairs
            args += ["--pairs", ",".join(f"{s}-{t}" for s, t in self.pairs)]
        if name == "calibrate":
            args += ["--top", str(self.top_bridges)]
        args += self._test_source_args()
        if name == "eval":
            args += ["--strategies", ",".join(self.strategies)]
        args += ["--mode", self.mode, "--shots", str(self.shots)]
        if name == "eval" and self.words != "all":
            args += ["--words", self.words]
        if self.limit is not None:
            args += ["--limit", str(self.limit)]
        if not self.copy_fallback:
            args += ["--no-copy-fallback"]
        if self.prompt_style != "auto":
            args += ["--prompt-style", self.prompt_style]
        args += ["--concurrency", str(self.concurrency)]
        return shlex.join([*args, "--out", str(self.out)] if self.out is not None else args)

    def _test_source_args(self) -> list[str]:
        """The test-set flags: a sentence set, a word test set or the index's dictionaries."""
        if self.task == "translate":
            return ["--test-dir", self.test_dir] if self.test_dir is not None else []
        if self.test_dict_dir is not None:
            return ["--test-dict-dir", self.test_dict_dir]
        if self.dictionaries == "cldr":
            return ["--dictionaries", "cldr"]
        return ["--dict-dir", self.dictionaries]


# ------------------------------------------------------------------------------------------ parsing input


def parse_pairs(text: str) -> list[Pair]:
    """`sw-he,id-ja` → [("sw", "he"), ("id", "ja")]; a malformed or repeated pair is an EvaluationError."""
    pairs: list[Pair] = []
    for raw in text.split(","):
        item = raw.strip().lower()
        if not item:
            continue
        parts = item.split("-")
        if len(parts) != 2 or not all(parts):
            raise EvaluationError(f"--pairs: {raw.strip()!r} is not a pair like sw-he")
        s, t = parts
        if s == t:
            raise EvaluationError(f"--pairs: {item} has the same source and target")
        if (s, t) not in pairs:
            pairs.append((s, t))
    if not pairs:
        raise EvaluationError("--pairs: no pair given (expected e.g. sw-he,id-ja)")
    return pairs


def parse_strategies(text: str) -> tuple[str, ...]:
    """`direct,bridgex` → ("direct", "bridgex"), in canonical order; unknown names are an EvaluationError."""
    names = [s.strip().lower() for s in text.split(",") if s.strip()]
    unknown = [s for s in names if s not in STRATEGIES]
    if unknown or not names:
        raise EvaluationError(
            f"--strategies: unknown strategy {(unknown or [text])[0]!r} "
            f"(expected some of {','.join(STRATEGIES)})"
        )
    return tuple(s for s in STRATEGIES if s in names)
