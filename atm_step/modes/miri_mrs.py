"""MIRI MRS adapter (IFUImageModel, ``MIR_MRS``).

MIRI MRS disperses along detector y and slices run along detector x, so the adapter
hands the core the transposed images (dispersion along the core's x) and oversamples
detector x. The transpose (rather than a 90-degree rotation) keeps oversampled
column ``i`` at native ``x = i / N - (N - 1) / (2 N)`` for any ``N``, which is exactly
what the WCS pixel map says; for integer ``N`` both give the same pixels.

The along-slice coordinate is ``alpha`` of the ``detector -> alpha_beta`` transform
(arcsec); the region map is that transform's slice label map (e.g. 301..316 and
401..412 for channels 3+4). Statistics for the fit threshold are pooled per channel
(region id // 100), as the paper and jwst do: the sky is far brighter in channel 4.
"""

import logging

import numpy as np

from atm_step.core import FitParameters
from atm_step.core.stats import region_ids
from atm_step.modes.base import ModeAdapter, UnsupportedModelError

__all__ = ["MIRIMRSAdapter"]

log = logging.getLogger(__name__)


class MIRIMRSAdapter(ModeAdapter):
    """
    Adapter for MIRI MRS IFUImageModels.

    Parameters
    ----------
    model : IFUImageModel
        MIRI MRS model whose WCS has ``detector``, ``alpha_beta`` and ``world`` frames.

    Raises
    ------
    UnsupportedModelError
        (a ValueError) If the WCS lacks the ``detector`` or ``alpha_beta`` frame, or its
        ``detector -> alpha_beta`` transform has no slice map (``label_mapper``); the
        message names the file.
    """

    mode = "MIR_MRS"
    transposed = True
    pad = 3
    world_alpha_is_native = True

    def __init__(self, model, meta_model=None):
        super().__init__(model, meta_model)
        frames = self.wcs.available_frames
        if "alpha_beta" not in frames or "detector" not in frames:
            raise UnsupportedModelError(
                f"{self.where}: MIRI MRS WCS has no 'detector' or no 'alpha_beta' frame "
                f"(frames: {frames}); run assign_wcs first"
            )
        self._input_frame = frames[0]
        self._det2ab = self.wcs.get_transform(self._input_frame, "alpha_beta")
        try:
            self._slice_map = self.wcs.get_transform("detector", "alpha_beta").label_mapper
            self._slice_map.mapper  # noqa: B018 - the slice map itself
        except AttributeError:
            raise UnsupportedModelError(
                f"{self.where}: the MIRI MRS WCS's detector -> alpha_beta transform has no "
                "slice map (label_mapper), as jwst's assign_wcs writes it; run assign_wcs "
                "on this file"
            ) from None

    def _label_map(self):
        return np.asarray(self._slice_map.mapper)

    def native_alpha(self):
        ny, nx = self.native_shape
        y, x = np.mgrid[:ny, :nx].astype(np.float64)
        alpha, _, _ = self._det2ab(x, y)
        return np.asarray(alpha, dtype=np.float64)

    def region_map(self, alpha):
        regions = self._label_map().astype(np.int32)
        if regions.shape != self.native_shape:
            raise UnsupportedModelError(
                f"{self.where}: slice map shape {regions.shape} does not match the image "
                f"shape {self.native_shape}"
            )
        return regions

    def output_regions(self):
        return self._label_map().astype(np.int32)

    def wavelength_ranges(self):
        """
        Wavelength ranges (um) of the exposure's channels, as ``(n, 2)`` array.

        They are the ranges of the ``alpha_beta -> v2v3`` transform's label mapper
        (from the ``wavelengthrange`` reference file), which sets the wavelength to NaN
        outside them; None if that transform has no such mapper.
        """
        try:
            mapper = self.wcs.get_transform("alpha_beta", "v2v3").label_mapper.mapper
            ranges = np.array([tuple(map(float, key)) for key in mapper], dtype=np.float64)
        except (AttributeError, TypeError, ValueError):
            return None
        return ranges if ranges.ndim == 2 and ranges.shape[1] == 2 else None

    def world_at(self, x, y):
        # detector -> alpha_beta gives alpha and the wavelength. The full WCS also
        # blanks wavelengths outside the channels' ranges (alpha_beta -> v2v3, whose
        # label mapper keeps lo < lambda < hi); that test is applied here directly, as
        # evaluating the transform to v2v3 costs as much as the one to alpha_beta.
        # The rest of the pipeline (to the sky) is not needed, and is not evaluated.
        alpha, beta, wave = self._det2ab(x, y)
        wave = np.array(wave, dtype=np.float64)
        ranges = self.wavelength_ranges()
        if ranges is None:
            _, _, wave = self.wcs.get_transform("alpha_beta", "v2v3")(alpha, beta, wave)
            wave = np.array(wave, dtype=np.float64)
        else:
            keep = np.zeros(wave.shape, dtype=bool)
            with np.errstate(invalid="ignore"):
                for lo, hi in ranges:
                    keep |= (wave > lo) & (wave < hi)
            wave[~keep] = np.nan
        bbox = self.wcs.bounding_box
        if bbox is not None:
            (x0, x1), (y0, y1) = (tuple(b) for b in bbox.bounding_box(order="F"))
            wave[(x < x0) | (x > x1) | (y < y0) | (y > y1)] = np.nan
        return np.asarray(alpha, dtype=np.float64), wave

    def parameters(self):
        return FitParameters.miri_mrs(self.meta.instrument.detector)

    def channel_groups(self, regions):
        ids = region_ids(regions)
        groups = {}
        for rid in ids:
            groups.setdefault(int(rid) // 100, []).append(int(rid))
        return [groups[k] for k in sorted(groups)]
