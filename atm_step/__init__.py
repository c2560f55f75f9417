"""atm-step: fast Adaptive Trace Modeling for JWST NIRSpec and MIRI spectra.

Layers, imports pointing downwards only:

- `atm_step.core`: the algorithm on plain arrays (NumPy, SciPy, Numba).
- `atm_step.modes`: one adapter per observing mode, datamodel <-> arrays.
- `atm_step.step`, `atm_step.pipelines`: the stpipe Step and pipeline subclasses.
- on top of them: `atm_step.simulate` (scenes with known truth), `atm_step.qa` (plots),
  `atm_step.batch` (many exposures on Dask), `atm_step.validation` (the accuracy
  report), `atm_step.example` and `atm_step.cli` (the ``atm-step`` command).

``import atm_step`` stays light: the Step (which imports jwst) loads on first use.
"""

__version__ = "0.1.0"

__all__ = ["AdaptiveTraceModelStep", "__version__"]


def __getattr__(name):
    if name == "AdaptiveTraceModelStep":
        from atm_step.step import AdaptiveTraceModelStep

        return AdaptiveTraceModelStep
    raise AttributeError(f"module 'atm_step' has no attribute {name!r}")
