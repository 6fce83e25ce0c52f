"""`bridgex-serve`: parse and validate settings, load the index, run the proxy under uvicorn."""

from __future__ import annotations

import sys

import click

from .settings import Settings


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


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option(
    "--index",
    "index",
    envvar="BRIDGEX_INDEX",
    required=True,
    type=click.Path(dir_okay=False),
    help="DuckDB index written by `bridgex-index build` (env BRIDGEX_INDEX).",
)
@click.option(
    "--upstream",
    envvar="BRIDGEX_UPSTREAM",
    default="http://127.0.0.1:8000",
    help="Base URL of vLLM's OpenAI-compatible server, without /v1 (env BRIDGEX_UPSTREAM).",
)
@click.option(
    "--host", envvar="BRIDGEX_HOST", default="127.0.0.1", help="Address to listen on (env BRIDGEX_HOST)."
)
@click.option(
    "--port",
    envvar="BRIDGEX_PORT",
    default=8080,
    type=click.IntRange(1, 65535),
    help="Port to listen on (env BRIDGEX_PORT).",
)
@click.option(
    "--api-key",
    "api_keys",
    multiple=True,
    help="Accepted client API key; repeatable (env BRIDGEX_API_KEYS, comma-separated). None: no auth.",
)
@click.option(
    "--upstream-api-key",
    envvar="BRIDGEX_UPSTREAM_API_KEY",
    default=None,
    help="Bearer token sent to the upstream (env BRIDGEX_UPSTREAM_API_KEY).",
)
@click.option(
    "--low-resource",
    default=None,
    help="Comma-separated languages to bridge (env BRIDGEX_LOW_RESOURCE); default: those the index marks.",
)
@click.option(
    "--max-concurrency",
    envvar="BRIDGEX_MAX_CONCURRENCY",
    default=64,
    type=click.IntRange(1, 4096),
    help="Bridged upstream requests in flight at once (env BRIDGEX_MAX_CONCURRENCY).",
)
@click.option(
    "--model",
    "default_model",
    envvar="BRIDGEX_MODEL",
    default=None,
    help="Model for /v1/translate requests that name none; default: the upstream's first model.",
)
@click.option(
    "--copy-fallback/--no-copy-fallback",
    "copy_fallback",
    default=None,
    show_default=False,
    help="Answer by the direct route when a bridged word or translation copies the source or the bridge "
    "rendering (one extra upstream call). Default on; env BRIDGEX_COPY_FALLBACK=0 turns it off.",
)
@click.option(
    "--uncalibrated",
    type=click.Choice(["hsic", "direct"]),
    default=None,
    show_default=False,
    help="Route of pairs without a calibrated decision in the index: the HSIC rank-1 bridge or direct "
    "(env BRIDGEX_UNCALIBRATED; default hsic).",
)
@click.option(
    "--prompt-style",
    type=click.Choice(["auto", "completion", "chat"]),
    default=None,
    show_default=False,
    help="How word and sentence translations are asked upstream: few-shot completion lines, the chat "
    "template, or auto (the model family the index was built from; env BRIDGEX_PROMPT_STYLE; default auto).",
)
@click.option(
    "--max-body-bytes",
    type=click.IntRange(1),
    default=None,
    show_default=False,
    help="Largest request body; above it 413 (env BRIDGEX_MAX_BODY_BYTES; default 4 MiB).",
)
@click.option(
    "--max-bridged-bytes",
    type=click.IntRange(1),
    default=None,
    show_default=False,
    help="Largest body of a bridged request or /v1/translate call; above it 413 "
    "(env BRIDGEX_MAX_BRIDGED_BYTES; default 1 MiB).",
)
@click.option(
    "--max-upstream",
    type=click.IntRange(1),
    default=None,
    show_default=False,
    help="Client requests served upstream at once (env BRIDGEX_MAX_UPSTREAM; default 256).",
)
@click.option(
    "--max-queue",
    type=click.IntRange(0),
    default=None,
    show_default=False,
    help="Requests waiting for an upstream slot; one more gets 429 (env BRIDGEX_MAX_QUEUE; default 1024).",
)
@click.option(
    "--request-timeout",
    type=click.FloatRange(0, min_open=True),
    default=None,
    show_default=False,
    help="Total seconds per request → 504 (env BRIDGEX_REQUEST_TIMEOUT; default 600).",
)
@click.option(
    "--public-metrics/--no-public-metrics",
    default=None,
    show_default=False,
    help="Serve /metrics without a key when keys are set (env BRIDGEX_PUBLIC_METRICS; default off).",
)
@click.option(
    "--public-ready/--no-public-ready",
    default=None,
    show_default=False,
    help="Serve /ready without a key when keys are set (env BRIDGEX_PUBLIC_READY; default off).",
)
@click.option(
    "--log-level",
    default="warning",
    type=click.Choice(["debug", "info", "warning", "error"]),
    help="uvicorn log level (access logs are off).",
)
def main(
    index,
    upstream,
    host,
    port,
    api_keys,
    upstream_api_key,
    low_resource,
    max_concurrency,
    default_model,
    copy_fallback,
    uncalibrated,
    prompt_style,
    max_body_bytes,
    max_bridged_bytes,
    max_upstream,
    max_queue,
    request_timeout,
    public_metrics,
    public_ready,
    log_level,
):
    """Serve the OpenAI-compatible bridging proxy in front of a vLLM server."""
    import uvicorn

    from .app import create_app
    from .connections import guarded_protocol
    from .errors import redact_url
    from .index import IndexLoadError

    overrides = dict(
        index=index,
        upstream=upstream,
        host=host,
        port=port,
        upstream_api_key=upstream_api_key,
        max_concurrency=max_concurrency,
        default_model=default_model,
        copy_fallback=copy_fallback,
        uncalibrated=uncalibrated,
        prompt_style=prompt_style,
        max_body_bytes=max_body_bytes,
        max_bridged_bytes=max_bridged_bytes,
        max_upstream=max_upstream,
        max_queue=max_queue,
        request_timeout=request_timeout,
        public_metrics=public_metrics,
        public_ready=public_ready,
    )
    if api_keys:
        overrides["api_keys"] = tuple(api_keys)
    if low_resource:
        overrides["low_resource"] = tuple(
            sorted({c.strip().lower() for c in low_resource.split(",") if c.strip()})
        )
    try:
        settings = Settings.from_env(**overrides)
        app = create_app(settings)
    except (IndexLoadError, ValueError) as exc:
        click.echo(f"bridgex-serve: cannot start: {exc}", err=True)
        sys.exit(2)
    loop, http = _loop_and_http()
    click.echo(
        f"bridgex-serve: {settings.index} → {redact_url(settings.upstream)}, listening on http://{host}:{port}",
        err=True,
    )
    uvicorn.run(
        app,
        host=host,
        port=port,
        loop=loop,
        http=guarded_protocol(settings.header_timeout, http),
        log_level=log_level,
        access_log=False,
        lifespan="on",
    )


if __name__ == "__main__":
    main()
