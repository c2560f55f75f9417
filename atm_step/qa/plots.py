"""Matplotlib figures for ATM runs (arrays in, PNG files out).

Orientation: the core's, dispersion along x (axis 1), the slice along y (axis 0).
"""

import logging
import os
import warnings
from pathlib import Path

import numpy as np

from atm_step.qa import require_matplotlib

__all__ = [
    "MODEL_MAP_LABELS",
    "model_map_figure",
    "normalised_profile",
    "profile_figure",
    "robust_limits",
    "spectra_figure",
]

log = logging.getLogger(__name__)


def _save(fig, path):
    """Write ``fig`` to ``path`` through a temporary file in the same folder, renamed
    into place once complete: a crash leaves no truncated picture under the name."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.partial-{os.getpid()}{path.suffix}")
    try:
        fig.savefig(tmp, dpi=110)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def normalised_profile(flux, alpha, regions, region, column, window=10):
    """
    Along-slice samples of a column and its neighbours, each normalised by its column sum.

    Parameters
    ----------
    flux, alpha : ndarray, shape (ny, nx)
        Native image and along-slice coordinate (core orientation).
    regions : ndarray of int, shape (ny, nx)
    region : int
        Region id.
    column : int
        Central column.
    window : int
        Columns ``column - window .. column + window`` are sampled.

    Returns
    -------
    alpha_nb, prof_nb : ndarray
        Neighbouring-column samples (flattened).
    alpha_c, prof_c : ndarray
        The central column's samples.
    norm_c : float
        The central column's sum (used to normalise its model).
    """
    nx = flux.shape[1]
    a_nb, p_nb = [], []
    a_c = p_c = np.array([])
    norm_c = np.nan
    for c in range(max(column - window, 0), min(column + window + 1, nx)):
        sel = (regions[:, c] == region) & np.isfinite(flux[:, c]) & np.isfinite(alpha[:, c])
        if sel.sum() < 3:
            continue
        s = np.sum(flux[sel, c])
        if not s > 0:
            continue
        if c == column:
            a_c, p_c, norm_c = alpha[sel, c], flux[sel, c] / s, s
        else:
            a_nb.append(alpha[sel, c])
            p_nb.append(flux[sel, c] / s)
    cat = lambda v: np.concatenate(v) if v else np.array([])  # noqa: E731
    return cat(a_nb), cat(p_nb), a_c, p_c, norm_c


def robust_limits(values, lo=1.0, hi=99.0, pad=0.08, include=None):
    """
    Axis limits that ignore outliers: the ``lo``-``hi`` percentile range, padded.

    Parameters
    ----------
    values : array_like
        Plotted samples (NaN ignored).
    lo, hi : float
        Percentiles of ``values`` bounding the range.
    pad : float
        Fraction of the range added on each side.
    include : array_like, optional
        Values shown in full (a smooth model curve: its peak is never cut).

    Returns
    -------
    tuple of float or None
        ``(bottom, top)``; None if no value is finite.

    Examples
    --------
    >>> import numpy as np
    >>> y = np.r_[np.linspace(0.0, 0.1, 200), -0.4]   # one outlier
    >>> bottom, top = robust_limits(y)
    >>> bool(-0.02 < bottom < 0.0), bool(0.1 < top < 0.12)
    (True, True)
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    keep = np.asarray([] if include is None else include, dtype=np.float64).ravel()
    keep = keep[np.isfinite(keep)]
    if v.size == 0 and keep.size == 0:
        return None
    a, b = np.percentile(v, [lo, hi]) if v.size else (keep.min(), keep.max())
    if keep.size:
        a, b = min(a, keep.min()), max(b, keep.max())
    span = b - a if b > a else max(abs(a), 1e-12)
    return float(a - pad * span), float(b + pad * span)


