"""NIRSpec fixed-slit and MOS adapter: one slit (a SlitModel, or one slit of a
MultiSlitModel) is one image holding one region.

The along-slit coordinate is the ``slit_frame`` y coordinate of the slit's WCS
(dimensionless slit units), negated so that it increases with detector row as the
core expects; the region is every pixel inside the WCS bounding box with a finite
coordinate. Dispersion runs along detector x, so no rotation is needed.
"""

import logging

import numpy as np

from atm_step.core import FitParameters
from atm_step.modes.base import ModeAdapter

__all__ = ["NIRSpecSlitAdapter"]

log = logging.getLogger(__name__)


class NIRSpecSlitAdapter(ModeAdapter):
    """
    Adapter for NIRSpec FS and MOS slits (``NRS_FIXEDSLIT``, ``NRS_BRIGHTOBJ``,
    ``NRS_MSASPEC``, ...).

    Parameters
    ----------
    model : SlitModel or slit node of a MultiSlitModel
        The slit, with a ``detector -> slit_frame -> world`` WCS in ``meta.wcs``.
    meta_model : MultiSlitModel, optional
        The containing model, for detector, grating and units.
    """

    transposed = False
    pad = 1
    world_alpha_is_native = True

    def __init__(self, model, meta_model=None):
        super().__init__(model, meta_model)
        exp_type = str(self.meta.exposure.type).upper()
        self.mode = "NRS_MOS" if exp_type == "NRS_MSASPEC" else "NRS_SLIT"

    def _slit_coords(self, x, y):
        _, sy, lam = self.wcs.transform(self.wcs.available_frames[0], "slit_frame", x, y)
        return -np.asarray(sy, dtype=np.float64), np.asarray(lam, dtype=np.float64) * 1e6

    def native_alpha(self):
        ny, nx = self.native_shape
        y, x = np.mgrid[:ny, :nx].astype(np.float64)
        alpha, _ = self._slit_coords(x, y)
        return alpha

    def region_map(self, alpha):
        return np.isfinite(alpha).astype(np.int32)

    def world_at(self, x, y):
        return self._slit_coords(x, y)

    def parameters(self):
        return FitParameters.nirspec_slit(
            self.meta.instrument.detector, getattr(self.meta.instrument, "grating", None)
        )
