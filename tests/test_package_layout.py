"""The rules the package's tree keeps: imports flow one way between its folders, no import circle (imports
inside functions and type-only imports count too), and no file over 450 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import bigbird_pegasus

PACKAGE = Path(bigbird_pegasus.__file__).parent
# Each folder (or top-level module) and the ones it may import; `__main__` entry points may import anything.
ALLOWED = {
    "allocation": set(),
    "errors": set(),
    "config": {"checkpoint"},
    "checkpoint": {"config"},
    "text": {"errors", "checkpoint"},
    "kernels": set(),
    "modeling": {"config", "checkpoint", "kernels"},
    "generation": {"config", "checkpoint", "modeling", "kernels"},
    "heads": {"config", "generation", "modeling"},
    "pipeline": {"errors", "config", "checkpoint", "text", "modeling", "generation", "heads"},
    "finetune": {"errors", "config", "checkpoint", "text", "modeling", "heads", "pipeline"},
    "serve": {"errors", "config", "checkpoint", "text", "modeling", "generation", "heads", "pipeline"},
    "cli": {"errors", "config", "checkpoint", "text", "modeling", "generation", "heads", "pipeline", "finetune",
            "serve"},
}
MAX_LINES = 450


def module_imports() -> dict[str, set[str]]:
    """Dotted module name (relative to the package) -> the package's modules it imports."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in modules.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package[:len(package) - (node.level - 1)] + ([node.module] if node.module else [])
                for candidate in [".".join(base)] + [".".join(base + [alias.name]) for alias in node.names]:
                    if candidate in modules and candidate != name:
                        targets.add(candidate)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("bigbird_pegasus."):
                targets.add(node.module.removeprefix("bigbird_pegasus."))
        graph[name] = targets
    return graph


def test_folders_import_only_the_ones_below_them():
    wrong = []
    for module, targets in module_imports().items():
        folder = module.split(".")[0]
        if module == "" or module.endswith("__main__"):
            continue
        for target in targets:
            target_folder = target.split(".")[0]
            if target_folder != folder and target_folder not in ALLOWED[folder] and target != "":
                wrong.append(f"{module} imports {target}")
    assert not wrong, wrong


def test_no_import_circle():
    graph = {name: {t for t in targets if t} for name, targets in module_imports().items() if name}
    state: dict[str, int] = {}
    circles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for target in graph.get(node, ()):
            if not graph.get(target) and target not in graph:
                continue
            if state.get(target) == 1:
                circles.append(stack[stack.index(target):] + [target])
            elif not state.get(target):
                visit(target, stack)
        stack.pop()
        state[node] = 2

    for node in graph:
        if not state.get(node):
            visit(node, [])
    # a package's __init__ re-exporting its own modules is not a circle of the code
    circles = [c for c in circles if not any(p == "" for p in c)]
    assert not circles, circles


def test_no_file_over_the_limit():
    long_files = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
                  if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long_files, long_files
