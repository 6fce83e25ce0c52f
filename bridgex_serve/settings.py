"""Serving settings: one frozen dataclass, filled from the CLI or from BRIDGEX_* environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

from bridgex_index.routes import DEFAULT_UNCALIBRATED, UNCALIBRATED


def _codes(value: str | None) -> tuple[str, ...] | None:
    if value is None or not value.strip():
        return None
    return tuple(sorted({c.strip().lower() for c in value.split(",") if c.strip()}))


PROMPT_STYLE_SETTINGS = ("auto", "completion", "chat")
_FALSE = ("0", "false", "no", "off")
_TRUE = ("1", "true", "yes", "on")


def _flag(var: str, value: str) -> bool:
    low = value.strip().lower()
    if low in _FALSE or low in _TRUE:
        return low in _TRUE
    raise ValueError(f"{var}={value!r} is not a boolean (1/0, true/false, yes/no, on/off)")


def _keys(value: str | None) -> tuple[str, ...]:
    return tuple(k.strip() for k in (value or "").split(",") if k.strip())


@dataclass(frozen=True)
class Settings:
    index: str = ""  # DuckDB index file (BRIDGEX_INDEX)
    upstream: str = "http://127.0.0.1:8000"  # vLLM's OpenAI server, without /v1 (BRIDGEX_UPSTREAM)
    host: str = "127.0.0.1"  # loopback unless told otherwise (BRIDGEX_HOST)
    port: int = 8080  # (BRIDGEX_PORT)
    api_keys: tuple[
        str, ...
    ] = ()  # accepted client keys; empty = no auth (BRIDGEX_API_KEYS, comma-separated)
    upstream_api_key: str | None = None  # sent upstream as the bearer token (BRIDGEX_UPSTREAM_API_KEY)
    low_resource: tuple[str, ...] | None = None  # None = the languages the index marks (BRIDGEX_LOW_RESOURCE)
    # Bridged upstream calls in flight at once: enough to keep vLLM's batch full, bounded so a burst of
    # batch translations cannot queue thousands of requests in vLLM (BRIDGEX_MAX_CONCURRENCY).
    max_concurrency: int = 64
    max_batch: int = 32  # prompts per merged upstream completion request (BRIDGEX_MAX_BATCH)
    max_texts: int = 1024  # texts per /v1/translate request (BRIDGEX_MAX_TEXTS)
    upstream_timeout: float = (
        600.0  # seconds between bytes from the upstream → 504 (BRIDGEX_UPSTREAM_TIMEOUT)
    )
    connect_timeout: float = 10.0  # seconds to connect → 502 (BRIDGEX_CONNECT_TIMEOUT)
    default_model: str | None = None  # model for /v1/translate when the body names none (BRIDGEX_MODEL)
    # Answer by the direct route when a bridged word or translation copies the source or the bridge
    # rendering (one extra upstream call; BRIDGEX_COPY_FALLBACK=0 turns it off).
    copy_fallback: bool = True
    # Pairs without a calibrated decision: "hsic" (the index's rank-1 bridge) or "direct"
    # (BRIDGEX_UNCALIBRATED).
    uncalibrated: str = DEFAULT_UNCALIBRATED
    # How word and sentence translations are asked upstream: "completion" (the few-shot line format),
    # "chat" (the model's chat template, answers through `extract.extract_translation`) or "auto" (the
    # family entry in `engines` of the model the index was built from) (BRIDGEX_PROMPT_STYLE).
    prompt_style: str = "auto"
    # -- limits and deadlines (README "Limits and security") --
    max_body_bytes: int = 4 * 1024 * 1024  # request body; above it 413 (BRIDGEX_MAX_BODY_BYTES)
    # A body carrying `bridgex` (and any /v1/translate body) is rewritten on CPU: a smaller limit keeps one
    # request from holding the event loop's GIL share (benchmarks/proxy_stall.py; BRIDGEX_MAX_BRIDGED_BYTES).
    max_bridged_bytes: int = 1024 * 1024
    max_messages: int = 512  # chat messages in a bridged request (BRIDGEX_MAX_MESSAGES)
    max_content_parts: int = 64  # content parts per message of a bridged request (BRIDGEX_MAX_CONTENT_PARTS)
    max_tokens_limit: int = (
        1 << 20
    )  # max_tokens above it is a 400 on bridged routes (BRIDGEX_MAX_TOKENS_LIMIT)
    # Client requests served upstream at once (each holds one slot) and waiting for a slot; a request that
    # finds the queue full is answered 429 with Retry-After (BRIDGEX_MAX_UPSTREAM, BRIDGEX_MAX_QUEUE).
    max_upstream: int = 256
    max_queue: int = 1024
    request_timeout: float = 600.0  # total deadline per client request → 504 (BRIDGEX_REQUEST_TIMEOUT)
    ttfb_timeout: float = 300.0  # upstream response head → 504 (BRIDGEX_TTFB_TIMEOUT)
    header_timeout: float = 10.0  # client request line + headers → 408 (BRIDGEX_HEADER_TIMEOUT)
    body_timeout: float = 30.0  # client request body → 408 (BRIDGEX_BODY_TIMEOUT)
    ready_timeout: float = 5.0  # /ready's upstream check → 503 (BRIDGEX_READY_TIMEOUT)
    public_metrics: bool = False  # /metrics without a key even when keys are set (BRIDGEX_PUBLIC_METRICS)
    public_ready: bool = False  # /ready without a key even when keys are set (BRIDGEX_PUBLIC_READY)

    def with_(self, **changes) -> Settings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides) -> Settings:
        """Settings from BRIDGEX_* variables; keyword overrides (not None) win."""
        env = os.environ if env is None else env
        get = env.get
        values: dict = {}
        if get("BRIDGEX_INDEX"):
            values["index"] = get("BRIDGEX_INDEX")
        if get("BRIDGEX_UPSTREAM"):
            values["upstream"] = get("BRIDGEX_UPSTREAM")
        if get("BRIDGEX_HOST"):
            values["host"] = get("BRIDGEX_HOST")
        if get("BRIDGEX_UPSTREAM_API_KEY"):
            values["upstream_api_key"] = get("BRIDGEX_UPSTREAM_API_KEY")
        if get("BRIDGEX_MODEL"):
            values["default_model"] = get("BRIDGEX_MODEL")
        if get("BRIDGEX_COPY_FALLBACK"):
            values["copy_fallback"] = _flag("BRIDGEX_COPY_FALLBACK", get("BRIDGEX_COPY_FALLBACK"))
        if get("BRIDGEX_UNCALIBRATED"):
            values["uncalibrated"] = get("BRIDGEX_UNCALIBRATED").strip().lower()
        if get("BRIDGEX_PROMPT_STYLE"):
            values["prompt_style"] = get("BRIDGEX_PROMPT_STYLE").strip().lower()
        for var, name in (
            ("BRIDGEX_PUBLIC_METRICS", "public_metrics"),
            ("BRIDGEX_PUBLIC_READY", "public_ready"),
        ):
            if get(var):
                values[name] = _flag(var, get(var))
        if "BRIDGEX_API_KEYS" in env:
            values["api_keys"] = _keys(get("BRIDGEX_API_KEYS"))
            if not values["api_keys"]:
                raise ValueError(
                    "BRIDGEX_API_KEYS is set but holds no key: unset it to run without keys, or give a key"
                )
        values["low_resource"] = _codes(get("BRIDGEX_LOW_RESOURCE"))
        numbers = {
            "BRIDGEX_PORT": ("port", int),
            "BRIDGEX_MAX_CONCURRENCY": ("max_concurrency", int),
            "BRIDGEX_MAX_BATCH": ("max_batch", int),
            "BRIDGEX_MAX_TEXTS": ("max_texts", int),
            "BRIDGEX_UPSTREAM_TIMEOUT": ("upstream_timeout", float),
            "BRIDGEX_CONNECT_TIMEOUT": ("connect_timeout", float),
            "BRIDGEX_MAX_BODY_BYTES": ("max_body_bytes", int),
            "BRIDGEX_MAX_BRIDGED_BYTES": ("max_bridged_bytes", int),
            "BRIDGEX_MAX_MESSAGES": ("max_messages", int),
            "BRIDGEX_MAX_CONTENT_PARTS": ("max_content_parts", int),
            "BRIDGEX_MAX_TOKENS_LIMIT": ("max_tokens_limit", int),
            "BRIDGEX_MAX_UPSTREAM": ("max_upstream", int),
            "BRIDGEX_MAX_QUEUE": ("max_queue", int),
            "BRIDGEX_REQUEST_TIMEOUT": ("request_timeout", float),
            "BRIDGEX_TTFB_TIMEOUT": ("ttfb_timeout", float),
            "BRIDGEX_HEADER_TIMEOUT": ("header_timeout", float),
            "BRIDGEX_BODY_TIMEOUT": ("body_timeout", float),
            "BRIDGEX_READY_TIMEOUT": ("ready_timeout", float),
        }
        for var, (name, kind) in numbers.items():
            if get(var):
                try:
                    values[name] = kind(get(var))
                except ValueError:
                    raise ValueError(f"{var}={get(var)!r} is not a number") from None
        names = {f.name for f in fields(cls)}
        values.update({k: v for k, v in overrides.items() if v is not None and k in names})
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise ValueError naming the first setting that cannot work."""
        for key in self.api_keys:
            if not key or key != key.strip():
                raise ValueError(
                    "an API key is empty or has surrounding spaces (an unset $KEY in "
                    '--api-key "$KEY"?): give real keys, or none to run without auth'
                )
        positive = (
            "max_body_bytes",
            "max_bridged_bytes",
            "max_messages",
            "max_content_parts",
            "max_tokens_limit",
            "max_upstream",
            "request_timeout",
            "ttfb_timeout",
            "header_timeout",
            "body_timeout",
            "ready_timeout",
            "upstream_timeout",
            "connect_timeout",
        )
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.max_queue < 0:
            raise ValueError(f"max_queue must be 0 or more, got {self.max_queue}")
        if self.max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {self.max_concurrency}")
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {self.max_batch}")
        if self.uncalibrated not in UNCALIBRATED:
            raise ValueError(
                f"uncalibrated must be one of {', '.join(UNCALIBRATED)}, got {self.uncalibrated!r}"
            )
        if self.prompt_style not in PROMPT_STYLE_SETTINGS:
            raise ValueError(
                f"prompt_style must be one of {', '.join(PROMPT_STYLE_SETTINGS)}, got {self.prompt_style!r}"
            )
        if not self.upstream.startswith(("http://", "https://")):
            raise ValueError(f"upstream {self.upstream!r} is not an http(s) URL")
