"""What every observing-mode adapter shares: the arrays handed to the core, the
orientation bookkeeping, the oversampled pixel map, and the WCS update.

Pixel convention: 0-based pixel centres at integers, as in jwst and gwcs. The
oversampled row ``j`` of an image oversampled ``N`` times along the slice sits at the
native coordinate ``j / N - (N - 1) / (2 N)`` (`atm_step.core.grid`), so the WCS of an
oversampled image is the native WCS preceded by that map on the spatial axis, in a
leading frame named ``coordinates`` (the name jwst 3.0's ``cube_build``,
``pixel_replace`` and ``resample_spec`` look for).
"""

import logging
import warnings
from dataclasses import dataclass

import gwcs
import numpy as np
from astropy.modeling.models import Identity, Scale, Shift

from atm_step.core import grid
from atm_step.core.stats import region_ids

__all__ = [
    "CoreInputs",
    "ModeAdapter",
    "UnsupportedModelError",
    "oversample_map",
    "increasing_alpha",
    "map_bbox",
]

log = logging.getLogger(__name__)

#: Variance arrays carried through the oversampling, in datamodel attribute names.
VARIANCE_NAMES = ("var_poisson", "var_rnoise", "var_flat")


class UnsupportedModelError(ValueError):
    """The datamodel is not one ATM can process (wrong type, no WCS, TSO with N > 1)."""


@dataclass
class CoreInputs:
    """
    Arrays and settings for `atm_step.core.adaptive_trace_model`, in the core's frame.

    All images are in the core orientation: dispersion along x (axis 1), the
    oversampled (along-slice) axis along y (axis 0).

    Attributes
    ----------
    flux, err : ndarray, shape (ny, nx)
        Calibrated flux and its 1-sigma error (datamodel units).
    variances : dict of str to ndarray, shape (ny, nx)
        Variance arrays present in the model, under their attribute names.
    alpha : ndarray, shape (ny, nx)
        Along-slice coordinate (arcsec or slit units), increasing with row inside
        each region; NaN outside regions.
    regions : ndarray of int32, shape (ny, nx)
        Region map, 0 outside.
    alpha_os : ndarray, shape (ceil(ny N), nx) or None
        Along-slice coordinate at the oversampled pixels, from the WCS.
    channel_groups : list of list of int or None
        Region ids whose statistics are pooled (MIRI MRS channels).
    parameters : FitParameters
        Mode preset of the spline fit.
    pad : int
        Compact-source band padding (native pixels).
    """

    flux: np.ndarray
    err: np.ndarray | None
    variances: dict
    alpha: np.ndarray
    regions: np.ndarray
    alpha_os: np.ndarray | None
    channel_groups: list | None
    parameters: object
    pad: int


def oversample_map(oversample, axis):
    """
    Transform from oversampled pixel coordinates ``(x, y)`` to native ones.

    Parameters
    ----------
    oversample : float
        Oversampling factor ``N``.
    axis : {0, 1}
        Detector axis that was oversampled in ``(x, y)`` order: 1 for y (NIRSpec),
        0 for x (MIRI MRS).

    Returns
    -------
    astropy.modeling.Model
        Two inputs, two outputs, invertible, named ``coord2det``.
    """
    n = float(oversample)
    spatial = Scale(1.0 / n) | Shift(-(n - 1.0) / (2.0 * n))
    mapping = (Identity(1) & spatial) if axis == 1 else (spatial & Identity(1))
    mapping.name = "coord2det"
    mapping.inputs = ("x", "y")
    mapping.outputs = ("x", "y")
    return mapping


