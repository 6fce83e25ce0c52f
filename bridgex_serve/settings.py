"""Serving settings, each declared once: a field of `Settings` with its default, and beside it (`setting`)
its help, environment variable, command-line option and allowed values. From these declarations come the
click options of `bridgex-serve` (`cli`), the environment reading of both deployments (`Settings.from_env`,
which the vLLM middleware uses), the validator, and the README's settings table:

    python -m bridgex_serve.settings --markdown
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import Field, dataclass, field, fields, replace
from typing import Any

from bridgex_index.routes import DEFAULT_UNCALIBRATED

from .options import DISTILLED, UNCALIBRATED

PROMPT_STYLE_SETTINGS = ("auto", "completion", "chat")
_FALSE = ("0", "false", "no", "off")
_TRUE = ("1", "true", "yes", "on")
MIB = 1024 * 1024


def setting(
    default: Any,
    help: str,
    *,
    env: str | None = None,
    option: str | None = None,
    choices: tuple[str, ...] | None = None,
    low: float | None = None,
    above: float | None = None,
    high: float | None = None,
    shown: str | None = None,
) -> Any:
    """A `Settings` field. `env` defaults to BRIDGEX_<NAME>, `option` to --<name>; `low`/`high` bound the
    value (inclusive), `above` from below (exclusive); `shown` is the default as the README writes it."""
    meta = dict(
        help=help, env=env, option=option, choices=choices, low=low, above=above, high=high, shown=shown
    )
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Settings:
    index: str = setting("", "DuckDB index written by `bridgex-index build`", shown="required")
    upstream: str = setting("http://127.0.0.1:8000", "base URL of vLLM's OpenAI server, without /v1")
    host: str = setting("127.0.0.1", "address to listen on (loopback unless told otherwise)")
    port: int = setting(8080, "port to listen on", low=1, high=65535)
    api_keys: tuple[str, ...] = setting(
        (),
        "accepted client API keys (option repeatable, variable comma-separated); none: no auth, and an empty "
        "key stops start-up",
        option="--api-key",
        shown="none",
    )
    upstream_api_key: str | None = setting(
        None,
        "bearer token sent upstream; unset, the client's key is forwarded when the proxy has no keys",
        shown="none",
    )
    low_resource: tuple[str, ...] | None = setting(
        None, "comma-separated languages to bridge", shown="the languages the index marks low-resource"
    )
    # Enough to keep vLLM's batch full, bounded so a burst of batch translations cannot queue thousands of
    # requests in vLLM.
    max_concurrency: int = setting(64, "bridged upstream calls in flight at once", low=1, high=4096)
    max_batch: int = setting(32, "prompts per merged upstream completion request", low=1)
    max_texts: int = setting(1024, "texts per /v1/translate request; more → 400", low=1)
    upstream_timeout: float = setting(600.0, "seconds between bytes from the upstream → 504", above=0)
    connect_timeout: float = setting(10.0, "seconds to connect to the upstream → 502", above=0)
    default_model: str | None = setting(
        None,
        "model for /v1/translate bodies that name none",
        env="BRIDGEX_MODEL",
        option="--model",
        shown="the upstream's first",
    )
    copy_fallback: bool = setting(
        True,
        "answer by the direct route when a bridged word or translation copies the source or the bridge "
        "rendering (one extra upstream call)",
    )
    uncalibrated: str = setting(
        DEFAULT_UNCALIBRATED,
        "route of pairs without a calibrated decision in the index: the route policy's route (learned by "
        "`bridgex-index calibrate` from the calibrated pairs; direct before any calibration), the HSIC "
        "rank-1 bridge, or direct",
        choices=UNCALIBRATED,
    )
    distilled: str = setting(
        "auto",
        "sentences of a pair with distilled demonstrations (`bridgex-index distill`): one direct call with "
        "them in front when the request leaves route and mode to the server (auto), or only for "
        "`mode: distilled` (off)",
        choices=DISTILLED,
    )
    prompt_style: str = setting(
        "auto",
        "how word and sentence translations are asked upstream: few-shot completion lines, the chat "
        "template, or per task from the family of the index's model (`engines`)",
        choices=PROMPT_STYLE_SETTINGS,
    )
    # -- limits and deadlines (README "Limits and security") --
    max_body_bytes: int = setting(4 * MIB, "largest request body → 413", low=1, shown="4 MiB (4194304)")
    # A body carrying `bridgex` (and any /v1/translate body) is rewritten on CPU: a smaller limit keeps one
    # request from holding the event loop's GIL share (benchmarks/proxy_stall.py).
    max_bridged_bytes: int = setting(
        MIB,
        "largest body carrying `bridgex`, and of /v1/translate → 413",
        low=1,
        shown="1 MiB (1048576)",
    )
    max_messages: int = setting(512, "chat messages in a bridged request; more → 400", low=1)
    max_content_parts: int = setting(64, "content parts per message of a bridged request; more → 400", low=1)
    max_tokens_limit: int = setting(
        1 << 20, "largest max_tokens of a bridged request or /v1/translate; above → 400", low=1
    )
    max_upstream: int = setting(256, "client requests served upstream at once (each holds a slot)", low=1)
    max_queue: int = setting(1024, "requests waiting for an upstream slot; one more → 429", low=0)
    request_timeout: float = setting(
        600.0, "total seconds per client request → 504 (a client may ask for less)", above=0
    )
    ttfb_timeout: float = setting(300.0, "seconds to the upstream's response head → 504", above=0)
    header_timeout: float = setting(
        10.0, "seconds from a connection's opening to its request line and headers → 408", above=0
    )
    body_timeout: float = setting(30.0, "seconds for the client's request body → 408", above=0)
    ready_timeout: float = setting(5.0, "seconds for /ready's upstream check → 503", above=0)
    public_metrics: bool = setting(False, "serve /metrics without a key when keys are set")
    public_ready: bool = setting(False, "serve /ready without a key when keys are set")

    def with_(self, **changes) -> Settings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides) -> Settings:
        """Settings from BRIDGEX_* variables; keyword overrides (not None) win."""
        env = os.environ if env is None else env
        values: dict = {}
        for f in fields(cls):
            var = env_var(f)
            if var in env:
                value = read_env(f, var, env[var])
                if value is not None:
                    values[f.name] = value
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
        for f in fields(self):
            value, meta = getattr(self, f.name), f.metadata
            if meta["choices"] and value not in meta["choices"]:
                raise ValueError(f"{f.name} must be one of {', '.join(meta['choices'])}, got {value!r}")
            if meta["above"] is not None and not value > meta["above"]:
                rule = "positive" if meta["above"] == 0 else f"above {meta['above']:g}"
                raise ValueError(f"{f.name} must be {rule}, got {value}")
            if meta["low"] is not None and not value >= meta["low"]:
                rule = "0 or more" if meta["low"] == 0 else f"at least {meta['low']:g}"
                raise ValueError(f"{f.name} must be {rule}, got {value}")
            if meta["high"] is not None and not value <= meta["high"]:
                raise ValueError(f"{f.name} must be at most {meta['high']:g}, got {value}")
        if not self.upstream.startswith(("http://", "https://")):
            raise ValueError(f"upstream {self.upstream!r} is not an http(s) URL")


# -- reading the declarations ------------------------------------------------------------------------------


def env_var(f: Field) -> str:
    return f.metadata["env"] or "BRIDGEX_" + f.name.upper()


def option_name(f: Field) -> str:
    return f.metadata["option"] or "--" + f.name.replace("_", "-")


def kind_of(f: Field) -> str:
    """ "int", "float", "bool", "str", "keys" (many strings) or "codes" (language codes)."""
    if f.name == "api_keys":
        return "keys"
    if f.name == "low_resource":
        return "codes"
    default = f.default
    return type(default).__name__ if default is not None else "str"


def codes(value: str | None) -> tuple[str, ...] | None:
    """Comma-separated language codes, lower-cased, sorted and unique (None when empty)."""
    if value is None or not value.strip():
        return None
    return tuple(sorted({c.strip().lower() for c in value.split(",") if c.strip()}))


def read_env(f: Field, var: str, value: str) -> Any:
    """The value of variable `var` for setting `f`; None when it leaves the default. ValueError names it."""
    kind = kind_of(f)
    if kind == "keys":
        keys = tuple(k.strip() for k in value.split(",") if k.strip())
        if not keys:
            raise ValueError(f"{var} is set but holds no key: unset it to run without keys, or give a key")
        return keys
    if kind == "codes":
        return codes(value)
    if not value:
        return None
    if kind == "bool":
        low = value.strip().lower()
        if low in _FALSE or low in _TRUE:
            return low in _TRUE
        raise ValueError(f"{var}={value!r} is not a boolean (1/0, true/false, yes/no, on/off)")
    if kind in ("int", "float"):
        try:
            return int(value) if kind == "int" else float(value)
        except ValueError:
            raise ValueError(f"{var}={value!r} is not a number") from None
    return value.strip().lower() if f.metadata["choices"] else value


def shown_default(f: Field) -> str:
    meta = f.metadata
    if meta["shown"]:
        return meta["shown"]
    default = f.default
    if isinstance(default, bool):
        return "on" if default else "off"
    if isinstance(default, float):
        return f"{default:g} s"
    return f"`{default}`" if isinstance(default, str) else str(default)


def option_shown(f: Field) -> str:
    name = option_name(f)
    if kind_of(f) == "bool":
        return f"`{name}` / `--no-{name[2:]}`"
    if f.metadata["choices"]:
        return f"`{name} {'|'.join(f.metadata['choices'])}`".replace("|", "\\|")
    return f"`{name}`"


def markdown_table() -> str:
    """The README's settings table, one row per declared setting."""
    rows = [
        "| option | environment variable | default | what it sets |",
        "| --- | --- | --- | --- |",
    ]
    for f in fields(Settings):
        rows.append(f"| {option_shown(f)} | `{env_var(f)}` | {shown_default(f)} | {f.metadata['help']} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] != ["--markdown"]:
        sys.exit("usage: python -m bridgex_serve.settings --markdown")
    sys.stdout.write(markdown_table())
