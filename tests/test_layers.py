"""The layers import one way, and no module imports itself back through others.

core (``llmops_core``) < renderer (``llmops_operator.render``) | trainer | server < controller
(``llmops_operator.controller``) < CLI (``llmops``). A package may import its own modules and any lower
layer; the renderer and the two images are peers and import none of each other. Every import counts,
lazy ones inside functions too; cycles are looked for among module-level imports.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parents[1]
SOURCES = ["operator", "cli", "training-jobs", "inference-service"]
LAYERS = {
    "llmops_core": 0,
    "llmops_operator.render": 1,
    "llmops_train": 1,
    "llmops_serve": 1,
    "llmops_operator.controller": 2,
    "llmops_operator": 2,  # the package itself: its docstring only
    "llmops": 3,
}


def package(module: str) -> str:
    """The layer's package a module belongs to (longest prefix in LAYERS)."""
    return max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)


def modules() -> dict[str, Path]:
    found = {}
    for src in SOURCES:
        for path in (ROOT / src).rglob("*.py"):
            rel = path.relative_to(ROOT / src).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            found[".".join(parts)] = path
    return found


def imports(module: str, path: Path, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text())
    is_pkg = path.name == "__init__.py"
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor if is_pkg else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}
    return out


def ours(name: str, known: dict[str, Path]) -> str | None:
    """The module of ours ``name`` refers to (a module, or a name inside one), else None."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def test_no_layer_imports_a_higher_one_or_a_peer():
    known = modules()
    wrong = []
    for module, path in known.items():
        mine = package(module)
        for name in imports(module, path, top_level_only=False):
            target = ours(name, known)
            if target is None:
                continue
            theirs = package(target)
            if theirs != mine and LAYERS[theirs] >= LAYERS[mine] and theirs != "llmops_operator":
                wrong.append(f"{module} ({mine}) imports {target} ({theirs})")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_cycles():
    known = modules()
    graph = {
        m: {t for n in imports(m, p, top_level_only=True) if (t := ours(n, known)) and t != m}
        for m, p in known.items()
    }
    state: dict[str, int] = {}  # 1 visiting, 2 done
    cycles = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for t in graph[m]:
            if state.get(t) == 1:
                cycles.append(" -> ".join([*stack[stack.index(t) :], t]))
            elif t not in state:
                visit(t, [*stack, t])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    real = [c for c in cycles if not _init_only(c, known)]
    assert not real, "\n".join(real)


def _init_only(cycle: str, known: dict[str, Path]) -> bool:
    """A cycle made only by a package's ``__init__`` re-exporting its own submodules."""
    hops = cycle.split(" -> ")
    return any(
        known[h].name == "__init__.py" and all(x == h or x.startswith(h + ".") for x in hops) for h in hops
    )


def test_the_walker_sees_a_violation():
    """The check itself: an upward import in a core module is reported."""
    assert package("llmops_core.api.validation") == "llmops_core"
    assert package("llmops.dev.simulated") == "llmops"
    assert LAYERS[package("llmops.main")] > LAYERS[package("llmops_core.storage")]
    fake = ROOT / "operator" / "llmops_core" / "api" / "validation.py"
    assert "llmops_core.storage" in {
        ours(n, modules()) for n in imports("llmops_core.api.validation", fake, top_level_only=False)
    }
