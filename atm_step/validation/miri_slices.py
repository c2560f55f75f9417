"""MIRI MRS slice maps derived from the flight geometry, for bands without a real map.

The flight ``regions`` reference files (which pixel belongs to which slice) are not
available offline; only the ground-test map of channels 3+4 LONG is
(``/work/shared/data/README.md``). The distortion reference file of every band holds,
per slice, the transform from ``(wavelength, alpha)`` to detector ``(x, y)``. From it:

1. the slice's centre line on the detector, ``x_c(y)``: the detector position of
   ``alpha = 0`` at every wavelength, interpolated to every row;
2. the local pitch ``P(y)``: the distance between the centre lines of the slices next
   to it on the detector (one channel's slices are laid side by side);
3. the slice's footprint: the pixels whose centres lie within
   ``x_c + offset * P +- fill * P / 2``.

``fill`` (the illuminated fraction of the pitch; the rest is the dark gap between
slices) and ``offset`` (the footprint's centre relative to ``alpha = 0``, as a
fraction of the pitch) are the two numbers not given by the distortion files. They
are measured on the ground 34 LONG map (:func:`measure_shape`: fill 0.866 in channel
3, 0.878 in channel 4; offset -0.018 and -0.022) and :data:`DEFAULT_SHAPE` uses their
means for every band. :func:`compare_maps` states the agreement with a real map;
``tests/test_miri_slices.py`` checks it on 34 LONG with each channel's shape measured
on the *other* channel.
"""

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from atm_step.atomic import atomic_save

__all__ = [
    "SliceShape",
    "DEFAULT_SHAPE",
    "slice_centre_lines",
    "derive_slice_map",
    "measure_shape",
    "compare_maps",
    "write_regions_file",
]

log = logging.getLogger(__name__)

#: Detector shape of the MIRI MRS detectors (rows, columns).
DETECTOR_SHAPE = (1024, 1032)


@dataclass(frozen=True)
class SliceShape:
    """
    Footprint of a slice relative to its centre line, in units of the local pitch.

    Attributes
    ----------
    fill : float
        Width of the footprint over the pitch (1: slices touch, no gap).
    offset : float
        Footprint centre minus the ``alpha = 0`` centre line, over the pitch (positive:
        towards larger detector x).
    """

    fill: float
    offset: float


#: Means of the two channels of the ground 34 LONG map (see the module docstring).
DEFAULT_SHAPE = SliceShape(fill=0.872, offset=-0.020)


def _read_distortion(path):
    import asdf

    with asdf.open(str(path), lazy_load=False, memmap=False) as af:
        slices = [int(s) for s in af.tree["slices"]]
        x_model, y_model = list(af.tree["x_model"]), list(af.tree["y_model"])
    return slices, x_model, y_model


