"""MIRI LRS adapter: fixed slit (``MIR_LRS-FIXEDSLIT``) and slitless
(``MIR_LRS-SLITLESS``) SlitModels, as jwst >= 2.0 writes LRS cal files.

The LRS disperses along detector y and its slit (or, slitless, the trace) runs along
detector x, so, as for MIRI MRS, the adapter hands the core the transposed images and
oversamples detector x. The along-slit coordinate is ``alpha`` of the
``detector -> alpha_beta`` transform (arcsec). The one region is every pixel whose
centre lies inside the WCS bounding box in the sense of
`gwcs.wcstools.grid_from_bounding_box` (the pixel grid jwst 3.0's step evaluates),
which for the fixed slit is the slit's 44 x 388 pixel box of the full frame.

Wavelengths (um) come from the same transform and are blanked outside the bounding
box, as the full WCS blanks them.
"""

import logging

import numpy as np
from gwcs.wcstools import grid_from_bounding_box

from atm_step.core import FitParameters
from atm_step.modes.base import ModeAdapter, UnsupportedModelError

__all__ = ["LRS_EXP_TYPES", "MIRILRSAdapter"]

log = logging.getLogger(__name__)

#: Exposure types the adapter handles, with the mode name used in logs.
LRS_EXP_TYPES = {"MIR_LRS-FIXEDSLIT": "MIR_LRS_SLIT", "MIR_LRS-SLITLESS": "MIR_LRS_SLITLESS"}


class MIRILRSAdapter(ModeAdapter):
    """
    Adapter for MIRI LRS SlitModels (fixed slit and slitless, 2-D or multi-integration).

    Parameters
    ----------
    model : SlitModel
        MIRI LRS model whose WCS has ``detector`` (or ``coordinates``), ``alpha_beta``
        and ``world`` frames and a bounding box.
    meta_model : JwstDataModel, optional
        Model holding the exposure metadata, if not ``model``.

    Raises
    ------
    UnsupportedModelError
        (a ValueError) If the exposure type is not an LRS one, or the WCS has no
        ``alpha_beta`` frame or no bounding box; the message names the file.
    """

    transposed = True
    pad = 3

    def __init__(self, model, meta_model=None):
        super().__init__(model, meta_model)
        exp_type = str(self.meta.exposure.type).upper()
        if exp_type not in LRS_EXP_TYPES:
            raise UnsupportedModelError(
                f"{self.where}: not a MIRI LRS exposure (EXP_TYPE={exp_type})"
            )
        self.mode = LRS_EXP_TYPES[exp_type]
        self.slitless = exp_type == "MIR_LRS-SLITLESS"
        frames = self.wcs.available_frames
        if "alpha_beta" not in frames:
            raise UnsupportedModelError(
                f"{self.where}: MIRI LRS WCS has no 'alpha_beta' frame (frames: {frames})"
            )
        if self.wcs.bounding_box is None:
            raise UnsupportedModelError(f"{self.where}: MIRI LRS WCS has no bounding box")
        self._det2ab = self.wcs.get_transform(frames[0], "alpha_beta")
        bbox = self.wcs.bounding_box
        if hasattr(bbox, "bounding_box"):
            bbox = bbox.bounding_box(order="F")
        self._bbox = tuple(tuple(float(v) for v in iv) for iv in bbox)

    def native_alpha(self):
        ny, nx = self.native_shape
        x, y = grid_from_bounding_box(self._bbox)
        ix, iy = x.astype(int), y.astype(int)
        inside = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
        alpha = np.full((ny, nx), np.nan)
        a, _, _ = self._det2ab(x[inside], y[inside])
        alpha[iy[inside], ix[inside]] = a
        return alpha

    def region_map(self, alpha):
        return np.isfinite(alpha).astype(np.int32)

    def world_at(self, x, y):
        alpha, _, wave = self._det2ab(x, y)
        wave = np.array(wave, dtype=np.float64)
        (x0, x1), (y0, y1) = self._bbox
        wave[(x < x0) | (x > x1) | (y < y0) | (y > y1)] = np.nan
        return np.asarray(alpha, dtype=np.float64), wave

    def parameters(self):
        return FitParameters.miri_lrs(slitless=self.slitless)
