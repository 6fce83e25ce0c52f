"""Property-based fuzzing of every proxy route against its OpenAPI schema (bridgex_serve.openapi): bodies
that follow the schema, bodies with one field replaced by any JSON value, any JSON, any bytes, and raw
HTTP bytes. The proxy must never answer 5xx (its upstream here answers every JSON object), never hang, and
every error must be the OpenAI error object. Derandomized and bounded so the suite stays fast."""

from __future__ import annotations

import json
import socket

import httpx
import jsonschema
import pytest
from fault_upstream import FaultUpstream
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serve_support import ServerThread, running, write_index

from bridgex_serve.app import create_app
from bridgex_serve.connections import server_config
from bridgex_serve.openapi import ERROR, REQUESTS, schema
from bridgex_serve.settings import Settings

FUZZ = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
EDGES = st.sampled_from([2**64 - 1, 2**63, -1, 0, 1e308, "", "5", [5], {}, None, True])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20) | EDGES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
BODY_ROUTES = sorted(path for (method, path), body in REQUESTS.items() if body is not None)
ALL_ROUTES = sorted(REQUESTS)


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory):
    index = write_index(tmp_path_factory.mktemp("fuzz") / "index.duckdb")
    upstream = FaultUpstream(faults=False)
    with running(upstream.app) as up:
        proxy_settings = Settings(index=str(index), upstream=up.url, header_timeout=0.3, body_timeout=1.0)
        app = create_app(proxy_settings)
        server = ServerThread(app)
        server.server.config = server_config(app, proxy_settings, host="127.0.0.1", port=server.port)
        with server, httpx.Client(base_url=server.url, timeout=10) as client:
            yield client, server.port


def from_schema(schema: dict) -> st.SearchStrategy:
    """Values valid under `schema`, for the JSON Schema subset `bridgex_serve.openapi` uses."""
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "anyOf" in schema:
        return st.one_of([from_schema(s) for s in schema["anyOf"]])
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        required = set(schema.get("required", ()))
        return st.fixed_dictionaries(
            {k: from_schema(v) for k, v in props.items() if k in required},
            optional={k: from_schema(v) for k, v in props.items() if k not in required},
        )
    if kind == "array":
        return st.lists(
            from_schema(schema["items"]),
            min_size=schema.get("minItems", 0),
            max_size=min(schema.get("maxItems", 4), 4),
        )
    if kind == "string":
        return st.text(min_size=schema.get("minLength", 0), max_size=min(schema.get("maxLength", 40), 40))
    if kind == "integer":
        return st.integers(schema.get("minimum"), schema.get("maximum"))
    if kind == "number":
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        return st.floats(
            low, schema.get("maximum"), exclude_min="exclusiveMinimum" in schema, allow_nan=False
        )
    if kind == "boolean":
        return st.booleans()
    raise ValueError(f"schema not covered by the fuzz strategies: {schema}")


def check(r: httpx.Response) -> None:
    """No 5xx (but 504 when the client set its own deadline); every error is the OpenAI error object."""
    asked_deadline = b'"timeout"' in (r.request.content or b"")
    assert r.status_code < 500 or (asked_deadline and r.status_code == 504), (r.status_code, r.text[:500])
    if r.status_code >= 400:
        assert r.headers["content-type"].startswith("application/json"), r.headers
        jsonschema.validate(r.json(), ERROR)


def mutated(path: str) -> st.SearchStrategy[dict]:
    """A schema-valid body with one top-level field set to any JSON value."""
    body = from_schema(REQUESTS[("post", path)])
    return st.tuples(
        body,
        st.sampled_from(
            [
                "model",
                "messages",
                "prompt",
                "max_tokens",
                "bridgex",
                "q",
                "stream",
                "target",
                "max_completion_tokens",
                "timeout",
            ]
        ),
        JSON,
    ).map(lambda t: {**t[0], t[1]: t[2]})


def with_bridgex(path: str) -> st.SearchStrategy[dict]:
    """A schema-valid body that always asks for bridging (`bridgex` from its schema, or any JSON)."""
    bridgex = REQUESTS[("post", path)]["properties"].get("bridgex")
    options = from_schema(bridgex) if bridgex else JSON
    return st.tuples(from_schema(REQUESTS[("post", path)]), options | JSON).map(
        lambda t: {**t[0], "bridgex": t[1]}
    )


