"""The package as users get it: from a fresh checkout, `pipx install .` and `uvx --from .` each
serve a real MCP client; the wheel holds exactly the package (code, the embedding model, data);
and every import name lives under `mcp_memalpha` (policy/ and training/ install as
mcp_memalpha.policy and mcp_memalpha.training, also in the editable install the tests run in).

uv and pipx come from the package index into a throwaway venv, and the project's base install
(no extras: no llama.cpp build) into their own throwaway environments."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from mcp_memalpha import __version__
from tests.conftest import call, server_env

ROOT = Path(__file__).resolve().parents[1]
VERSION = __version__  # pyproject's version is read from it (dynamic)
# Each repository folder of code and where it lies in the installed package (pyproject's package-dir).
FOLDERS = {"mcp_memalpha": "mcp_memalpha", "policy": "mcp_memalpha.policy", "training": "mcp_memalpha.training"}


def tracked(pattern: str = "") -> list[str]:
    """The files a fresh clone of this working tree holds (tracked, or new and not ignored)."""
    args = ["git", "ls-files", "-co", "--exclude-standard", *([pattern] if pattern else [])]
    listed = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=True).stdout.splitlines()
    return [name for name in listed if (ROOT / name).is_file()]  # a deleted, not yet staged file is listed


def fresh_checkout(dest: Path) -> Path:
    """A copy of what `git clone` of this working tree gives, uncommitted edits included."""
    for name in tracked():
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        (dest / name).write_bytes((ROOT / name).read_bytes())
    return dest


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def tools(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway venv with uv, pipx and build from the package index; its bin folder."""
    home = tmp_path_factory.mktemp("tools")
    venv.create(home, with_pip=True)
    done = subprocess.run(
        [home / "bin" / "python", "-m", "pip", "install", "-q", "uv", "pipx", "build"], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"uv, pipx and build are not installable from the package index here: {done.stderr[-500:]}")
    return home / "bin"


async def serves_a_client(params: StdioServerParameters, data_dir: Path) -> None:
    """A real MCP client: insert, then a search (which loads the embedding model from the package)."""
    async with Client(params, read_timeout_seconds=120) as client:
        inserted = await call(
            client, "new_memory_insert", memory_type="semantic", content="Maya rings terns on Fair Isle"
        )
        found = await call(client, "search_memory", query="terns", top_k=1)
    assert found["results"][0]["memory_id"] == inserted["memory_id"]
    assert (data_dir / "memory.db").exists()


def stray_names(path: Path) -> list[str]:
    """Top-level `policy` / `training` names in a file: imports, and by-name references to one of
    their modules (`importlib.import_module("...")`, a logger's or a patch target's name)."""
    modules = {f"{folder}.{p.stem}" for folder in ("policy", "training") for p in (ROOT / folder).glob("*.py")}
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append(node.module)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in modules:
            found.append(node.value)
    return [name for name in found if name.split(".")[0] in ("policy", "training")]


def test_the_project_imports_only_its_namespaced_packages() -> None:
    """No code, test, benchmark or script names a top-level `policy` or `training` module."""
    assert {name: stray for name in tracked("*.py") if (stray := stray_names(ROOT / name))} == {}


def test_the_editable_install_maps_the_folders_also_from_the_repository_root(tmp_path: Path) -> None:
    """From the repository root `./mcp_memalpha` (which has no policy/ inside) is the package, and
    mcp_memalpha.policy and .training still import, from policy/ and training/; elsewhere the
    bare names do not exist."""
    code = "import importlib, sys; print(*(importlib.import_module(n).__file__ for n in sys.argv[1:]), sep=chr(10))"
    for cwd in (ROOT, tmp_path):
        files = run(sys.executable, "-c", code, *FOLDERS.values(), cwd=cwd).splitlines()
        assert files == [str(ROOT / folder / "__init__.py") for folder in FOLDERS]
    for bare in ("policy", "training"):
        done = subprocess.run([sys.executable, "-c", f"import {bare}"], cwd=tmp_path, capture_output=True, text=True)
        assert f"No module named '{bare}'" in done.stderr


