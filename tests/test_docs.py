"""The documentation: the Sphinx site builds with warnings as errors; docstring Examples run."""

import doctest
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: Modules whose Examples sections are executed (the public surface of the core and its
#: neighbours; each module must hold at least one example).
DOCTEST_MODULES = [
    "atm_step.core.api",
    "atm_step.core.parameters",
    "atm_step.core.grid",
    "atm_step.params",
    "atm_step.batch.inputs",
    "atm_step.qa.plots",
]


@pytest.mark.parametrize("name", DOCTEST_MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
                             verbose=False)
    assert result.attempted > 0, f"{name} has no Examples"
    assert result.failed == 0


def test_sphinx_site_builds_without_warnings(tmp_path):
    import sphinx  # noqa: F401  (in the [test] extra: missing must fail)
    import numpydoc  # noqa: F401  (in the [test] extra: missing must fail)
    import myst_parser  # noqa: F401  (in the [test] extra: missing must fail)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(REPO / "docs"),
         str(tmp_path / "html")],
        capture_output=True, text=True, env=env, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    api = (tmp_path / "html" / "api" / "core.html").read_text()
    for name in ("adaptive_trace_model", "FitParameters", "oversampled_rows"):
        assert name in api
    for page in ("usage", "from_jwst", "batch", "modes", "algorithm", "validation", "performance"):
        assert (tmp_path / "html" / f"{page}.html").is_file()
