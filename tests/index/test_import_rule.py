"""The arrows run one way: both halves depend on the index contract `bridgex_index`, never on each other.

Imports are read with `ast` (including the ones inside functions), so a lazy import cannot hide an arrow;
a subprocess then checks that loading the server imports neither torch nor the builder.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("bridgex_index", "index_builder", "bridgex_serve")


def imported_packages(path: Path, package: str) -> set[str]:
    """Top-level names a module imports (relative imports resolve to its own package)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            found.add(package if node.level else (node.module or "").split(".")[0])
    return found


def crossings(package: str) -> dict[str, set[str]]:
    """Module path → the project packages other than its own that it imports."""
    out = {}
    for path in sorted((REPO / package).rglob("*.py")):
        other = (imported_packages(path, package) & set(PACKAGES)) - {package}
        if other:
            out[str(path.relative_to(REPO))] = other
    return out


def test_imported_packages_sees_every_form_of_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text(
        "import os.path\nfrom . import x\nfrom bridgex_serve.rewrite import y\n"
        "def f():\n    import torch.nn\n    from index_builder import z\n"
    )
    assert imported_packages(module, "pkg") == {"os", "pkg", "bridgex_serve", "torch", "index_builder"}


def test_the_index_contract_imports_neither_half_nor_torch():
    assert crossings("bridgex_index") == {}
    for path in (REPO / "bridgex_index").rglob("*.py"):
        assert "torch" not in imported_packages(path, "bridgex_index"), path


def test_the_server_imports_only_the_index_contract():
    bad = {path: other for path, other in crossings("bridgex_serve").items() if other != {"bridgex_index"}}
    assert bad == {}


def test_the_builder_does_not_import_the_server():
    """Evaluation reaches the server over HTTP (a child process at most), never by import."""
    assert {
        path: other for path, other in crossings("index_builder").items() if "bridgex_serve" in other
    } == {}


@pytest.mark.parametrize("module", ["bridgex_serve.app", "bridgex_serve.service", "bridgex_serve.cli"])
def test_loading_the_server_imports_no_torch_and_no_builder(module):
    code = (
        f"import sys, {module}\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'index_builder'))\n"
        "print(','.join(bad))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


def test_one_word_normaliser_serves_scoring_and_the_copy_rule():
    from bridgex_index.words import copy_key, normalise_word
    from bridgex_serve import copies, demonstrations
    from index_builder.evaluation import scoring
    from index_builder.indexing import dictionaries

    assert scoring.normalise is normalise_word
    assert copies.normalise_word is normalise_word
    # one copy rule: the build's dictionaries drop, and the server's demonstrations skip, by the same key
    assert demonstrations.copy_key is copy_key and dictionaries.copy_key is copy_key
    assert copy_key("Curaçao") == copy_key("«curacao»")
    assert copies.is_copy("מַיִם", "«מים»")
    # NFC after case-folding (the server's copy of the rule used to leave ΐ decomposed)
    assert normalise_word("\u0390") == "\u0390"


def test_the_wire_types_do_not_depend_on_the_prompt_logic():
    """wire.py imports (at run time) nothing of plans, prompts or steps: wire shapes only."""
    tree = ast.parse((REPO / "bridgex_serve" / "wire.py").read_text(encoding="utf-8"))
    local = {node.module for node in tree.body if isinstance(node, ast.ImportFrom) and node.level}
    assert local <= {"options"}, local