def expected_wheel_files() -> set[str]:
    """Every module of the three folders where pyproject maps it, the embedding model and other
    assets, the package's data, and the policy's adapters folder when there is one; nothing else
    (no tests, benchmarks, scripts, training configs or runs)."""
    files = set()
    for folder, package in FOLDERS.items():
        files |= {package.replace(".", "/") + name.removeprefix(folder) for name in tracked(f"{folder}/*.py")}
    files |= set(tracked("mcp_memalpha/assets/*")) | set(tracked("mcp_memalpha/data/*.json"))
    files |= {"mcp_memalpha/policy/" + name.removeprefix("policy/") for name in tracked("policy/adapters/*.gguf")}
    return files


def wheel_files(wheel: Path) -> set[str]:
    """The wheel's files but its metadata; the metadata checked: version, console script."""
    assert wheel.name == f"mcp_memalpha-{VERSION}-py3-none-any.whl"
    info = f"mcp_memalpha-{VERSION}.dist-info/"
    with zipfile.ZipFile(wheel) as archive:
        assert "mcp-memalpha = mcp_memalpha.cli:main" in archive.read(info + "entry_points.txt").decode()
        return {name for name in archive.namelist() if not name.startswith(info)}


def test_the_wheel_holds_the_package_and_nothing_else(tmp_path: Path) -> None:
    checkout = fresh_checkout(tmp_path / "checkout")
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp_path / "dist", checkout, cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    assert wheel_files(wheel) == expected_wheel_files()
    assert "mcp_memalpha/assets/minilm-static/model.safetensors" in wheel_files(wheel)  # the embedding model


def test_the_wheel_built_from_the_sdist_is_the_same(tools: Path, tmp_path: Path) -> None:
    """`python -m build`, the way to a package index: the sdist, then the wheel built from it."""
    checkout = fresh_checkout(tmp_path / "checkout")
    run(tools / "python", "-m", "build", "-o", tmp_path / "dist", checkout, cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    assert wheel_files(wheel) == expected_wheel_files()


@pytest.mark.anyio
async def test_pipx_install_of_a_fresh_checkout_serves_a_client(tools: Path, tmp_path: Path) -> None:
    checkout = fresh_checkout(tmp_path / "checkout")
    home = tmp_path / "pipx"
    env = {**os.environ, "PIPX_HOME": str(home), "PIPX_BIN_DIR": str(home / "bin"), "PIPX_MAN_DIR": str(home / "man")}
    run(tools / "pipx", "install", checkout, cwd=tmp_path, env=env)
    python = home / "venvs" / "mcp-memalpha" / "bin" / "python"
    for bare in ("policy", "training"):  # the installed environment has no top-level names of ours
        done = subprocess.run([python, "-c", f"import {bare}"], cwd=tmp_path, capture_output=True, text=True)
        assert f"No module named '{bare}'" in done.stderr
    run(python, "-c", "import mcp_memalpha.policy, mcp_memalpha.training.cli", cwd=tmp_path)
    script = home / "bin" / "mcp-memalpha"
    assert run(script, "--version", cwd=tmp_path).strip() == f"mcp-memalpha, version {VERSION}"
    data = tmp_path / "data"
    await serves_a_client(
        StdioServerParameters(command=str(script), args=["serve", "--data-dir", str(data)], env=server_env()), data
    )


@pytest.mark.anyio
async def test_uvx_from_a_fresh_checkout_serves_a_client(tools: Path, tmp_path: Path) -> None:
    checkout = fresh_checkout(tmp_path / "checkout")
    uvx = str(tools / "uvx")
    # The first run builds the environment (into uv's cache); the client's launch then starts at once.
    version = run(uvx, "--from", checkout, "mcp-memalpha", "--version", cwd=tmp_path, env=server_env())
    assert version.strip().splitlines()[-1] == f"mcp-memalpha, version {VERSION}"
    data = tmp_path / "data"
    args = ["--from", str(checkout), "mcp-memalpha", "serve", "--data-dir", str(data)]
    await serves_a_client(StdioServerParameters(command=uvx, args=args, env=server_env()), data)
