"""The shape of the package: layers, no import cycles, serving free of torch and training code, imports
without side effects, small functions and modules."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "actionrec"
# The rooms a model file and a video go through to an answer, torch-free: its folders, not a list of names.
INFERENCE = ("actionrec.runtime", "actionrec.modelfile", "actionrec.video", "actionrec.errors", "actionrec.files")
SERVING = (*INFERENCE, "actionrec.teaching", "actionrec.serve", "actionrec.client")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every actionrec module `path` imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    return {name: {imported for imported in imports_of(path) if imported in modules and imported != name}
            for name, path in modules.items()}


def test_no_import_cycles():
    graph = import_graph()
    # A package's __init__ re-exporting its own modules is not a cycle of the code's layers.
    for name, imported in graph.items():
        graph[name] = {other for other in imported if not name.startswith(other + ".")}
    visiting, done, cycles = set(), set(), []

    def visit(name: str, trail: list[str]) -> None:
        if name in done:
            return
        if name in visiting:
            cycles.append(trail[trail.index(name):] + [name])
            return
        visiting.add(name)
        for other in sorted(graph[name]):
            visit(other, trail + [name])
        visiting.discard(name)
        done.add(name)

    for name in sorted(graph):
        visit(name, [])
    assert not cycles, cycles


# The package's rooms, lowest floor first: a room imports only from the floors below it.
FLOORS = (
    ("errors", "files"),
    ("video", "client"),
    ("datasets", "modelfile"),
    ("runtime",),
    ("evaluation", "teaching"),
    ("serve", "training"),
    ("testing",),
    ("benchmarks",),
    ("cli",),
)


def room_of(module: str) -> str:
    return module.split(".")[1] if module.count(".") else ""


def test_every_room_imports_only_from_the_floors_below_it():
    floor = {room: level for level, rooms in enumerate(FLOORS) for room in rooms}
    rooms = {room_of(name) for name in import_graph()} - {"", "__main__"}
    assert rooms == set(floor), f"a room without a floor, or a floor without a room: {rooms ^ set(floor)}"
    upward = sorted(f"{name} imports {imported}" for name, imports in import_graph().items() if room_of(name) in floor
                    for imported in imports if room_of(imported) in floor
                    and room_of(imported) != room_of(name) and floor[room_of(imported)] >= floor[room_of(name)])
    assert not upward


def test_serving_modules_reach_neither_torch_nor_training_code():
    reachable = reachable_from(SERVING)
    assert not [name for name in reachable if name.startswith(("actionrec.training", "actionrec.datasets"))]
    for name in reachable:
        path = PACKAGE.parent / (name.replace(".", "/") + ".py")
        path = path if path.exists() else PACKAGE.parent / name.replace(".", "/") / "__init__.py"
        assert not {imported.split(".")[0] for imported in imports_of(path)} & {"torch", "torchvision"}, name
    code = ("import sys, actionrec, actionrec.serve.app, actionrec.runtime.recognizer, actionrec.cli; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision') "
            "or m.startswith(('actionrec.training.train', 'actionrec.training.model', 'actionrec.training.export'))]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def reachable_from(prefixes: tuple[str, ...]) -> set[str]:
    graph = import_graph()
    reachable, stack = set(), [name for name in graph if name.startswith(prefixes)]
    while stack:
        name = stack.pop()
        if name not in reachable:
            reachable.add(name)
            stack.extend(graph.get(name, ()))
    return reachable


def test_evaluating_model_files_reaches_no_training_code():
    assert not {name for name in reachable_from(("actionrec.evaluation",))
                if name.startswith("actionrec.training")}


def test_no_function_over_60_lines_no_module_over_400():
    long_functions, large_modules = [], []
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        large_modules += [module_name(path)] if len(path.read_text().splitlines()) > 400 else []
        long_functions += [f"{module_name(path)}.{node.name}" for node in ast.walk(tree)
                           if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                           and node.end_lineno - node.lineno + 1 > 60]
    assert not long_functions and not large_modules, (long_functions, large_modules)


def test_no_test_module_imports_another():
    tests = Path(__file__).resolve().parent
    local = ({path.stem for path in tests.rglob("*.py")} | {path.name for path in tests.iterdir() if path.is_dir()}
             | {"tests"})
    offenders = {str(path.relative_to(tests)): sorted(name for name in imports_of(path) if name.split(".")[0] in local)
                 for path in tests.rglob("*.py")}
    assert not {name: found for name, found in offenders.items() if found}


def test_importing_the_package_changes_nothing_in_the_process():
    environment = {name: value for name, value in os.environ.items() if name != "OMP_WAIT_POLICY"}
    code = ("import os, actionrec, actionrec.runtime.recognizer, actionrec.cli; "
            "assert 'OMP_WAIT_POLICY' not in os.environ")
    subprocess.run([sys.executable, "-c", code], check=True, env=environment)


def test_every_module_says_what_it_is_for():
    missing = [module_name(path) for path in PACKAGE.rglob("*.py")
               if not ast.get_docstring(ast.parse(path.read_text()))]
    assert not missing
