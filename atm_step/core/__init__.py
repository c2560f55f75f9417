"""The ATM core: arrays only (NumPy, SciPy, Numba, `astropy.stats`), no datamodels, no WCS.

Dispersion runs along x (axis 1) here; callers rotate. The one entry point is
:func:`adaptive_trace_model`; the modules below it follow the paper's sections:

- `atm_step.core.stats`: image statistics and the per-region fit threshold (II.1, II.3)
- `atm_step.core.bspline`: uniform cubic B-spline basis, banded least squares (II.3)
- `atm_step.core.trace_fit`: the per-column sliding-window robust spline fit (II.3)
- `atm_step.core.linear`: linear oversampling (II.2)
- `atm_step.core.combine`: residual model and combination (II.4, II.5)
- `atm_step.core.errors`: error oversampling and covariance inflation (IV)
- `atm_step.core.reference`: a slow, readable NumPy/SciPy reference of the per-column
  algorithm, which the tests hold the Numba kernels to
"""

from atm_step.core.api import ATMResult, adaptive_trace_model
from atm_step.core.parameters import FitParameters

__all__ = ["ATMResult", "FitParameters", "adaptive_trace_model"]
