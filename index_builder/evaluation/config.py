"""Every parameter of one evaluation run (`EvalConfig`) and the parsing of `--pairs` and `--strategies`."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from .client import (
    EvaluationError,
)

TASKS = ("word", "translate")  # word: BLI P@1 on dictionaries; translate: sentence chrF++ on a parallel set
STRATEGIES = ("direct", "english", "bridgex", "calibrated", "all-bridges")
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
    command: str = ""

    def parameters(self) -> dict:
        data = asdict(self)
        data.pop("api_key")
        data.pop("command")
        data["index"] = str(self.index)
        data["pairs"] = [f"{s}-{t}" for s, t in self.pairs]
        data["strategies"] = list(self.strategies)
        return data


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
