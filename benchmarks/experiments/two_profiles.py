"""Experiment, not part of the package: can a two-profile trace model,
``flux(alpha, x) = s1(x) f1(alpha) + s2(x) f2(alpha)`` with per-column amplitudes,
remove the binaries' noise-free model error (docs/algorithm.md, "Where we stand")?

The grid's binaries are a blue absorption-line star and a red emission-line source:
their flux ratio changes along the +-50-column window, so one normalised profile per
window cannot describe every column, and the change is aliased into sub-pixel
structure. Two profiles with free amplitudes per column describe such a window
exactly (same PSF, two positions), whatever the spectra.

Both models are plain least squares in NumPy on the noise-free image (no rejection,
a fixed second-difference penalty, no band or residual), with the preset's knots (68 intervals across the
slice) and window (+-50 columns); the two-profile one by alternating least squares.
Measure: rms relative error of the trace model at the oversampled rows of every 8th
column against the pixel-integrated truth there (pixels above 5% of the slice's
peak), N = 3.

Usage::

    python benchmarks/experiments/two_profiles.py binary_0.5 2
    python benchmarks/experiments/two_profiles.py isolated 1 --noisy
"""

import argparse
import warnings

import numpy as np
from scipy.interpolate import BSpline

from atm_step.core.reference import uniform_knot_vector
from atm_step.core.two_profile import split_point
from atm_step.validation import grid as G

NKNOTS = 68
#: without a dip, split at the profile's centroid (else: one profile)
CENTROID = False
WINDOW = 50
N = 3


def _design(alpha, knots):
    return BSpline.design_matrix(alpha, knots, 3).toarray()


PENALTY = 1e-3


def _lsq(a, y, blocks=1):
    """Least squares with a second-difference penalty on each block of coefficients
    (weight PENALTY relative to the mean diagonal of the normal matrix), as the
    preset's penalised fit: without it, windows where the trace is parallel to the
    rows leave knot intervals unsampled."""
    ata = a.T @ a
    k = ata.shape[0] // blocks
    d = np.diff(np.eye(k), 2, axis=0)
    pen = np.kron(np.eye(blocks), d.T @ d)
    ata += PENALTY * np.trace(ata) / ata.shape[0] * pen
    return np.linalg.solve(ata, a.T @ y)


def _window_data(flux, alpha, regions, rid, cols):
    """Pixels of region ``rid`` in columns ``cols``: alpha, value, column index."""
    sub = regions[:, cols] == rid
    a = alpha[:, cols][sub]
    v = flux[:, cols][sub]
    c = np.broadcast_to(np.arange(cols.size), sub.shape)[sub]
    ok = np.isfinite(a) & np.isfinite(v)
    return a[ok], v[ok], c[ok]


def one_profile(a, v, c, ncols, knots, target):
    b = _design(a, knots)
    norm = np.bincount(c, weights=v, minlength=ncols)
    good = norm[c] > 0
    coef = _lsq(b[good], v[good] / norm[c][good])
    f = b @ coef
    sel = c == target
    scale = np.dot(f[sel], v[sel]) / np.dot(f[sel], f[sel])
    return lambda alpha: scale * (_design(alpha, knots) @ coef)


def two_profiles(a, v, c, ncols, knots, target, iters=30):
    b = _design(a, knots)
    k = b.shape[1]
    norm = np.bincount(c, weights=v, minlength=ncols)
    good = norm[c] > 0
    coef1 = _lsq(b[good], v[good] / norm[c][good])
    s1 = norm.copy()
    # second amplitude: the change of each column's centroid along alpha
    centroid = np.bincount(c, weights=v * a, minlength=ncols) / np.where(norm > 0, norm, 1)
    s2 = norm * (centroid - np.average(centroid, weights=norm)) / max(np.std(centroid), 1e-12)
    coef2 = np.zeros(k)
    for _ in range(iters):
        design = np.hstack([s1[c][:, None] * b, s2[c][:, None] * b])
        coef = _lsq(design, v, blocks=2)
        coef1, coef2 = coef[:k], coef[k:]
        f1, f2 = b @ coef1, b @ coef2
        for col in range(ncols):
            sel = c == col
            if sel.sum() < 3:
                continue
            m = np.column_stack([f1[sel], f2[sel]])
            s1[col], s2[col] = np.linalg.lstsq(m, v[sel], rcond=None)[0]
    sel = c == target
    f1, f2 = b @ coef1, b @ coef2
    m = np.column_stack([f1[sel], f2[sel]])
    t1, t2 = np.linalg.lstsq(m, v[sel], rcond=None)[0]
    return lambda alpha: _design(alpha, knots) @ (t1 * coef1 + t2 * coef2)


