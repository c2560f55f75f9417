"""NIRSpec IFU adapter (IFUImageModel, ``NRS_IFU``).

The 30 slices are the regions, numbered 1..30 as in the model's ``regions`` array
(written by jwst's ``assign_wcs``). The along-slice coordinate is the ``slicer``
frame y of each slice's WCS (`jwst.assign_wcs.nirspec.nrs_ifu_wcs`), negated so that
it increases with detector row; the wavelength of an oversampled pixel comes from
the same transform (metres, converted to um). Dispersion runs along detector x.

Both forms of NIRSpec IFU WCS that jwst 3.0 writes are accepted through
``nrs_ifu_wcs``: the coordinate-based one (``coordinates -> detector -> slicer ...``,
the default) and the slice-based one.
"""

import copy
import logging

import numpy as np
from astropy.modeling import bind_bounding_box
from gwcs import selector

from atm_step.core import FitParameters
from atm_step.modes.base import ModeAdapter, UnsupportedModelError, map_bbox

__all__ = ["NIRSpecIFUAdapter"]

log = logging.getLogger(__name__)

#: Number of NIRSpec IFU slices.
N_SLICES = 30


class NIRSpecIFUAdapter(ModeAdapter):
    """
    Adapter for NIRSpec IFU IFUImageModels.

    Parameters
    ----------
    model : IFUImageModel
        NIRSpec IFU model with an assigned WCS and a ``regions`` slice map.

    Raises
    ------
    UnsupportedModelError
        (a ValueError) If jwst's ``nrs_ifu_wcs`` cannot split the WCS into slices; the
        message names the file.
    """

    mode = "NRS_IFU"
    transposed = False
    pad = 2
    world_alpha_is_native = True

    def __init__(self, model, meta_model=None):
        from jwst.assign_wcs.nirspec import nrs_ifu_wcs

        super().__init__(model, meta_model)
        try:
            self.slice_wcs = nrs_ifu_wcs(model)
        except Exception as exc:  # jwst and gwcs raise many types here
            raise UnsupportedModelError(
                f"{self.where}: jwst cannot split this WCS into the {N_SLICES} NIRSpec IFU slices "
                f"(nrs_ifu_wcs: {type(exc).__name__}: {exc}); is it a NIRSpec IFU exposure "
                "after assign_wcs?"
            ) from exc

    def _slice_coords(self, slice_wcs, x, y):
        # the caller restricts (x, y) to the slice's bounding box
        to_slicer = slice_wcs.get_transform(slice_wcs.available_frames[0], "slicer")
        _, ys, lam = to_slicer(x, y)
        return -np.asarray(ys, dtype=np.float64), np.asarray(lam, dtype=np.float64) * 1e6

    def _evaluate(self, x, y):
        alpha = np.full(x.shape, np.nan)
        wave = np.full(x.shape, np.nan)
        # the callers pass pixel grids (x constant down columns, y along rows): each
        # slice's bounding box is then a block of rows and columns, and only that block
        # is searched (testing all 12 M pixels of an N = 3 image 30 times costs ~2 s)
        grid = x.ndim == 2 and bool((x == x[:1]).all() and (y == y[:, :1]).all())
        for slice_wcs in self.slice_wcs:
            bbox = slice_wcs.bounding_box
            if bbox is None:
                continue
            (x0, x1), (y0, y1) = bbox.bounding_box(order="F") if hasattr(
                bbox, "bounding_box"
            ) else bbox
            if grid:
                rows = np.flatnonzero((y[:, 0] >= y0) & (y[:, 0] <= y1))
                cols = np.flatnonzero((x[0] >= x0) & (x[0] <= x1))
                if rows.size == 0 or cols.size == 0:
                    continue
                block = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
            else:
                block = (Ellipsis,)
            xb, yb = x[block], y[block]
            inside = (xb >= x0) & (xb <= x1) & (yb >= y0) & (yb <= y1)
            if not inside.any():
                continue
            a, w = self._slice_coords(slice_wcs, xb[inside], yb[inside])
            alpha[block][inside] = a
            wave[block][inside] = w
        return alpha, wave

    def native_alpha(self):
        ny, nx = self.native_shape
        y, x = np.mgrid[:ny, :nx].astype(np.float64)
        alpha, _ = self._evaluate(x, y)
        return alpha

    def region_map(self, alpha):
        regions = getattr(self.model, "regions", None)
        if regions is None or np.shape(regions) != self.native_shape:
            raise UnsupportedModelError(
                f"{self.where}: NIRSpec IFU model has no slice map ('regions' extension) "
                f"matching the image shape {self.native_shape}; run assign_wcs first"
            )
        regions = np.asarray(regions, dtype=np.int32)
        return np.where(np.isfinite(alpha), regions, 0).astype(np.int32)

    def output_regions(self):
        return np.asarray(self.model.regions, dtype=np.int32)

    def world_at(self, x, y):
        return self._evaluate(x, y)

    def parameters(self):
        return FitParameters.nirspec_ifu(self.meta.instrument.detector)

    def _update_extra_bboxes(self, new_wcs, map_pixels):
        """
        Carry the per-slice bounding boxes held by the ``detector -> slicer`` selector
        (read by `nrs_wcs_set_input`) to the oversampled pixel frame, as jwst does.

        A new selector is built; the input model's transforms are not modified.
        """
        if len(new_wcs.pipeline) < 2:
            return
        old = new_wcs.pipeline[1].transform
        if not isinstance(old, selector.RegionsSelector):
            return
        transforms = {}
        for key, transform in old.selector.items():
            transform = copy.deepcopy(transform)
            try:
                bbox = transform.bounding_box.bounding_box(order="F")
            except NotImplementedError:
                transforms[key] = transform
                continue
            bind_bounding_box(transform, map_bbox(bbox, map_pixels), order="F")
            transforms[key] = transform
        new = selector.RegionsSelector(
            old.inputs,
            old.outputs,
            label_mapper=old.label_mapper,
            selector=transforms,
            undefined_transform_value=old.undefined_transform_value,
            name=old.name,
        )
        new.inputs = old.inputs
        new.outputs = old.outputs
        new_wcs.pipeline[1].transform = new
