"""Rules of the layout, enforced: dependency direction and what the handshake may import."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Each repository folder and the package it installs as (pyproject's package-dir).
PACKAGES = {"mcp_memalpha": "mcp_memalpha", "policy": "mcp_memalpha.policy", "training": "mcp_memalpha.training"}
POLICY, TRAINING = PACKAGES["policy"], PACKAGES["training"]


def imported_modules_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def imported_modules(folder: str) -> set[str]:
    return set().union(*(imported_modules_of(path) for path in (ROOT / folder).rglob("*.py")))


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_policy_depends_on_nothing_of_ours() -> None:
    ours = {name for name in imported_modules("policy") if within(name, "mcp_memalpha")}
    assert all(within(name, POLICY) for name in ours)


class _EagerImports(ast.NodeVisitor):
    """Imports that run when a module is imported: not those inside functions or `if TYPE_CHECKING:`."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        pass

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        pass

    def visit_If(self, node: ast.If) -> None:
        if isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for statement in node.orelse:
                self.visit(statement)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.names |= {alias.name for alias in node.names}

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.module:
            self.names.add(node.module)


def eager_imports(path: Path) -> set[str]:
    visitor = _EagerImports()
    visitor.visit(ast.parse(path.read_text()))
    return visitor.names


def test_server_package_never_imports_training() -> None:
    assert not any(within(name, TRAINING) for name in imported_modules("mcp_memalpha"))


def test_server_package_imports_policy_only_in_curation_and_only_lazily() -> None:
    """The curator is loaded only when a policy is switched on: `curation` imports it inside the
    functions that run then (and for type checking); no module imports it at import time."""
    paths = list((ROOT / "mcp_memalpha").rglob("*.py"))
    users = {path.name for path in paths if any(within(name, POLICY) for name in imported_modules_of(path))}
    assert users == {"curation.py"}
    for path in paths:
        assert not any(within(name, POLICY) for name in eager_imports(path)), path


def test_a_server_without_a_policy_never_loads_it(tmp_path: Path) -> None:
    """A whole session (lifespan, a tool call) with the policy off leaves the policy package unimported."""
    code = (
        "import sys, anyio\n"
        "from mcp import Client\n"
        "from mcp_memalpha import Settings\n"
        "from mcp_memalpha.server import build_server\n"
        "async def main():\n"
        f"    async with Client(build_server(Settings(data_dir={str(tmp_path)!r}))) as client:\n"
        "        await client.call_tool('memory_list', {'memory_type': 'semantic'})\n"
        "anyio.run(main)\n"
        "print(sorted(m for m in ('mcp_memalpha.policy', 'llama_cpp') if m in sys.modules))\n"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"


def test_starting_the_server_imports_nothing_heavy() -> None:
    """What runs before the initialize reply: the CLI, the server module and the SDK only."""
    code = (
        "import sys; import mcp_memalpha.cli, mcp_memalpha.server; "
        "heavy = [m for m in ('lancedb', 'pyarrow', 'model2vec', 'numpy', 'tokenizers', 'torch', 'llama_cpp') "
        "if m in sys.modules]; print(heavy)"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"


def test_server_cli_reaches_training_only_through_its_lazy_forwarder() -> None:
    """mcp_memalpha names the training package in one place: cli.py's forwarder, by module name at
    call time."""
    paths = (ROOT / "mcp_memalpha").rglob("*.py")
    naming = [path.relative_to(ROOT).as_posix() for path in paths if TRAINING in path.read_text()]
    assert naming == ["mcp_memalpha/cli.py"]


def test_training_imports_no_heavy_framework_at_module_import() -> None:
    """torch / transformers / trl load only inside the functions that train (the `train` extra)."""
    modules = sorted(f"{TRAINING}.{p.stem}" for p in (ROOT / "training").glob("*.py") if p.stem != "__init__")
    code = (
        f"import sys, importlib; [importlib.import_module(m) for m in {modules!r}]; "
        "print([m for m in ('torch', 'transformers', 'trl', 'llama_cpp') if m in sys.modules])"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"


def test_training_depends_on_policy_and_the_tools_not_the_server() -> None:
    ours = imported_modules("training")
    assert not any(within(name, "mcp_memalpha.server") for name in ours)
    assert {"mcp_memalpha.tools", "mcp_memalpha.policy.formats", "mcp_memalpha.policy.curator"} <= ours


# ---- the whole import graph ------------------------------------------------------------------


def _module_name(path: Path) -> str:
    folder, *parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join([PACKAGES[folder], *(parts[:-1] if parts[-1] == "__init__" else parts)])


def _our_modules() -> dict[str, Path]:
    return {_module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")}


def _imports_by_name(tree: ast.AST) -> set[str]:
    """`importlib.import_module("x.y")` with a constant name: a lazy import all the same."""
    return {
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute | ast.Name)
        and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id) == "import_module"
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    }


def import_edges(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of ours that `name` imports, wherever the import statement is: at module level,
    inside functions (lazy) and under `if TYPE_CHECKING:` alike. `from pkg import sub` counts as an
    import of `pkg.sub` when that is a module, else of `pkg` itself."""
    tree = ast.parse(path.read_text())
    targets = _imports_by_name(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                targets.add(sub if sub in modules else node.module)
    return {target for target in targets if target in modules and target != name}


def import_cycles() -> list[list[str]]:
    """Every strongly connected set of more than one module (Tarjan), each sorted."""
    modules = _our_modules()
    graph = {name: import_edges(name, path, modules) for name, path in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_the_import_graph_has_no_circle() -> None:
    """No module of mcp_memalpha, policy or training imports, however lazily, one that imports it
    back: each concern has one home below the ones that use it (docs/architecture.md)."""
    assert import_cycles() == []


def test_the_graph_reader_sees_lazy_and_by_name_imports() -> None:
    modules = _our_modules()
    cli = import_edges("mcp_memalpha.cli", modules["mcp_memalpha.cli"], modules)
    assert {"mcp_memalpha.server", "mcp_memalpha.training.cli"} <= cli  # inside functions; by name
    assert "mcp_memalpha.tools" in import_edges("mcp_memalpha.curation", modules["mcp_memalpha.curation"], modules)