def _split(a, v, c, ncols, knots):
    """Alpha of the dip between the two highest peaks of the window's mean normalised
    profile (one-profile fit); without two peaks, the centroid if ``--centroid``, else
    None (`atm_step.core.two_profile.split_point`)."""
    b = _design(a, knots)
    norm = np.bincount(c, weights=v, minlength=ncols)
    good = norm[c] > 0
    coef = _lsq(b[good], v[good] / norm[c][good])
    grid = np.linspace(knots[3], knots[-4], 600)
    prof = _design(grid, knots) @ coef
    # the package's rule, with any dip accepted and faint peaks down to 5% counted
    return split_point(grid, prof, min_peak=0.05, max_dip=1.0, centroid=CENTROID)


def split_profiles(a, v, c, ncols, knots, target, split=None, width=None):
    """Amplitudes fixed: each column's flux left and right of the dip (smooth weight
    over ``width`` in alpha); two profiles fitted jointly, linear least squares."""
    if split is None:
        split = _split(a, v, c, ncols, knots)
    if split is None:
        return one_profile(a, v, c, ncols, knots, target)
    w = 1.0 / (1.0 + np.exp(-(a - split) / width))
    s1 = np.bincount(c, weights=(1 - w) * v, minlength=ncols)
    s2 = np.bincount(c, weights=w * v, minlength=ncols)
    b = _design(a, knots)
    k = b.shape[1]
    coef = _lsq(np.hstack([s1[c][:, None] * b, s2[c][:, None] * b]), v, blocks=2)
    return lambda alpha: _design(alpha, knots) @ (s1[target] * coef[:k] + s2[target] * coef[k:])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("recipe")
    ap.add_argument("fwhm", type=float)
    ap.add_argument("--noisy", action="store_true")
    ap.add_argument("--step", type=int, default=8)
    ap.add_argument("--centroid", action="store_true", help="split at the centroid without a dip")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    global CENTROID
    CENTROID = args.centroid
    scene = G.build_scene(G.Case(args.recipe, args.fwhm, G.RECIPES[args.recipe].peak_snr))
    flux = scene.flux if args.noisy else G.noise_free_flux(scene)
    alpha, regions = scene.alpha, scene.regions
    reg_os, alpha_os = scene.oversampled_alpha(N)
    truth = scene.truth_oversampled(N)
    nx = flux.shape[1]
    peak = np.nanmax(truth)
    ids = sorted(set(regions[np.nan_to_num(flux) > 0.05 * np.nanmax(flux)].tolist()) - {0})
    errs = {"one": [], "two": [], "split": []}
    row = scene.geometry.row_height
    for rid in ids:
        inreg = regions == rid
        a0, a1 = np.nanmin(alpha[inreg]), np.nanmax(alpha[inreg])
        pad = 1e-6 * (a1 - a0)
        knots = uniform_knot_vector(a0 - pad, a1 + pad, NKNOTS)
        for x in range(WINDOW, nx - WINDOW, args.step):
            cols = np.arange(x - WINDOW, x + WINDOW + 1)
            a, v, c = _window_data(flux, alpha, regions, rid, cols)
            rows = np.flatnonzero((reg_os[:, x] == rid) & (truth[:, x] > 0.05 * peak))
            if rows.size == 0:
                continue
            aq = np.clip(alpha_os[rows, x], a0, a1)
            t = truth[rows, x]
            for name, fn in (("one", one_profile), ("two", two_profiles), ("split", split_profiles)):
                kw = {"width": 0.5 * row} if name == "split" else {}
                model = fn(a, v, c, cols.size, knots, WINDOW, **kw)
                errs[name].append((model(aq) - t) / t)
    for name in errs:
        e = np.concatenate(errs[name])
        print(f"{args.recipe} FWHM {args.fwhm} {'noisy' if args.noisy else 'noise-free'} "
              f"{name} profile(s): rms {100 * np.sqrt(np.mean(e**2)):.3f}%  "
              f"p95 |err| {100 * np.percentile(np.abs(e), 95):.3f}%  ({e.size} pixels, slices {ids})")


if __name__ == "__main__":
    main()
