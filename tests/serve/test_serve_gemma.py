"""The real Gemma 3 270M behind vLLM on the CPU, bridged by the plugin and by the proxy.

The model folder comes from the shared `gemma_folder` fixture (converted from the PyPI package on first use).
Greedy and seeded: the answers are checked to be a Hebrew word (the target's script), not only well formed.
"""

from __future__ import annotations

import unicodedata

import pytest
from serve_support import VllmServer, openai_client, running, serve_index  # noqa: F401

from bridgex_serve.app import create_app
from bridgex_serve.settings import Settings


def hebrew_word(text: str) -> bool:
    """One line of Hebrew letters (no Latin, no quote): what a translation into Hebrew looks like."""
    letters = [c for c in text if c.isalpha()]
    return bool(letters) and all(unicodedata.name(c, "").startswith("HEBREW") for c in letters)


pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gemma(serve_index, gemma_folder, tmp_path_factory):  # noqa: F811
    log = tmp_path_factory.mktemp("vllm-gemma") / "vllm-gemma.log"
    with (
        VllmServer(
            gemma_folder,
            name="gemma-3-270m",
            index=serve_index,
            block_size=16,
            dtype="bfloat16",
            max_model_len=1024,
            log=log,
            start_timeout=400,
        ) as server,
        running(create_app(Settings(index=str(serve_index), upstream=server.url))) as proxy,
    ):
        server.proxy_url = proxy.url
        yield server


@pytest.mark.parametrize("mode", ["chain", "two-step"])
def test_gemma_word_translation_through_the_proxy(gemma, mode):
    client = openai_client(gemma.proxy_url, timeout=300)
    r = client.chat.completions.create(
        model="gemma-3-270m",
        messages=[{"role": "user", "content": "maji"}],
        temperature=0,
        seed=0,
        extra_body={"bridgex": {"task": "word", "source": "sw", "target": "he", "mode": mode}},
    )
    meta = r.model_extra["bridgex"]
    assert (meta["bridge"], meta["mode"], meta["shots"]) == ("en", mode, 3)
    # with three bridged demonstrations Gemma follows the chain format in one call (greedy, measured); a
    # copied bridge word or answer costs one direct call more
    assert meta["calls"] == (1 if mode == "chain" else 2) + (meta["fallback"] == "copy")
    assert meta["route"] == ("direct" if meta["fallback"] else "bridge")
    content = r.choices[0].message.content
    assert "\n" not in content and '"' not in content and hebrew_word(content), content
    assert isinstance(meta["bridge_copied"], bool)


def test_gemma_word_translation_inside_vllm(gemma):
    client = openai_client(gemma.url, timeout=300)
    r = client.completions.create(
        model="gemma-3-270m",
        prompt="kitabu",
        temperature=0,
        seed=0,
        extra_body={"bridgex": {"task": "word", "source": "sw", "target": "he"}},
    )
    meta = r.model_extra["bridgex"]
    # a chain that stops after the bridge is continued by a second call; a copy costs a direct call more
    assert meta["bridge"] == "en" and meta["calls"] - (meta["fallback"] == "copy") in (1, 2), meta
    text = r.choices[0].text
    assert "\n" not in text and hebrew_word(text), text