def profile_figure(path, flux, alpha, regions, result, panels, alpha_os=None, window=10, title=None,
                   unit="slice"):
    """
    Paper Figure 3: normalised along-slice profiles with the spline fit.

    Parameters
    ----------
    path : str or Path
        Output PNG.
    flux, alpha, regions : ndarray, shape (ny, nx)
        Native image, along-slice coordinate, region map (core orientation).
    result : ATMResult
        The core's result for this image (its ``spline`` model is drawn).
    panels : sequence of (int, int)
        ``(region, column)`` per panel.
    alpha_os : ndarray, shape (ny_os, nx), optional
        Along-slice coordinate of the oversampled rows; default interpolated from ``alpha``
        at ``result.y_os``.
    window : int
        Neighbouring columns on each side.
    title : str, optional
        Figure title (e.g. the file name).
    unit : str
        ``"slice"``: panels are titled ``slice <region>``; otherwise (``"slit <name>"``)
        by ``unit`` itself.

    Returns
    -------
    str
        The path written.
    """
    plt = require_matplotlib()
    n = len(panels)
    ncol = min(n, 3)
    nrow = int(np.ceil(n / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.2 * nrow), squeeze=False)
    if alpha_os is None:
        alpha_os = np.full(result.spline.shape, np.nan)
        ys = np.arange(flux.shape[0])
        for c in range(flux.shape[1]):
            ok = np.isfinite(alpha[:, c])
            if ok.sum() > 1:
                alpha_os[:, c] = np.interp(result.y_os, ys[ok], alpha[ok, c], left=np.nan, right=np.nan)
    reg_os = regions[result.near_row, :]
    for ax, (region, column) in zip(axes.ravel(), panels):
        a_nb, p_nb, a_c, p_c, norm = normalised_profile(flux, alpha, regions, region, column, window)
        ax.plot(a_nb, p_nb, ".", color="0.3", ms=2,
                label=f"neighbouring columns c±{window}, each normalised to unit sum")
        ax.plot(a_c, p_c, "s", color="tab:green", ms=5, mfc="none", label="column c (panel title)")
        curve = None
        sel = (reg_os[:, column] == region) & np.isfinite(result.spline[:, column])
        if sel.any() and np.isfinite(norm):
            order = np.argsort(alpha_os[sel, column])
            model = result.spline[sel, column][order] / norm
            ax.plot(alpha_os[sel, column][order], model, "-", color="tab:red", lw=1.2,
                    label="spline model of column c (oversampled rows)")
            curve = model
        else:
            ax.text(0.03, 0.9, "no spline model (not fitted)", transform=ax.transAxes,
                    color="tab:red")
        # robust limits: one outlying sample must not squash the profile
        limits = robust_limits(np.concatenate([p_c, p_nb]), lo=0.5, hi=99.5, include=curve)
        if limits is not None:
            ax.set_ylim(*limits)
        name = f"slice {region}" if unit == "slice" else unit
        ax.set_title(f"{name}, column {column}", fontsize=9)
        ax.set_xlabel("alpha (arcsec)")
        ax.set_ylabel("normalised flux")
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    # one legend for all panels, below them, clear of the data
    entries = {}
    for ax in axes.ravel()[:n]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    fig.legend(list(entries.values()), list(entries), fontsize=7, loc="lower center", ncol=3,
               frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    _save(fig, path)
    plt.close(fig)
    log.info("wrote %s", path)
    return str(path)


#: Legend of :func:`model_map_figure`, one entry per pixel class (code 1-4).
MODEL_MAP_LABELS = (
    "not modelled (below fit_threshold): linear interpolation",
    "modelled, outside the compact-source band: linear interpolation",
    "compact-source band: spline + residual model",
    "bad pixel filled by the model (FLUX_ESTIMATED)",
)


def model_map_figure(path, result, regions, title=None):
    """
    Map of the oversampled image: spline+residual used, linear only, filled bad pixels.

    Parameters
    ----------
    path : str or Path
        Output PNG.
    result : ATMResult
    regions : ndarray of int, shape (ny, nx)
        Native region map (core orientation).
    title : str, optional

    Returns
    -------
    str
        The path written.
    """
    plt = require_matplotlib()
    from matplotlib.colors import ListedColormap

    reg_os = regions[result.near_row, :]
    code = np.zeros(result.band.shape, dtype=np.int8)
    code[reg_os > 0] = 1  # linear
    code[(reg_os > 0) & np.isfinite(result.spline)] = 2  # fitted, linear used
    code[result.band & np.isfinite(result.trace)] = 3  # spline used
    code[result.estimated] = 4
    cmap = ListedColormap(["white", "0.85", "tab:blue", "tab:red", "black"])
    fig, ax = plt.subplots(figsize=(7, 7))
    ax.imshow(code, origin="lower", aspect="auto", cmap=cmap, vmin=-0.5, vmax=4.5, interpolation="nearest")
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color=cmap(i + 1), label=lab) for i, lab in enumerate(MODEL_MAP_LABELS)],
              fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=1, frameon=False)
    n_used = int((code == 3).sum())
    heading = title or "where the spline model was used"
    ax.set_title(f"{heading}\n({n_used} oversampled pixels from the spline model; white: outside "
                 "the regions)", fontsize=9)
    ax.set_xlabel("column (dispersion)")
    ax.set_ylabel(f"oversampled row (N = {result.oversample:g})")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    log.info("wrote %s", path)
    return str(path)


