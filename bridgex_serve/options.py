"""The request options of a bridged request (the `bridgex` field, and `/v1/translate` bodies), validated.

Pure: a dict in, an `Options` or a `RequestError` (an OpenAI-shaped 400 naming `param`) out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bridgex_index import routes

TASKS = ("auto", "word", "translate", "qa", "chat")
# `distilled`: ONE direct call with the pair's distilled demonstrations (`bridgex-index distill`) in front;
# word and translate only, and never with a `bridge` or a `route` (the bridge worked offline).
MODES = ("chain", "two-step", "distilled")
BRIDGED_MODES = ("chain", "two-step")
DEFAULT_MODE = "chain"
# Chain mode needs demonstrations (a base model never continued a zero-shot chain to the target, and did in
# 99.9% of cases with three); word and sentence translation get three by default in both modes. qa and chat
# get none: word pairs in front of a passage or a conversation teach little.
DEFAULT_SHOTS = {"word": 3, "translate": 3, "qa": 0, "chat": 0}
MAX_SHOTS = 16
# Default answer budgets (tokens) when the client gives no max_tokens.
DEFAULT_ANSWER_TOKENS = {"word": 16, "translate": 128, "qa": 128, "chat": 128}
WORD_BRIDGE_TOKENS = 16
OPTION_KEYS = (
    "task",
    "source",
    "target",
    "bridge",
    "route",
    "mode",
    "shots",
    "passage",
    "copy_fallback",
    "timeout",
)
MAX_TIMEOUT = 86400.0  # seconds: the longest deadline a client may ask for
# `/v1/translate` body fields read as request options (the `bridgex` field of the other endpoints), and the
# tasks a batch translation takes.
TRANSLATE_OPTIONS = tuple(k for k in OPTION_KEYS if k != "passage")
TRANSLATE_TASKS = ("auto", "word", "translate")
# `route`: `auto` follows the server's policy (calibrated decision, low-resource gate, `uncalibrated`);
# `direct` forces the direct route; `hsic` takes the index's HSIC rank-1 bridge, ignoring calibrated
# decisions and the low-resource gate. An explicit `bridge` is its own route.
ROUTES = ("auto", "direct", "hsic")
# Where the route of a request came from (metadata `decision_source`), and what an uncalibrated pair gets
# (`policy`: the route policy's route; `hsic`: the HSIC rank-1 bridge; `direct`): bridgex_index.routes.
DECISION_SOURCES = routes.DECISION_SOURCES
UNCALIBRATED = routes.UNCALIBRATED
DISTILLED = routes.DISTILLED


class RequestError(ValueError):
    """A client error: becomes an OpenAI-shaped 400 naming `param`."""

    def __init__(self, message: str, param: str | None = None, code: str | None = "invalid_request"):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


@dataclass(frozen=True)
class Options:
    """The client's `bridgex` field, validated. `None` means "decide for me"."""

    task: str = "auto"
    source: str | None = None
    target: str | None = None
    bridge: str | None = None
    mode: str | None = None
    shots: int | None = None
    passage: str | None = None
    route: str = "auto"
    copy_fallback: bool | None = None  # None: the server's setting
    timeout: float | None = None  # seconds: shortens the request's deadline (None: the server's)


def _opt_str(raw: dict, key: str) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise RequestError(f"bridgex.{key} must be a non-empty string, got {value!r}", f"bridgex.{key}")
    return value.strip()


def _timeout(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= MAX_TIMEOUT:
        raise RequestError(
            f"bridgex.timeout must be seconds in (0, {MAX_TIMEOUT:g}], got {value!r}", "bridgex.timeout"
        )
    return float(value)


def parse_options(raw: Any) -> Options:
    """Validate the client's `bridgex` object (a dict; `{}` and `None` mean all defaults)."""
    if raw is None:
        return Options()
    if not isinstance(raw, dict):
        raise RequestError(f"bridgex must be an object, got {type(raw).__name__}", "bridgex")
    unknown = sorted(set(raw) - set(OPTION_KEYS))
    if unknown:
        raise RequestError(
            f"unknown bridgex option {unknown[0]!r}; expected one of {', '.join(OPTION_KEYS)}", "bridgex"
        )
    task = _opt_str(raw, "task") or "auto"
    if task not in TASKS:
        raise RequestError(f"bridgex.task {task!r} is not one of {', '.join(TASKS)}", "bridgex.task")
    mode = _opt_str(raw, "mode")
    if mode == "two_step":
        mode = "two-step"
    if mode is not None and mode not in MODES:
        raise RequestError(f"bridgex.mode {mode!r} is not one of {', '.join(MODES)}", "bridgex.mode")
    shots = raw.get("shots")
    if shots is not None and (
        isinstance(shots, bool) or not isinstance(shots, int) or not 0 <= shots <= MAX_SHOTS
    ):
        raise RequestError(f"bridgex.shots must be an integer 0..{MAX_SHOTS}, got {shots!r}", "bridgex.shots")
    codes = {}
    for key in ("source", "target", "bridge"):
        value = _opt_str(raw, key)
        codes[key] = value.lower() if value is not None else None
    if codes["source"] == "auto":
        codes["source"] = None
    passage = raw.get("passage")
    if passage is not None and not isinstance(passage, str):
        raise RequestError("bridgex.passage must be a string", "bridgex.passage")
    route = _opt_str(raw, "route") or "auto"
    if route not in ROUTES:
        raise RequestError(f"bridgex.route {route!r} is not one of {', '.join(ROUTES)}", "bridgex.route")
    if mode == "distilled" and (route != "auto" or codes["bridge"] is not None):
        param = "bridgex.bridge" if codes["bridge"] is not None else "bridgex.route"
        raise RequestError(
            "bridgex.mode 'distilled' is one direct call with the pair's distilled demonstrations: give no "
            "bridgex.bridge or bridgex.route with it",
            param,
        )
    if route != "auto" and codes["bridge"] is not None:
        raise RequestError(
            f"bridgex.bridge and bridgex.route {route!r} contradict each other; give one", "bridgex.route"
        )
    copy_fallback = raw.get("copy_fallback")
    if copy_fallback is not None and not isinstance(copy_fallback, bool):
        raise RequestError(
            f"bridgex.copy_fallback must be true or false, got {copy_fallback!r}", "bridgex.copy_fallback"
        )
    return Options(
        task=task,
        timeout=_timeout(raw.get("timeout")),
        mode=mode,
        shots=shots,
        passage=passage,
        route=route,
        copy_fallback=copy_fallback,
        **codes,
    )
