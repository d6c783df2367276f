"""The synthetic package's modules import one another one way only: no cycle, not even
through an import inside a function (DESIGN: no import cycles)."""

import ast
from pathlib import Path

import mirage.synthetic

PKG = Path(mirage.synthetic.__file__).parent


def _imports(path: Path) -> set[str]:
    """Sibling modules of mirage.synthetic that `path` imports anywhere in its body."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for n in names:
            if n.startswith("mirage.synthetic."):
                out.add(n.split(".")[2])
    return out & {p.stem for p in PKG.glob("*.py")}


def test_no_import_cycles_inside_mirage_synthetic():
    graph = {p.stem: _imports(p) for p in PKG.glob("*.py") if p.stem != "__init__"}
    state = {}

    def visit(m, stack):
        if state.get(m) == "done":
            return
        assert state.get(m) != "open", f"import cycle: {' -> '.join([*stack, m])}"
        state[m] = "open"
        for n in graph.get(m, ()):
            visit(n, [*stack, m])
        state[m] = "done"

    for m in graph:
        visit(m, [])
    assert "scene" not in graph["raycast"] and "raycast" in graph["scene"]


def test_public_names_unchanged():
    expected = {"KINDS", "TEXTURES", "DynamicObject", "Material", "Scene", "SceneRender",
                "intrinsics", "look_at", "make_scene", "render"}  # fmt: skip
    assert set(mirage.synthetic.__all__) == expected
    assert all(hasattr(mirage.synthetic, n) for n in expected)