def spectra_figure(path, cubes, spaxels, aperture, wavelength=None, labels=None, n_show=5, title=None):
    """
    Paper Figure 6: brightest-spaxel spectra and their ratio to the aperture spectrum.

    Parameters
    ----------
    path : str or Path
        Output PNG.
    cubes : sequence of ndarray, shape (n_slices, n_spaxels, n_wave)
        e.g. ``[before, after]`` (one column of panels each).
    spaxels : list of (int, int)
        Spaxels to draw (brightest first).
    aperture : sequence of ndarray, shape (n_wave,)
        Aperture-summed spectrum of each cube.
    wavelength : ndarray, shape (n_wave,), optional
        x axis (micron); default the column index.
    labels : sequence of str, optional
        Panel titles.
    n_show : int
        Number of spaxels drawn.
    title : str, optional

    Returns
    -------
    str
        The path written.
    """
    plt = require_matplotlib()
    k = len(cubes)
    labels = labels or [f"cube {i}" for i in range(k)]
    fig, axes = plt.subplots(2, k, figsize=(4.5 * k, 6), squeeze=False, sharex=True)
    nw = cubes[0].shape[2]
    x = np.arange(nw) if wavelength is None else wavelength
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    tops, ratios = [], []
    for j, (cube, ap) in enumerate(zip(cubes, aperture)):
        for m, (i, s) in enumerate(spaxels[:n_show]):
            spec = cube[i, s]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                norm = np.nanmedian(spec)
                ratio = spec / ap
                ratio = ratio / np.nanmedian(ratio)
            axes[0, j].plot(x, spec / norm + 0.5 * m, lw=0.7, color=colors[m % len(colors)])
            axes[1, j].plot(x, ratio + 0.15 * m, lw=0.7, color=colors[m % len(colors)])
            tops.append(spec / norm + 0.5 * m)
            ratios.append(ratio + 0.15 * m)
        axes[0, j].set_title(labels[j], fontsize=10)
        axes[0, j].set_ylabel("spaxel / median (+offset)")
        axes[1, j].set_ylabel("spaxel / aperture (+offset)")
        axes[1, j].set_xlabel("wavelength (micron)" if wavelength is not None else "column")
    # robust limits shared by before/after, so the two columns compare at a glance
    for row, values in ((0, tops), (1, ratios)):
        limits = robust_limits(np.concatenate(values), lo=0.5, hi=99.5) if values else None
        if limits is not None:
            for ax in axes[row]:
                ax.set_ylim(*limits)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    log.info("wrote %s", path)
    return str(path)
