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
