"""Experiment, not part of the package: the MIRI ch3/ch4 matrix
(`python -m atm_step.validation --only-miri-matrix`) with the NIRSpec IFU preset's two
additions, the offset column scale and the Wiener-weighted residual, switched on in the
MIRI MRS preset (which keeps them off until this is validated in the package).

Usage::

    python benchmarks/experiments/miri_preset_trial.py OUT_DIR

writes OUT_DIR/validation_miri.md (jwst's cubes come from the validation cache). The
run of 2026-11-30 at 9fa1f2d is kept beside this file as miri_preset_trial.md.
"""

import runpy
import sys
from dataclasses import replace

from atm_step.core import FitParameters

_preset = FitParameters.miri_mrs.__func__
FitParameters.miri_mrs = classmethod(
    lambda cls, detector="MIRIFULONG": replace(_preset(cls, detector), scale_offset=True, residual_shrinkage=1.0)
)

if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "miri_preset_trial"
    sys.argv = ["atm_step.validation", "--only-miri-matrix", "--out", out]
    runpy.run_module("atm_step.validation", run_name="__main__")