def positions(value, prefix=()) -> list[tuple]:
    """Every path into a JSON value (object keys and list indexes), containers included."""
    out = []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        out.append((*prefix, key))
        out += positions(child, (*prefix, key))
    return out


@st.composite
def deep_mutated(draw, path: str) -> dict:
    """A bridged, schema-valid body with the value at one position (any depth, chosen uniformly) replaced
    by an edge case or any JSON value."""
    body = draw(with_bridgex(path) if path != "/v1/translate" else from_schema(REQUESTS[("post", path)]))
    where = positions(body)
    if where:
        *parents, last = draw(st.sampled_from(where))
        node = body
        for key in parents:
            node = node[key]
        node[last] = draw(EDGES | JSON)
    return body


def test_the_schema_is_served_and_valid(fuzzed):
    client, _ = fuzzed
    document = client.get("/openapi.json").json()
    assert document == schema() and document["openapi"].startswith("3.1")
    jsonschema.Draft202012Validator.check_schema(REQUESTS[("post", "/v1/chat/completions")])


@pytest.mark.parametrize("path", BODY_ROUTES)
def test_schema_bodies(fuzzed, path):
    client, _ = fuzzed

    @FUZZ
    @given(
        body=from_schema(REQUESTS[("post", path)]) | with_bridgex(path)
        if path != "/v1/translate"
        else from_schema(REQUESTS[("post", path)])
    )
    def run(body):
        check(client.post(path, json=body))

    run()


@pytest.mark.parametrize("path", BODY_ROUTES)
def test_mutated_and_arbitrary_bodies(fuzzed, path):
    client, _ = fuzzed

    @settings(FUZZ, max_examples=150)
    @given(body=deep_mutated(path) | mutated(path) | JSON.map(lambda v: {"bridgex": v}) | JSON)
    def run(body):
        check(client.post(path, content=json.dumps(body), headers={"content-type": "application/json"}))

    run()


@pytest.mark.parametrize(("method", "path"), ALL_ROUTES)
def test_arbitrary_bytes_and_query_strings(fuzzed, method, path):
    client, _ = fuzzed

    @FUZZ
    @given(raw=st.binary(max_size=300), query=st.text(max_size=20))
    def run(raw, query):
        body = raw if method == "post" else None
        check(client.request(method.upper(), path, content=body, params={"q": query} if query else None))

    run()


@FUZZ
@given(
    data=st.one_of(
        st.binary(min_size=1, max_size=200),
        st.tuples(
            st.sampled_from([b"GET", b"POST", b"PUT", b"\r\n", b"", b"G\x00T"]),
            st.binary(max_size=40),
            st.sampled_from([b" HTTP/1.1\r\n", b" HTTP/9.9\r\n", b"\r\n", b"\n\n", b""]),
            st.binary(max_size=80),
        ).map(b"".join),
    )
)
def test_raw_http_bytes_never_hang_and_errors_are_json(fuzzed, data):
    _, port = fuzzed
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(data)
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
                if b"\r\n\r\n" in out:
                    head, _, rest = out.partition(b"\r\n\r\n")
                    length = next(
                        (
                            int(v)
                            for k, _, v in (ln.partition(b": ") for ln in head.split(b"\r\n"))
                            if k.lower() == b"content-length"
                        ),
                        None,
                    )
                    if length is not None and len(rest) >= length:
                        break
        except TimeoutError:
            pytest.fail(f"no answer and no close within 30 s (the header deadline is 0.3 s) for {data!r}")
    if out:
        status = int(out.split(b" ", 2)[1])
        assert status < 500, out[:300]
        if status >= 400:
            assert b"application/json" in out.split(b"\r\n\r\n")[0].lower(), out[:300]


def test_the_schema_describes_every_request_option():
    from bridgex_serve.openapi import OPTIONS
    from bridgex_serve.options import OPTION_KEYS, TRANSLATE_OPTIONS

    assert set(OPTIONS) == set(OPTION_KEYS)
    assert set(TRANSLATE_OPTIONS) <= set(REQUESTS[("post", "/v1/translate")]["properties"])
