"""The import contract (`make lint`): downward imports only, no cycles, lazy imports included."""

import shutil
from pathlib import Path

from mirage._layers import check

ROOT = Path(__file__).resolve().parent.parent


def _copy_tree(tmp_path) -> Path:
    shutil.copytree(ROOT / "mirage", tmp_path / "mirage", ignore=shutil.ignore_patterns("assets"))
    return tmp_path


def test_the_package_keeps_the_contract():
    assert check(ROOT) == []


def test_an_upward_import_inside_a_function_is_caught(tmp_path):
    root = _copy_tree(tmp_path)
    path = root / "mirage" / "memory" / "latent.py"
    path.write_text(
        path.read_text() + "\n\ndef _late():\n    from mirage.pipeline import plan_chunks\n"
    )
    new = set(check(root)) - set(check(ROOT))
    upward = "mirage.memory.latent -> mirage.pipeline: upward import (memory -> pipeline)"
    assert upward in new  # (the pipeline imports memory, so a cycle is reported as well)
    assert all(p == upward or p.startswith("import cycle: mirage.memory") for p in new)


def test_same_layer_imports_and_cycles_are_caught(tmp_path):
    root = _copy_tree(tmp_path)
    (root / "mirage" / "models" / "probe.py").write_text("import mirage.perception.base\n")
    geo = root / "mirage" / "geometry"
    (geo / "a.py").write_text("from mirage.geometry import b\n")
    (geo / "b.py").write_text("def f():\n    from . import a\n")
    problems = check(root)
    same = "mirage.models.probe -> mirage.perception.base: same layer import (models -> perception)"
    assert same in problems
    assert "import cycle: mirage.geometry.a -> mirage.geometry.b" in problems
