"""atm-step: fast Adaptive Trace Modeling for JWST NIRSpec and MIRI spectra.

Layers, imports pointing downwards only:

- `atm_step.core`: the algorithm on plain arrays (NumPy + Numba).
- `atm_step.modes`: one adapter per observing mode, datamodel <-> arrays.
- `atm_step.step`, `atm_step.pipelines`: the stpipe Step and pipeline subclasses.
- beside them: `atm_step.simulate` (scenes with known truth), `atm_step.qa` (plots),
  `atm_step.batch` (many exposures on Dask).

``import atm_step`` stays light: the Step (which imports jwst) loads on first use.
"""

__version__ = "0.1.0"

__all__ = ["AdaptiveTraceModelStep", "__version__"]


def __getattr__(name):
    if name == "AdaptiveTraceModelStep":
        from atm_step.step import AdaptiveTraceModelStep

        return AdaptiveTraceModelStep
    raise AttributeError(f"module 'atm_step' has no attribute {name!r}")
