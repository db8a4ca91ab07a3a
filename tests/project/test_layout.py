"""The package's layout as the README describes it: its groups exist, its layers hold, no private names cross
modules, and modules stay small unless the README says why."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "src" / "higgs_worker"
README = (REPO / "README.md").read_text("utf-8")
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def layout_block() -> str:
    section = README.split("## Layout", 1)[1]
    return section.split("```text", 1)[1].split("```", 1)[0]


def named_entries() -> set[str]:
    return {m.group(1) for m in re.finditer(r"[├└]── (\S+)", layout_block())}


def test_the_readme_layout_names_exactly_the_package_top():
    on_disk = {p.name + ("/" if p.is_dir() else "") for p in PACKAGE.iterdir()
               if p.name != "__init__.py" and p.name != "__pycache__" and not p.name.endswith(".egg-info")}
    assert named_entries() == on_disk
    assert len(on_disk) <= 12  # about ten entries at the top: the tree itself says where things live


def test_every_group_says_what_it_holds_and_may_import():
    for group in sorted(p for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"):
        if group.name == "http":
            continue  # an entry point: it may import everything below it
        doc = ast.get_docstring(ast.parse((group / "__init__.py").read_text("utf-8"))) or ""
        assert doc, f"{group.name}/__init__.py has no docstring"
        assert "May import" in doc, f"{group.name}/__init__.py does not say what it may import"


def test_tests_mirror_the_package():
    groups = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    test_dirs = {p.name for p in (REPO / "tests").iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert groups <= test_dirs, f"no test folder for {sorted(groups - test_dirs)}"
    assert not list((REPO / "tests").glob("test_*.py")), "test files belong in the folder of what they test"


def long_modules() -> dict[str, int]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        lines = len(path.read_text("utf-8").splitlines())
        if lines > 420:
            out[str(path.relative_to(PACKAGE))] = lines
    return out


def test_long_modules_are_the_ones_the_readme_explains():
    section = README.split("## Layout", 1)[1].split("\n## ", 1)[0]
    explained = set(re.findall(r"`([a-z_/]+\.py)` \(", section))
    assert set(long_modules()) <= explained, f"over ~400 lines without a reason in the README: {long_modules()}"


def private_imports(root: Path) -> list[str]:
    """``from X import _name`` across modules: each module keeps its private names to itself."""
    found = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module != "__future__":
                found += [f"{path.relative_to(root)}: {alias.name}" for alias in node.names
                          if alias.name.startswith("_") and not alias.name.startswith("__")]
    return found


def test_no_private_names_cross_modules():
    assert private_imports(PACKAGE) == []


def test_the_private_name_check_sees_one(tmp_path):
    (tmp_path / "a.py").write_text("from .b import _hidden\n")
    assert private_imports(tmp_path) == ["a.py: _hidden"]


def run_lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(cwd / "src")})


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    """A copy of the package and its contracts, to break on purpose."""
    root = tmp_path_factory.mktemp("layers")
    shutil.copytree(PACKAGE, root / "src" / "higgs_worker", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


def test_the_layers_hold(scratch):
    result = run_lint_imports(scratch)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "3 kept, 0 broken" in result.stdout


@pytest.mark.parametrize("module, line, broken", [
    ("core/text.py", "from ..speech import service as _upward", "Layers"),  # the bottom reaching up
    ("engine/prompt.py", "import fastapi as _web", "nothing knows HTTP"),  # the engine learning HTTP
    ("audio/decode.py", "from . import encode as _back", "No circles"),  # encode already imports decode
])
def test_an_upward_import_fails_the_contract(scratch, module, line, broken):
    path = scratch / "src" / "higgs_worker" / module
    original = path.read_text("utf-8")
    try:
        path.write_text(original + f"\n{line}\n", "utf-8")
        result = run_lint_imports(scratch)
    finally:
        path.write_text(original, "utf-8")
    assert result.returncode != 0
    assert re.search(rf"{re.escape(broken)}.* BROKEN", result.stdout.replace("\n", " ")), result.stdout[-3000:]


def test_every_module_is_named_in_its_groups_docstring():
    """A group's ``__init__`` says what each of its modules holds: a new module is listed there, or the test says
    which is missing."""
    missing = []
    for group in sorted(p for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"):
        doc = ast.get_docstring(ast.parse((group / "__init__.py").read_text("utf-8"))) or ""
        for module in sorted(group.glob("*.py")):
            if module.stem != "__init__" and f":mod:`.{module.stem}`" not in doc:
                missing.append(f"{group.name}/{module.name}")
    assert missing == []


def test_one_conftest_only():
    """Test modules import names from ``conftest`` (``from conftest import REPO``): a second conftest.py in a
    subfolder would shadow it for every test collected after it, on a fresh clone."""
    tests = Path(__file__).resolve().parents[1]
    assert sorted(p.relative_to(tests).as_posix() for p in tests.rglob("conftest.py")) == ["conftest.py"]
