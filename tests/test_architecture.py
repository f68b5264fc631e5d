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
