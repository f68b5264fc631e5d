"""Rules of the layout, enforced: dependency direction and what the handshake may import."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(package: str) -> set[str]:
    names: set[str] = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
    return names


def test_policy_depends_on_nothing_of_ours() -> None:
    assert not {name for name in imported_modules("policy") if name.split(".")[0] in ("mcp_memalpha", "training")}


def test_server_package_does_not_import_policy_or_training() -> None:
    assert not {name for name in imported_modules("mcp_memalpha") if name.split(".")[0] in ("policy", "training")}


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
    """mcp_memalpha names `training` in one place: cli.py's forwarder, by module name at call time."""
    naming = [
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "mcp_memalpha").rglob("*.py")
        if '"training.cli"' in path.read_text() or "import training" in path.read_text()
    ]
    assert naming == ["mcp_memalpha/cli.py"]


def test_training_imports_no_heavy_framework_at_module_import() -> None:
    """torch / transformers / trl load only inside the functions that train (the `train` extra)."""
    modules = sorted(f"training.{p.stem}" for p in (ROOT / "training").glob("*.py") if p.stem != "__init__")
    code = (
        f"import sys, importlib; [importlib.import_module(m) for m in {modules!r}]; "
        "print([m for m in ('torch', 'transformers', 'trl', 'llama_cpp') if m in sys.modules])"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"


def test_training_depends_on_policy_and_the_tools_not_the_server() -> None:
    ours = {name.split(".")[0] + "." + name.split(".")[1] for name in imported_modules("training") if name.count(".")}
    assert "mcp_memalpha.server" not in ours
    assert {"mcp_memalpha.tools", "policy.formats", "policy.curator"} <= ours
