"""`bridgex-serve`: parse and validate settings, load the index, run the proxy under uvicorn.

Every option but `--log-level` is generated from the declarations in `settings` (one per `Settings` field);
an option given wins over its environment variable, which wins over the default.
"""

from __future__ import annotations

import sys
from dataclasses import Field, fields

import click

from .settings import Settings, codes, env_var, kind_of, option_name, shown_default


def _loop_and_http() -> tuple[str, str]:
    """uvloop and httptools when installed (measured faster), else asyncio and h11."""
    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    try:
        import httptools  # noqa: F401

        http = "httptools"
    except ImportError:
        http = "h11"
    return loop, http


def _click_type(f: Field):
    meta, kind = f.metadata, kind_of(f)
    if meta["choices"]:
        return click.Choice(list(meta["choices"]), case_sensitive=False)
    if kind == "int":
        return click.IntRange(meta["low"], meta["high"])
    if kind == "float":
        low = meta["above"] if meta["above"] is not None else meta["low"]
        return click.FloatRange(low, meta["high"], min_open=meta["above"] is not None)
    if f.name == "index":
        return click.Path(dir_okay=False)
    return str


def setting_option(f: Field):
    """The click option of one declared setting (default None: the environment, then the declared default)."""
    name = option_name(f)
    about = f.metadata["help"]
    text = f"{about[0].upper()}{about[1:]} (env {env_var(f)}; default {shown_default(f)})."
    if kind_of(f) == "bool":
        decls = [f"{name}/--no-{name[2:]}", f.name]
        return click.option(*decls, default=None, show_default=False, help=text)
    multiple = kind_of(f) == "keys"
    return click.option(
        name, f.name, type=_click_type(f), default=None, multiple=multiple, show_default=False, help=text
    )


def setting_options(command):
    """Decorate `command` with one option per declared setting, in declaration order."""
    for f in reversed(fields(Settings)):
        command = setting_option(f)(command)
    return command


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@setting_options
@click.option(
    "--log-level",
    default="warning",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
    help="uvicorn log level (access logs are off).",
)
def main(log_level: str, **given):
    """Serve the OpenAI-compatible bridging proxy in front of a vLLM server."""
    import uvicorn

    from .app import create_app
    from .connections import guarded_protocol
    from .errors import redact_url
    from .index import IndexLoadError

    given["api_keys"] = tuple(given["api_keys"]) or None
    if given["low_resource"] is not None:
        given["low_resource"] = codes(given["low_resource"])
    for name in ("uncalibrated", "distilled", "prompt_style"):
        if given[name] is not None:
            given[name] = given[name].lower()
    try:
        settings = Settings.from_env(**given)
        if not settings.index:
            raise ValueError("no index: give --index or BRIDGEX_INDEX")
        app = create_app(settings)
    except (IndexLoadError, ValueError) as exc:
        click.echo(f"bridgex-serve: cannot start: {exc}", err=True)
        sys.exit(2)
    loop, http = _loop_and_http()
    click.echo(
        f"bridgex-serve: {settings.index} → {redact_url(settings.upstream)}, "
        f"listening on http://{settings.host}:{settings.port}",
        err=True,
    )
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        loop=loop,
        http=guarded_protocol(settings.header_timeout, http),
        log_level=log_level,
        access_log=False,
        lifespan="on",
    )


if __name__ == "__main__":
    main()
