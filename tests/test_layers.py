"""The package's imports point one way: down the layers of docs/architecture.md, no cycles.

Every import counts, at module level or inside a function. A module may import from its own
layer or below; within a layer, the module-level imports form no cycle.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "fpxint_hw"

#: Layers from the ground up; a module is in the layer of its longest matching prefix.
LAYERS = (
    ("ground", ("errors", "outputs", "yamlfile", "intops", "spec", "report", "data")),
    ("numbers", ("series", "digits", "lanes", "abelian", "tile")),
    ("networks", ("graph", "float_exec", "io", "models")),
    ("programs", ("quant",)),
    ("engines", ("golden", "intsim", "hw", "flow", "costmodel")),
    ("workflows", ("workflows", "dse", "plots")),
    ("top", ("pipeline", "cli", "commands", "__main__")),
)


def layer_of(module: str) -> int:
    """Index in LAYERS of ``fpxint_hw.a.b`` (by its first component)."""
    head = module.split(".")[1] if module.count(".") else ""
    for i, (_, names) in enumerate(LAYERS):
        if head in names:
            return i
    raise AssertionError(f"module {module} is in no layer of tests/test_layers.py: add it")


def modules() -> dict[str, pathlib.Path]:
    out = {}
    for f in sorted(ROOT.rglob("*.py")):
        rel = f.relative_to(ROOT.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def imports(module: str, path: pathlib.Path, top_level_only: bool = False) -> set[str]:
    """The fpxint_hw modules ``module`` imports (resolved relative imports)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    pkg = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    known = modules()
    found = set()
    for n in nodes:
        if isinstance(n, ast.Import):
            names = [a.name for a in n.names]
        elif isinstance(n, ast.ImportFrom):
            base = n.module or ""
            if n.level:
                up = pkg[:len(pkg) - (n.level - 1)]
                base = ".".join(up + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in n.names]
        else:
            continue
        for name in names:
            if name.startswith("fpxint_hw") and name in known and name != module:
                found.add(name)
    return found


MODULES = modules()


@pytest.mark.parametrize("module", [m for m in MODULES if m != "fpxint_hw"])
def test_imports_point_down(module):
    mine = layer_of(module)
    up = sorted(m for m in imports(module, MODULES[module])
                if m != "fpxint_hw" and layer_of(m) > mine)
    assert not up, (f"{module} ({LAYERS[mine][0]}) imports from a higher layer: "
                    + ", ".join(f"{m} ({LAYERS[layer_of(m)][0]})" for m in up))


def test_no_import_cycles():
    graph = {m: {i for i in imports(m, p, top_level_only=True) if i != "fpxint_hw"}
             for m, p in MODULES.items() if m != "fpxint_hw"}
    # a package imports its own submodules by design; only module-to-module cycles count
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for d in graph.get(m, ()):
            if d.startswith(m + "."):
                continue
            if state.get(d) == 1:
                cycle = stack[stack.index(d):] + [d]
                if not all(a.startswith(b + ".") or b.startswith(a + ".")
                           for a, b in zip(cycle, cycle[1:])):
                    raise AssertionError("import cycle: " + " -> ".join(cycle))
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m)


def test_the_checker_sees_an_upward_import(tmp_path):
    """The checker itself: an import from a higher layer is found."""
    f = tmp_path / "spec.py"
    f.write_text("from .hw.top import TOP_NAME\n\ndef g():\n    from .commands import x\n")
    assert imports("fpxint_hw.spec", f) >= {"fpxint_hw.hw.top"}
    assert layer_of("fpxint_hw.hw.top") > layer_of("fpxint_hw.spec")