def slice_centre_lines(distortion, wave_range, shape=DETECTOR_SHAPE, n_wave=400):
    """
    Detector x of ``alpha = 0`` at every row, for every slice of a distortion file.

    Parameters
    ----------
    distortion : str or Path
        MIRI MRS ``distortion`` reference file (per-slice ``x_model``, ``y_model``:
        ``(wavelength, alpha) -> detector x, y``).
    wave_range : dict of int to tuple of float
        Wavelength range (um) per channel number, wide enough to cover the detector
        rows (e.g. the band's ``wavelengthrange`` entries, widened by 10%).
    shape : tuple of int
        Detector shape ``(ny, nx)``.
    n_wave : int
        Wavelength samples per slice.

    Returns
    -------
    dict of int to ndarray, shape (ny,)
        Slice id -> centre-line x (0-based pixels) at rows ``0 .. ny - 1``
        (linearly extrapolated beyond the sampled rows).
    """
    slices, x_model, y_model = _read_distortion(distortion)
    rows = np.arange(shape[0], dtype=np.float64)
    lines = {}
    for sid, xm, ym in zip(slices, x_model, y_model, strict=True):
        lo, hi = wave_range[sid // 100]
        lam = np.linspace(lo, hi, n_wave)
        zero = np.zeros_like(lam)
        xc, yc = np.asarray(xm(lam, zero)), np.asarray(ym(lam, zero))
        order = np.argsort(yc)
        xc, yc = xc[order], yc[order]
        line = np.interp(rows, yc, xc)
        # beyond the sampled rows: continue the end slopes
        for end, sel in ((0, rows < yc[0]), (-1, rows > yc[-1])):
            if sel.any():
                k = slice(0, 2) if end == 0 else slice(-2, None)
                slope = np.diff(xc[k])[0] / np.diff(yc[k])[0]
                line[sel] = xc[end] + slope * (rows[sel] - yc[end])
        lines[sid] = line
    return lines


def _pitch(lines, ids):
    """Centre lines of one channel sorted along x, and the local pitch of each."""
    mid = len(next(iter(lines.values()))) // 2
    order = sorted(ids, key=lambda s: lines[s][mid])
    x = np.array([lines[s] for s in order])
    gaps = np.diff(x, axis=0)
    pitch = np.empty_like(x)
    pitch[1:-1] = 0.5 * (gaps[1:] + gaps[:-1])
    pitch[0], pitch[-1] = gaps[0], gaps[-1]
    return order, x, pitch


def derive_slice_map(distortion, wave_range, shape_by_channel=None, shape=DETECTOR_SHAPE):
    """
    Slice map (``regions``) of a MIRI MRS band derived from its distortion file.

    Parameters
    ----------
    distortion : str or Path
        The band's ``distortion`` reference file.
    wave_range : dict of int to tuple of float
        Wavelength range (um) per channel, as for :func:`slice_centre_lines`.
    shape_by_channel : dict of int to SliceShape, optional
        Footprint shape per channel; default :data:`DEFAULT_SHAPE` for all.
    shape : tuple of int
        Detector shape.

    Returns
    -------
    ndarray of int16, shape ``shape``
        Slice id at each pixel (e.g. 101..121 and 201..217), 0 between slices.

    Raises
    ------
    ValueError
        If a channel has fewer than two slices (no pitch).
    """
    lines = slice_centre_lines(distortion, wave_range, shape)
    out = np.zeros(shape, dtype=np.int16)
    cols = np.arange(shape[1], dtype=np.float64)[None, :]
    for ch in sorted({s // 100 for s in lines}):
        ids = [s for s in lines if s // 100 == ch]
        if len(ids) < 2:
            raise ValueError(f"{distortion}: channel {ch} has {len(ids)} slice(s); need >= 2")
        sh = (shape_by_channel or {}).get(ch, DEFAULT_SHAPE)
        order, x, pitch = _pitch(lines, ids)
        for sid, xc, p in zip(order, x, pitch, strict=True):
            centre = (xc + sh.offset * p)[:, None]
            half = (0.5 * sh.fill * p)[:, None]
            inside = (cols >= centre - half) & (cols <= centre + half) & (out == 0)
            out[inside] = sid
    return out


def measure_shape(distortion, wave_range, real_map, channel):
    """
    Footprint shape of one channel's slices measured on a real slice map.

    Parameters
    ----------
    distortion : str or Path
        Distortion file of the map's band.
    wave_range : dict of int to tuple of float
        As for :func:`slice_centre_lines`.
    real_map : ndarray of int, shape (ny, nx)
        The real slice map.
    channel : int
        Channel whose slices are measured.

    Returns
    -------
    SliceShape
        Medians over slices and rows of the footprint width (last minus first pixel
        of the slice in the row, plus one) and centre offset, over the local pitch.
    """
    lines = slice_centre_lines(distortion, wave_range, real_map.shape)
    order, x, pitch = _pitch(lines, [s for s in lines if s // 100 == channel])
    lo, hi = _edges(real_map, order)
    width = (hi - lo + 1.0) / pitch
    offset = (0.5 * (lo + hi) - x) / pitch
    return SliceShape(fill=float(np.nanmedian(width)), offset=float(np.nanmedian(offset)))


def _edges(label_map, ids):
    """First and last column of each slice in every row (NaN where absent)."""
    ny, nx = label_map.shape
    cols = np.arange(nx, dtype=np.float64)[None, :]
    lo = np.full((len(ids), ny), np.nan)
    hi = np.full((len(ids), ny), np.nan)
    for k, sid in enumerate(ids):
        sel = label_map == sid
        has = sel.any(axis=1)
        lo[k, has] = np.where(sel, cols, np.inf).min(axis=1)[has]
        hi[k, has] = np.where(sel, cols, -np.inf).max(axis=1)[has]
    return lo, hi


def compare_maps(derived, real, channels=None):
    """
    Agreement of a derived slice map with a real one.

    Parameters
    ----------
    derived, real : ndarray of int, shape (ny, nx)
        Slice maps (0 outside slices).
    channels : sequence of int, optional
        Restrict to these channels' slices (and the pixels either map gives them).

    Returns
    -------
    dict
        ``same_label`` (fraction of the pixels that either map puts in a slice that
        get the same slice in both), ``same_label_all`` (fraction of all detector
        pixels with the same value, 0 included), ``edge_offsets`` (derived minus real
        slice-edge column, pixels, every slice, row and side), ``edge_within_1px``
        (fraction of edges within one pixel), ``edge_median``, ``edge_max_abs``.
    """
    derived, real = np.asarray(derived), np.asarray(real)
    ids = np.unique(real[real > 0])
    if channels is not None:
        ids = ids[np.isin(ids // 100, list(channels))]
    in_real, in_derived = np.isin(real, ids), np.isin(derived, ids)
    either = in_real | in_derived
    same = (derived == real) & either
    lo_d, hi_d = _edges(derived, list(ids))
    lo_r, hi_r = _edges(real, list(ids))
    offsets = np.concatenate([(lo_d - lo_r).ravel(), (hi_d - hi_r).ravel()])
    offsets = offsets[np.isfinite(offsets)]
    return {
        "same_label": float(same.sum() / either.sum()),
        "same_label_all": float(np.mean(derived == real)),
        "edge_offsets": offsets,
        "edge_within_1px": float(np.mean(np.abs(offsets) <= 1)),
        "edge_median": float(np.median(offsets)),
        "edge_max_abs": float(np.max(np.abs(offsets))),
        "n_slices": int(ids.size),
    }


def write_regions_file(label_map, path, instrument=None, planes=9):
    """
    Write a slice map as a ``regions`` reference file that jwst 3.0's ``load_wcs`` reads.

    Parameters
    ----------
    label_map : ndarray of int, shape (1024, 1032)
        Slice map.
    path : str or Path
        Output ASDF file (written to a temporary name, then renamed).
    instrument : dict, optional
        ``detector``, ``channel``, ``band`` written to the file's metadata.
    planes : int
        Number of throughput planes jwst expects (9); every plane gets the same map.

    Returns
    -------
    str
        The path written.
    """
    from stdatamodels.jwst.datamodels import RegionsModel

    path = Path(path)
    model = RegionsModel()
    model.regions = np.repeat(np.asarray(label_map, dtype=np.int16)[None], planes, axis=0)
    meta = model.meta
    meta.reftype, meta.instrument.name, meta.exposure.type = "REGIONS", "MIRI", "MIR_MRS"
    for key, value in (instrument or {}).items():
        setattr(meta.instrument, key, value)
    meta.author, meta.pedigree, meta.useafter = "atm-step", "DUMMY", "2022-05-01T00:00:00"
    meta.description = "MIRI MRS slice map derived from the distortion (atm_step)"
    atomic_save(model, path)
    model.close()
    return str(path)
