"""The import contract of DESIGN.md: imports point downward only, and nothing imports in a cycle.

Every `import` / `from ... import` in a module counts, also those inside functions (a lazy
import is still a dependency). `python -m mirage._layers` checks the installed tree and exits
non-zero naming each violation; `make lint` runs it.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

# Rank of each top-level part of the package, bottom (0) to top; a module may import only
# parts of a lower rank (and its own part). Parts of one rank do not import each other.
LAYERS: dict[str, int] = {
    "geometry": 0, "atomic": 0, "machine": 0,
    "memory": 1,
    "synthetic": 2,
    "data": 3,
    "models": 4, "perception": 4,
    "pipeline": 5,
    "training": 6, "eval": 6,
    "demo": 7, "explore": 7,
    "cli": 8,
    "__main__": 9,
}  # fmt: skip


def module_name(root: Path, path: Path) -> str:
    """`mirage.memory.latent` for root/mirage/memory/latent.py (root holds the package)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, name: str, is_package: bool) -> set[str]:
    """Absolute names of the `mirage` modules `path` imports (anywhere in the file)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.add(mod)
            found |= {f"{mod}.{a.name}" for a in node.names}  # `from pkg import module`
    return {m for m in found if m == "mirage" or m.startswith("mirage.")}


def part_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def module_graph(root: Path) -> dict[str, set[str]]:
    """module -> the mirage modules it imports, restricted to modules that exist."""
    files = {module_name(root, p): p for p in sorted((root / "mirage").rglob("*.py"))}
    graph = {}
    for name, path in files.items():
        deps = imports_of(path, name, path.name == "__init__.py")
        graph[name] = {d for d in deps if d in files and d != name}
    return graph


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    out = []
    for mod, deps in sorted(graph.items()):
        src = part_of(mod)
        if src is None:
            continue
        for dep in sorted(deps):
            dst = part_of(dep)
            if dst is None or dst == src:
                continue
            if src not in LAYERS or dst not in LAYERS:
                unknown = src if src not in LAYERS else dst
                out.append(f"{mod} -> {dep}: part {unknown!r} has no layer")
            elif LAYERS[dst] >= LAYERS[src]:
                rule = "same layer" if LAYERS[dst] == LAYERS[src] else "upward"
                out.append(f"{mod} -> {dep}: {rule} import ({src} -> {dst})")
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected module groups of more than one module (Tarjan, iterative order)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _package_inits(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Drop edges into a package's own `__init__` from inside it (re-exports, not cycles)."""
    return {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in graph.items()}


def check(root: Path) -> list[str]:
    """Every violation of the contract in the tree under `root` (which holds `mirage/`)."""
    graph = _package_inits(module_graph(root))
    problems = layer_violations(graph)
    problems += [f"import cycle: {' -> '.join(c)}" for c in cycles(graph)]
    return problems


def main() -> int:
    root = Path(__file__).resolve().parent.parent
    problems = check(root)
    for p in problems:
        print(p, file=sys.stderr)
    print(f"import contract: {len(problems)} violation(s)" if problems else "import contract: ok")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
