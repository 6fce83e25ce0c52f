"""What every `bridgex-index` command shares: clean failures (one line, exit 2), parsing helpers, and the
options `eval` and `calibrate` both take (written once, as datasette's publish commands share theirs)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path

import click

EXIT_USAGE = 2


def _user_errors() -> tuple[type[BaseException], ...]:
    from bridgex_index.results import IndexWriteError
    from bridgex_index.store import IndexReadError

    from ..indexing.config import BuildError
    from ..indexing.dictionaries import DictionaryError
    from ..indexing.languages import UnknownLanguageError

    errors: list[type[BaseException]] = [
        BuildError,
        DictionaryError,
        UnknownLanguageError,
        IndexReadError,
        IndexWriteError,
    ]
    try:
        from ..indexing.models import ModelError

        errors.append(ModelError)
    except ImportError:  # torch not installed: the read-only commands still work
        pass
    return tuple(errors)


def fails_cleanly(fn: Callable) -> Callable:
    """Turn the package's user-facing errors into `error: <message>` on stderr and exit code 2."""

    @wraps(fn)
    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except _user_errors() as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(EXIT_USAGE)

    return run


def _codes(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [c.strip() for c in value.split(",") if c.strip()]


def _band(_ctx, _param, value: str) -> tuple[float, float]:
    try:
        lo, hi = (float(x) for x in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not two fractions like 0.3,0.7") from None
    if not 0 <= lo < hi <= 1:
        raise click.BadParameter(f"{value!r}: expected 0 <= start < end <= 1")
    return lo, hi


# The options `eval` and `calibrate` share, in three groups (written once, as datasette's publish commands
# share theirs): where the answers come from, the test set, how the server is asked.
_ENDPOINT_OPTIONS = [
    click.option("--index", required=True, type=click.Path(path_type=Path), help="The index file."),
    click.option(
        "--endpoint",
        required=True,
        help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1: a BridgeX server (proxy, or vLLM "
        "with the middleware) is asked directly; in front of any other one a bridgex-serve child runs.",
    ),
    click.option("--model", required=True, help="Model name the endpoint serves (the request's `model`)."),
]
_TEST_SET_OPTIONS = [
    click.option(
        "--dictionaries",
        "dict_source",
        type=click.Choice(["cldr"]),
        help="The index's CLDR dictionaries.",
    ),
    click.option(
        "--dict-dir", type=click.Path(path_type=Path), help="The MUSE directory the index was built from."
    ),
    click.option(
        "--test-dict-dir",
        type=click.Path(),  # a str: `shipped` is a keyword, `./shipped` a directory
        help="Word test set instead of the index's held-out split: MUSE dictionaries "
        "DIR/<src>-<trg>.txt not used in the build, or `shipped` (the Django word set installed with "
        "BridgeX); entries with a probe word of the index are dropped.",
    ),
    click.option(
        "--task",
        default="word",
        show_default=True,
        type=click.Choice(["word", "translate"]),
        help="word: P@1 on dictionary words; translate: chrF++/BLEU on sentences (/v1/translate, "
        "task translate: the proxy's sentence path).",
    ),
    click.option(
        "--test-dir",
        type=click.Path(path_type=Path),
        help="--task translate: a parallel set DIR/<lang>.txt (line-aligned) or FLORES-200 (DIR with "
        "dev/ or devtest/); default: the shipped sentence set.",
    ),
]
_MODE = click.option(
    "--mode",
    default="chain",
    show_default=True,
    type=click.Choice(["chain", "two-step"]),
    help="Bridged prompt mode, as the server serves it (chain: one call; two-step: bridge first).",
)

_SHOTS = click.option(
    "--shots",
    default=3,
    show_default=True,
    type=int,
    help="Demonstrations per prompt (the server's probe words); chain mode needs some.",
)

_LIMIT = click.option(
    "--limit", type=int, help="Test words per pair (a stable pseudo-random sample; default all)."
)

_PROMPT_STYLE = click.option(
    "--prompt-style",
    default="auto",
    show_default=True,
    type=click.Choice(["auto", "completion", "chat"]),
    help="As the server: words and sentences asked as few-shot completion lines or through the chat "
    "template; auto: what bridgex-serve picks for the family of the index's model.",
)

_COPY_FALLBACK = click.option(
    "--copy-fallback/--no-copy-fallback",
    default=True,
    show_default=True,
    help="As the server: answer again directly when the bridged answer is a copy (off: the bridge).",
)

_CONCURRENCY = click.option(
    "--concurrency",
    default=32,
    show_default=True,
    type=int,
    help="At most this many requests (of up to 32 texts) in flight at once; the client starts with "
    "one and sends more only while answers come back within a quarter of --timeout.",
)

_TIMEOUT = click.option(
    "--timeout",
    default=300.0,
    show_default=True,
    type=float,
    help="Seconds per request, counted from when it is sent (requests wait in the client, not in the "
    "server's queue).",
)

_API_KEY = click.option(
    "--api-key",
    envvar="OPENAI_API_KEY",
    help="Bearer token for the endpoint (default: $OPENAI_API_KEY).",
)

_QUIET = click.option("--quiet", is_flag=True, help="No progress bar or per-pair notes.")

_ASKING_OPTIONS = [
    _MODE,
    _SHOTS,
    _LIMIT,
    _PROMPT_STYLE,
    _COPY_FALLBACK,
    _CONCURRENCY,
    _TIMEOUT,
    _API_KEY,
    _QUIET,
]

# distill asks like eval's `english` arm, copy fallback on (an answer after a copy is never kept), over texts
# it picks itself (no --limit)
_DISTILL_ASKING = [_MODE, _SHOTS, _PROMPT_STYLE, _CONCURRENCY, _TIMEOUT, _API_KEY, _QUIET]


def measuring_options(pairs_help: str, pairs_required: bool = True) -> Callable[[Callable], Callable]:
    """The options `eval` and `calibrate` share: the index, the endpoint and model, the pairs (`pairs_help`
    says what the command takes), the test set, how the server is asked."""
    pairs = click.option("--pairs", required=pairs_required, help=pairs_help)
    options = [*_ENDPOINT_OPTIONS, pairs, *_TEST_SET_OPTIONS, *_ASKING_OPTIONS]

    def decorate(fn: Callable) -> Callable:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate


def distill_options(fn: Callable) -> Callable:
    """The options `distill` shares with `eval`: the index, endpoint and model (required unless `--remove`:
    the command checks), how the server is asked."""
    endpoint = click.option("--endpoint", help="As eval's --endpoint (required unless --remove).")
    model = click.option("--model", help="As eval's --model (required unless --remove).")
    for option in reversed([_ENDPOINT_OPTIONS[0], endpoint, model, *_DISTILL_ASKING]):
        fn = option(fn)
    return fn