def increasing_alpha(alpha, regions, alpha_os=None, near=None):
    """
    Flip the sign of ``alpha`` in regions where it decreases with row index.

    The core expects the along-slice coordinate to increase with row index in every
    region; MIRI MRS channels 3 and 4, for instance, run in opposite senses on one
    detector. The spline fit is insensitive to the sign of its abscissa, so a flip
    changes nothing but the direction. A region is flipped when the median of its
    row-to-row steps of ``alpha`` (between rows of the same region) is negative.

    Parameters
    ----------
    alpha : ndarray, shape (ny, nx)
        Along-slice coordinate (core orientation); a copy is returned.
    regions : ndarray of int, shape (ny, nx)
        Region map (core orientation); values <= 0 are not regions.
    alpha_os : ndarray, shape (ny_os, nx), optional
        Oversampled coordinate, flipped in the same regions.
    near : ndarray of int, shape (ny_os,), optional
        Native row of each oversampled row (`atm_step.core.grid.nearest_native_row`);
        needed with ``alpha_os``: oversampled pixels take their native pixel's region.

    Returns
    -------
    alpha, alpha_os : ndarray
        Copies with the sign fixed (``alpha_os`` None if not given).
    """
    alpha = np.array(alpha, dtype=np.float64)
    alpha_os = None if alpha_os is None else np.array(alpha_os, dtype=np.float64)
    regions = np.asarray(regions)
    ids = region_ids(regions)
    if ids.size == 0:
        return alpha, alpha_os
    with np.errstate(invalid="ignore"):
        dy = np.diff(alpha, axis=0)
    pair = (regions[1:] == regions[:-1]) & (regions[1:] > 0) & np.isfinite(dy)
    steps = dy[pair]
    # table index of each step's region: 0..len(ids)-1
    index = np.searchsorted(ids, regions[1:][pair])
    count = np.bincount(index, minlength=ids.size)
    negative = np.bincount(index, weights=steps < 0, minlength=ids.size)
    # median < 0 exactly when more than half the steps are negative, except for an
    # even count split half and half, where the two middle values decide
    flip = 2 * negative > count
    for k in np.flatnonzero((count > 0) & (2 * negative == count)):
        flip[k] = np.median(steps[index == k]) < 0
    if not flip.any():
        return alpha, alpha_os
    in_flipped = np.isin(regions, ids[flip])
    alpha[in_flipped] *= -1.0
    if alpha_os is not None:
        alpha_os[in_flipped[near, :]] *= -1.0
    return alpha, alpha_os


