"""The package's layout, checked on its source: dependencies point one way (no import cycle, imports inside functions
included; no import against the layer order), lazy imports only where they keep start-up fast, short functions,
short recipes that call the package step by step, and no special cases by recipe name."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

PACKAGE = ROOT / "src" / "instructkit"
# Lower layers never import higher ones. Leaves import nothing of ours but other leaves.
LAYERS = [
    {"errors", "log", "paths", "distributed", "catalog"},
    {"chat_templates"},
    {"config"},
    {"embedded"},
    {"data", "modeling"},
    {"evaluation"},
    {"training", "serving"},
    {"commands"},
]
# Third-party packages that take a second or more to import: a function may import one of our modules lazily only
# when that module pulls one of these in at import time (else the import belongs at the top of the file).
HEAVY = {"torch", "transformers", "trl", "peft", "datasets", "accelerate", "deepspeed", "bitsandbytes", "lm_eval",
         "matplotlib", "huggingface_hub", "tokenizers", "safetensors", "pyarrow", "numpy", "pandas", "fastapi",
         "uvicorn", "tiktoken"}
MAX_FUNCTION_LINES = 60
RECIPES = sorted((ROOT / "recipes").glob("[!_]*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[:len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(path: Path) -> list[tuple[str, bool, int]]:
    """(imported module, inside a function, line) for every import in the file; `from pkg import mod` names mod."""
    module, tree = module_name(path), ast.parse(path.read_text())
    inside = {id(sub) for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
              for sub in ast.walk(node)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in inside, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = resolve(node, module, path.name == "__init__.py")
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                is_module = (PACKAGE.parent / candidate.replace(".", "/")).with_suffix(".py").is_file() or \
                    (PACKAGE.parent / candidate.replace(".", "/") / "__init__.py").is_file()
                found.append((candidate if is_module else target, id(node) in inside, node.lineno))
    return found


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
GRAPH = {name: [(t, lazy, line) for t, lazy, line in imports_of(path) if t.split(".")[0] == "instructkit"
                and t != name] for name, path in MODULES.items()}


def layer(module: str) -> int:
    group = module.split(".")[1] if "." in module else "errors"  # the package itself is a leaf
    return next(i for i, names in enumerate(LAYERS) if group in names)


def test_every_module_has_a_layer():
    for name in MODULES:
        assert layer(name) >= 0, name


def test_no_import_cycle_counting_imports_inside_functions():
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target, _, _ in GRAPH.get(node, []):
            if target not in MODULES:
                continue
            if state.get(target) == "open":
                pytest.fail("import cycle: " + " -> ".join(stack[stack.index(target):] + [target]))
            if target not in state:
                visit(target)
        stack.pop()
        state[node] = "done"

    for name in MODULES:
        if name not in state:
            visit(name)


def test_imports_point_down_the_layers():
    wrong = [f"{name}:{line} imports {target} (layer {layer(target)} above {layer(name)})"
             for name, targets in GRAPH.items() for target, _, line in targets
             if target in MODULES and layer(target) > layer(name)]
    assert not wrong, "\n".join(wrong)


def heavy_at_import(module: str, seen=None) -> bool:
    """Whether importing `module` imports a heavy third-party package (through its top-level imports)."""
    seen = seen if seen is not None else set()
    if module in seen or module not in MODULES:
        return False
    seen.add(module)
    for target, lazy, _ in imports_of(MODULES[module]):
        if lazy:
            continue
        if target.split(".")[0] in HEAVY or heavy_at_import(target, seen):
            return True
    return False


def test_our_modules_are_imported_lazily_only_when_they_are_heavy():
    needless = [f"{name}:{line} imports {target} inside a function, but it is light: import it at the top"
                for name, targets in GRAPH.items() for target, lazy, line in targets
                if lazy and target in MODULES and not heavy_at_import(target)]
    assert not needless, "\n".join(needless)


def test_the_command_line_starts_without_heavy_libraries():
    code = ("import sys; import instructkit.commands.main as m; m.build_parser(); "
            f"print(sorted(set({sorted(HEAVY)!r}) & {{n.split('.')[0] for n in sys.modules}}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out


def test_no_function_is_longer_than_60_lines():
    long = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name}: {n} lines")
    assert not long, "\n".join(long)


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipes_are_short_and_take_argv(recipe):
    source = recipe.read_text()
    assert len(source.splitlines()) <= 60, f"{recipe.name}: {len(source.splitlines())} lines"
    main = next(n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef) and n.name == "main")
    assert [a.arg for a in main.args.args] == ["argv"] and main.args.defaults, "main(argv=None)"


def test_no_special_case_by_recipe_name_in_the_package():
    names = {p.stem for p in RECIPES}
    found = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare) and any(isinstance(c, ast.Constant) and c.value in names
                                                     for c in [node.left, *node.comparators]):
                found.append(f"{name}:{node.lineno} compares with a recipe name")
            if isinstance(node, ast.arguments) and any(a.arg == "preference" for a in node.args + node.kwonlyargs):
                found.append(f"{name}:{node.lineno} takes a `preference` flag (SFT and DPO differ by type)")
    assert not found, "\n".join(found)
