"""Engine settings per model family and back-end, and the vLLM command the launcher builds from them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bridgex_serve.engines import EngineSettings, engine_settings, model_family
from bridgex_serve.launch import VllmServer


def _folder(tmp_path: Path, model_type: str) -> Path:
    folder = tmp_path / model_type
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": model_type}))
    return folder


def _flag(cmd: list[str], name: str) -> str:
    return cmd[cmd.index(name) + 1]


def test_qwen2_on_cpu_gets_blocks_that_are_a_multiple_of_32(tmp_path):
    settings = engine_settings(_folder(tmp_path, "qwen2"), "cpu")
    assert settings.block_size % 32 == 0
    assert (settings.dtype, settings.max_model_len) == ("bfloat16", 2048)


def test_gemma3_on_cpu_keeps_its_16_token_blocks(tmp_path):
    assert engine_settings(_folder(tmp_path, "gemma3_text"), "cpu").block_size == 16


def test_an_unknown_family_gets_the_back_ends_defaults(tmp_path):
    folder = _folder(tmp_path, "llama")
    assert engine_settings(folder, "cpu") == EngineSettings(block_size=32, dtype="float32", max_model_len=512)
    assert engine_settings("org/hub-id", "cuda").block_size == 16
    assert model_family("org/hub-id") is None


def test_explicit_values_win_and_none_is_ignored(tmp_path):
    settings = engine_settings(_folder(tmp_path, "qwen2"), "cpu", block_size=64, dtype=None)
    assert (settings.block_size, settings.dtype) == (64, "bfloat16")


def test_bad_back_end_config_and_prompt_style_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown back-end 'tpu'"):
        engine_settings(_folder(tmp_path, "qwen2"), "tpu")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="unreadable model config"):
        model_family(broken)
    with pytest.raises(ValueError, match="prompt style"):
        EngineSettings(block_size=32, dtype="float32", max_model_len=512, word_style="raw")


def test_the_launcher_passes_the_family_settings_to_vllm(tmp_path, monkeypatch):
    monkeypatch.delenv("VLLM_TARGET_DEVICE", raising=False)
    qwen = VllmServer(_folder(tmp_path, "qwen2"), name="q", log=tmp_path / "q.log").cmd
    assert (_flag(qwen, "--block-size"), _flag(qwen, "--dtype"), _flag(qwen, "--max-model-len")) == (
        "32", "bfloat16", "2048",
    )  # fmt: skip
    gemma_dir = _folder(tmp_path, "gemma3_text")
    gemma = VllmServer(gemma_dir, name="g", log=tmp_path / "g.log", dtype="float32").cmd
    assert (_flag(gemma, "--block-size"), _flag(gemma, "--dtype")) == ("16", "float32")


def test_the_instruct_qwen_family_is_asked_through_its_chat_template_and_gemma_base_is_not(tmp_path):
    assert engine_settings(_folder(tmp_path, "qwen2"), "cpu").prompt_styles == {
        "word": "chat",
        "translate": "completion",
    }
    assert set(engine_settings(_folder(tmp_path, "gemma3_text"), "cpu").prompt_styles.values()) == {
        "completion"
    }