class ModeAdapter:
    """
    Base of the per-mode adapters: datamodel <-> core arrays.

    Subclasses set :attr:`mode` and :attr:`transposed` and implement
    :meth:`native_alpha`, :meth:`region_map`, :meth:`world_at` and
    :meth:`parameters`.

    Parameters
    ----------
    model : IFUImageModel or SlitModel or SlitDataModel node
        The model (or one slit of a MultiSlitModel) holding the arrays; updated in
        place by :func:`atm_step.modes.writeback.apply_result`.
    meta_model : JwstDataModel, optional
        The model holding the exposure metadata, when ``model`` is one slit.
    """

    #: Mode name used in logs ("NRS_IFU", "MIR_MRS", "NRS_FIXEDSLIT", "NRS_MSASPEC").
    mode = "UNKNOWN"
    #: True when the instrument disperses along detector y (the core wants x).
    transposed = False
    #: Compact-source band padding in native pixels (jwst: 2 NIRSpec IFU, 1 slits, 3 MIRI).
    pad = 2
    #: True when :meth:`world_at` at native pixel centres returns exactly
    #: :meth:`native_alpha` (same transform, same NaNs), so that for an odd integer N
    #: the native alpha can be read off the oversampled evaluation.
    world_alpha_is_native = False

    def __init__(self, model, meta_model=None):
        self.model = model
        self.meta = (meta_model if meta_model is not None else model).meta
        self.wcs = model.meta.wcs
        slit = getattr(model, "name", None)
        self.name = slit or self.meta.filename
        #: the file, and the slit if the model is one: for messages
        self.where = str(self.meta.filename) + (f" (slit {slit})" if slit else "")

    def data_unit(self):
        """
        Unit of this image's SCI array (``BUNIT``), or None if none is recorded.

        A slit of a MultiSlitModel carries its own unit: jwst's ``photom`` sets it per
        slit (MJy/sr for extended sources, MJy for point sources) and leaves the
        MultiSlitModel's top-level unit unset. The slit's unit is used; the containing
        model's only when the slit has none.
        """
        for meta in (self.model.meta, self.meta):
            try:
                unit = meta.bunit_data
            except AttributeError:  # not in the schema of this node
                unit = None
            if unit:
                return str(unit)
        return None

    # --- orientation -----------------------------------------------------
    def to_core(self, arr):
        """Detector-oriented image -> core orientation (a view)."""
        return None if arr is None else (np.asarray(arr).T if self.transposed else np.asarray(arr))

    def from_core(self, arr, contiguous=True):
        """Core-oriented image -> detector orientation: a contiguous copy, or with
        ``contiguous=False`` a view (transposed where the modes' axes differ)."""
        if arr is None:
            return None
        out = arr.T if self.transposed else arr
        return np.ascontiguousarray(out) if contiguous else out

    def nearest_native(self, arr, near):
        """
        A native detector-oriented image repeated onto the oversampled grid.

        Parameters
        ----------
        arr : array_like, shape (ny, nx)
            Native image, detector orientation (not modified).
        near : ndarray of int, shape (n_os,)
            Native index of each oversampled row of the core orientation
            (`atm_step.core.grid.nearest_native_row`).

        Returns
        -------
        ndarray
            New contiguous array in detector orientation, oversampled along the
            oversampled axis; equal to ``from_core(to_core(arr)[near, :])`` without
            the transposed copy.
        """
        return np.take(np.asarray(arr), near, axis=1 if self.transposed else 0)

    @property
    def native_shape(self):
        """Detector shape ``(ny, nx)`` of one image of the model."""
        return tuple(np.shape(self.model.data)[-2:])

    @property
    def oversample_axis(self):
        """Detector axis in ``(x, y)`` order that is oversampled (0: x, 1: y)."""
        return 0 if self.transposed else 1

    def oversampled_pixels(self, oversample):
        """
        Native detector coordinates of every oversampled pixel.

        Parameters
        ----------
        oversample : float
            Oversampling factor ``N``.

        Returns
        -------
        x, y : ndarray of float64, shape of the oversampled image (detector order)
            Coordinates in the native (pre-oversampling) pixel frame of the model:
            read-only broadcast views of one row and one column (no memory per pixel).
        """
        ny, nx = self.native_shape
        n_native = nx if self.transposed else ny
        along = grid.oversampled_rows(n_native, oversample)
        start = grid.native_aligned_start(n_native, oversample)
        if start is not None:
            # exactly on the native centres (the formula leaves ~1e-13 pixel there)
            along[start :: int(oversample)] = np.arange(n_native, dtype=np.float64)
        if self.transposed:
            rows, cols = np.arange(ny, dtype=np.float64), along
        else:
            rows, cols = along, np.arange(nx, dtype=np.float64)
        shape = (rows.size, cols.size)
        return np.broadcast_to(cols[None, :], shape), np.broadcast_to(rows[:, None], shape)

    # --- mode-specific hooks -----------------------------------------------
    def native_alpha(self):
        """Along-slice coordinate at native pixels, detector orientation, NaN outside."""
        raise NotImplementedError

    def region_map(self, alpha):
        """Integer region map, detector orientation."""
        raise NotImplementedError

    def world_at(self, x, y):
        """
        Along-slice coordinate and wavelength at native-frame pixel positions.

        Returns
        -------
        alpha, wavelength : ndarray
            ``alpha`` in the sense of :meth:`native_alpha`; wavelength in um; NaN
            outside the slices.
        """
        raise NotImplementedError

    def parameters(self):
        """The `FitParameters` preset of this mode."""
        raise NotImplementedError

    def output_regions(self):
        """
        Region map written (oversampled from the nearest native pixel) to the
        ``regions`` extension of an oversampled IFU model, detector orientation; None
        for models without one (slits).
        """
        return None

    def channel_groups(self, regions):
        """Groups of region ids whose statistics are pooled (default: all together)."""
        return None

    # --- shared plumbing ---------------------------------------------------
    def flux_and_err(self):
        """
        Flux and error images; the per-pixel median over integrations for a 3-D
        (TSO) model, as jwst does when only a trace model (N = 1) is requested.
        """
        data = np.asarray(self.model.data)
        err = getattr(self.model, "err", None)
        err = None if err is None else np.asarray(err)
        if data.ndim == 3:
            log.info("%s: %d integrations; fitting the median image", self.name, data.shape[0])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels
                data = np.nanmedian(data, axis=0)
                err = None if err is None else np.nanmedian(err, axis=0)
        return data, err

    def core_inputs(self, oversample):
        """
        Everything the core needs, in its orientation.

        Parameters
        ----------
        oversample : float
            Oversampling factor ``N >= 1``.

        Returns
        -------
        CoreInputs
        """
        data, err = self.flux_and_err()
        alpha_os = wave_os = None
        if oversample != 1:
            x_os, y_os = self.oversampled_pixels(oversample)
            alpha_os, wave_os = self.world_at(x_os, y_os)
            self._wave_os = wave_os
        alpha = self._native_from_oversampled(alpha_os, oversample)
        if alpha is None:
            alpha = self.native_alpha()
        regions = np.asarray(self.region_map(alpha), dtype=np.int32)
        variances = {}
        if np.ndim(self.model.data) == 2 and oversample != 1:
            for name in VARIANCE_NAMES:
                arr = getattr(self.model, name, None) if self.model.hasattr(name) else None
                if arr is not None and np.shape(arr) == np.shape(data):
                    variances[name] = self.to_core(arr)

        alpha_c = self.to_core(alpha)
        regions_c = self.to_core(regions)
        alpha_os_c = None
        if oversample != 1:
            near = grid.nearest_native_row(regions_c.shape[0], oversample)
            alpha_os_c = self.to_core(alpha_os)
            alpha_c, alpha_os_c = increasing_alpha(alpha_c, regions_c, alpha_os_c, near)
        else:
            alpha_c, _ = increasing_alpha(alpha_c, regions_c)
        return CoreInputs(
            flux=self.to_core(data),
            err=self.to_core(err) if err is not None and np.shape(err) == np.shape(data) else None,
            variances=variances,
            alpha=alpha_c,
            regions=regions_c,
            alpha_os=alpha_os_c,
            channel_groups=self.channel_groups(regions),
            parameters=self.parameters(),
            pad=self.pad,
        )

    def _native_from_oversampled(self, alpha_os, oversample):
        """
        Native ``alpha`` read off the oversampled one, where the grids share pixels.

        For an odd integer ``N`` every ``N``-th oversampled pixel sits exactly on a
        native pixel centre, where `world_at` evaluates the same transform as
        :meth:`native_alpha`; taking those pixels saves a second evaluation of the WCS.
        Returns None (evaluate anew) when the coordinates do not coincide exactly.
        """
        if alpha_os is None or not self.world_alpha_is_native:
            return None
        ny, nx = self.native_shape
        start = grid.native_aligned_start(nx if self.transposed else ny, oversample)
        if start is None:
            return None
        step = int(oversample)
        picked = alpha_os[:, start::step] if self.transposed else alpha_os[start::step, :]
        if picked.shape != (ny, nx):
            return None
        return np.ascontiguousarray(picked, dtype=np.float64)

    def oversampled_wavelength(self, oversample):
        """Wavelength (um) of every oversampled pixel, detector orientation."""
        wave = getattr(self, "_wave_os", None)
        if wave is None:
            x_os, y_os = self.oversampled_pixels(oversample)
            _, wave = self.world_at(x_os, y_os)
        return wave

    def update_wcs(self, oversample, target=None):
        """
        Put the oversampled-to-native pixel map in front of the model's WCS.

        If the WCS already starts with a ``coordinates`` frame (NIRSpec IFU
        coordinate-based WCS, or data oversampled before), the map is composed with
        that frame's transform; otherwise a ``coordinates`` frame is prepended. The
        bounding box is carried to the new input frame. The new WCS is assigned to
        ``target.meta.wcs`` (default: the adapter's model); the model's own WCS and
        its transforms are not modified.
        """
        map_pixels = oversample_map(oversample, self.oversample_axis)
        wcs = self.model.meta.wcs
        bbox = _bbox_tuples(wcs)
        if wcs.available_frames[0] == "coordinates":
            first = wcs.pipeline[0]
            composed = map_pixels | first.transform
            composed.name = first.transform.name or "coord2det"
            composed.inputs = first.transform.inputs
            composed.outputs = first.transform.outputs
            steps = [(first.frame, composed)] + [(s.frame, s.transform) for s in wcs.pipeline[1:]]
        else:
            frame = gwcs.coordinate_frames.Frame2D(name="coordinates", axes_order=(0, 1))
            steps = [(frame, map_pixels)] + [(s.frame, s.transform) for s in wcs.pipeline]
        new_wcs = gwcs.WCS(steps)
        if bbox is not None:
            new_wcs.bounding_box = map_bbox(bbox, map_pixels)
        self._update_extra_bboxes(new_wcs, map_pixels)
        (self.model if target is None else target).meta.wcs = new_wcs

    def _update_extra_bboxes(self, new_wcs, map_pixels):
        """Hook for mode-specific bounding boxes kept inside transforms."""


def _bbox_tuples(wcs):
    """Bounding box of a WCS as ``((xlo, xhi), (ylo, yhi))`` or None."""
    try:
        bbox = wcs.bounding_box
    except NotImplementedError:
        return None
    if bbox is None:
        return None
    if hasattr(bbox, "bounding_box"):
        return tuple(tuple(float(v) for v in iv) for iv in bbox.bounding_box(order="F"))
    return tuple(tuple(float(v) for v in iv) for iv in bbox)


def map_bbox(bbox, map_pixels):
    """Bounding box ``((xlo, xhi), (ylo, yhi))`` in native pixels -> oversampled pixels."""
    (x0, x1), (y0, y1) = bbox
    xs, ys = map_pixels.inverse(np.array([x0, x1]), np.array([y0, y1]))
    return ((float(xs[0]), float(xs[1])), (float(ys[0]), float(ys[1])))
