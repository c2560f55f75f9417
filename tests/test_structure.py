"""Package structure: imports point downwards only, library code never reaches into tests/."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "atm_step"


def _imports(path):
    """Every module a file imports, at any depth (function-level imports included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _modules(folder):
    return sorted(p for p in folder.rglob("*.py"))


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [
        # QA draws; the measures it shares with the validation live below both
        ("qa", ("atm_step.validation",)),
        ("core", ("atm_step.modes", "atm_step.step", "atm_step.pipelines", "atm_step.batch",
                  "atm_step.qa", "atm_step.simulate", "atm_step.validation", "atm_step.testing",
                  "stdatamodels", "jwst")),
        ("modes", ("atm_step.step", "atm_step.batch", "atm_step.qa", "atm_step.simulate",
                   "atm_step.validation", "atm_step.testing")),
    ],
)
def test_imports_point_downwards(layer, forbidden):
    bad = [
        f"{path.relative_to(REPO)} imports {name}"
        for path in _modules(PACKAGE / layer)
        for name in _imports(path)
        if name.startswith(forbidden)
    ]
    assert not bad, bad


def test_qa_loads_without_the_validation_package():
    code = ("import sys, atm_step.qa.cli, atm_step.qa.plots; "
            "print(sorted(m for m in sys.modules if m.startswith('atm_step.validation')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


@pytest.mark.parametrize("folder", ["atm_step", "benchmarks"])
def test_library_and_benchmarks_do_not_import_the_tests(folder):
    bad = []
    for path in _modules(REPO / folder):
        text = path.read_text()
        if "sys.path.insert" in text or "sys.path.append" in text:
            bad.append(f"{path.relative_to(REPO)} edits sys.path")
        bad += [f"{path.relative_to(REPO)} imports {n}" for n in _imports(path)
                if n == "helpers" or n.startswith(("helpers.", "tests", "conftest"))]
    assert not bad, bad


def test_offline_crds_stand_in_lives_in_atm_step_testing():
    """The CRDS monkeypatch is a testing aid, not part of the validation module's code."""
    from atm_step import testing
    from atm_step.validation import miri

    assert miri.offline_crds is testing.offline_crds
    assert "crds_client" not in (PACKAGE / "validation" / "miri.py").read_text()
