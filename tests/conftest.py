"""Shared fixtures: offline environment, the shared data folder, a local CRDS answer."""

import os
from pathlib import Path

import pytest

# Offline, single-threaded, and inherited by `strun` subprocesses started by tests.
os.environ["STPIPE_DISABLE_CRDS_STEPPARS"] = "True"
os.environ.setdefault("NUMBA_NUM_THREADS", "1")
os.environ.setdefault("CRDS_SERVER_URL", "https://jwst-crds.invalid")

REPO_ROOT = Path(__file__).resolve().parents[1]

#: Files the tests read, relative to the data folder.
MOS_FILES = [
    f"nirspec_mos/jw01345062001_03101_0000{i}_nrs2_phot.138.1345_933.fits" for i in (1, 2, 3)
]


def _missing(message):
    """Skip a test whose data are missing; fail it in CI (``ATM_STEP_REQUIRE_DATA``),
    where the shared data folder is mandatory."""
    if os.environ.get("ATM_STEP_REQUIRE_DATA"):
        pytest.fail(f"{message} (required: ATM_STEP_REQUIRE_DATA is set)")
    pytest.skip(message)


def _data_dir():
    return Path(os.environ.get("ATM_STEP_TEST_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir():
    """
    The shared test-data folder: ``$ATM_STEP_TEST_DATA`` or ``<repo>/../shared/data``.

    Tests using it are skipped, with a message naming what is missing, when the folder
    is absent (CI sets the variable and treats the folder as mandatory).
    """
    path = _data_dir()
    if not path.is_dir():
        _missing(
            f"test data folder {path} is missing (set ATM_STEP_TEST_DATA to the folder "
            "holding miri_mrs/ and nirspec_mos/)"
        )
    return path


def _require(data_dir, relpaths):
    missing = [p for p in relpaths if not (data_dir / p).is_file()]
    if missing:
        _missing(f"test data missing in {data_dir}: {', '.join(missing)}")
    return [data_dir / p for p in relpaths]


@pytest.fixture(scope="session")
def mos_files(data_dir):
    """The three NIRSpec MOS cutouts (SlitModel cal files)."""
    return _require(data_dir, MOS_FILES)


@pytest.fixture(scope="session")
def miri_data(data_dir):
    """The ``miri_mrs`` folder, checked for the five files the MIRI builder reads."""
    from helpers import MIRI_MRS_FILES

    _require(data_dir, [f"miri_mrs/{name}" for name in MIRI_MRS_FILES.values()])
    return data_dir


@pytest.fixture(autouse=True)
def local_crds_context(monkeypatch):
    """
    Answer stpipe's ``crds_client.get_context_used`` locally.

    jwst's ``finalize_result`` asks CRDS which context was used whenever a step used a
    reference file (e.g. cube_build with ``override_cubepar``); with no CRDS cache that
    would end the process.
    """
    from stpipe import crds_client

    monkeypatch.setattr(crds_client, "get_context_used", lambda observatory: "jwst_0000.pmap")
    monkeypatch.setattr(crds_client, "get_svn_version", lambda: "local", raising=False)
    return "jwst_0000.pmap"
