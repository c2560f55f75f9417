"""Experiment, not part of the package: how the NIRSpec IFU knot count (68 across a
slice, the paper's) sets the noise-free error on sharp PSFs, and whether generalised
cross-validation could choose it per slice (docs/algorithm.md, "Knot count").

Usage::

    python benchmarks/experiments/knot_choice.py positions isolated 1
    python benchmarks/experiments/knot_choice.py positions binary 1
    python benchmarks/experiments/knot_choice.py gcv isolated 1 [--noisy]

``positions``: the grid's isolated star (or 0.33" binary) moved by 0-0.08" along and
half that across the slices, noise-free; rms relative error of the N = 2 and N = 3
images against the truth on the oversampled rows (pixels above 5% of the peak), for
several knot counts. ``gcv``: for each slice holding the source, log10 of the GCV
score (the score `atm_step.core.trace_fit._choose_penalty` minimises, at its best
penalty weight, median over its windows) at each knot count over that at 68.
"""

import argparse
import warnings
from dataclasses import replace

import numba
import numpy as np

from atm_step.core import FitParameters
from atm_step.core import trace_fit as T
from atm_step.core.bspline import difference_penalty, solve_banded
from atm_step.core.stats import region_geometry
from atm_step.validation import grid as G
from atm_step.validation import methods as M

PRESET = FitParameters.nirspec_ifu("NRS1")
KNOTS = (60, 68, 76, 84, 90, 100)


@numba.njit
def _gcv_scores(norm, ngood, v, bidx, bval, fbin, clo, chi, pen, scale, cfg, work, z, out):
    # _choose_penalty's loop, keeping each window's lowest GCV instead of its weight
    nx = v.shape[0]
    ncoef = cfg.nknots + 3
    binw = (cfg.a1 - cfg.a0) / cfg.nknots / T.FINE_BINS_PER_KNOT
    ngrid = T.GCV_LOG_GRID.shape[0]
    for q in range(T.GCV_WINDOWS):
        out[q] = np.nan
        best_c = -1
        for c in range(q * nx // T.GCV_WINDOWS, (q + 1) * nx // T.GCV_WINDOWS):
            if ngood[c] > cfg.min_good and norm[c] > 0 and (best_c < 0 or norm[c] > norm[best_c]):
                best_c = c
        if best_c < 0:
            continue
        wl, wr, _ = T._move_window(best_c, cfg.window, -1, -2, 0, bidx, bval, fbin, v, work.occ,
                                   work.ata_all, work.aty_all, work.sums_all)
        lo, hi, npts, gap = T._sampled_range(work.occ, clo, chi, wl, wr, cfg.a0, binw)
        if gap > cfg.gap_ratio * cfg.gap_h or npts <= ncoef:
            continue
        best = np.inf
        for gi in range(ngrid):
            lam = 10.0 ** T.GCV_LOG_GRID[gi] * scale
            fitted, _ = T._robust_fit(nx + q * ngrid + gi, wl, wr, npts, v, bidx, bval, work.rej,
                                      work.ata_all, work.aty_all, work.sums_all, work.ata, work.aty,
                                      work.sums, pen, lam, work.chol, work.coef, work.trial, work.cand, cfg)
            if not fitted or not solve_banded(work.ata, pen, lam, work.aty, work.chol, work.coef):
                continue
            nkept, _m, _r, rss = T._residual_spread(work.ata, work.aty, work.sums, work.coef)
            edf = ncoef - lam * T._penalty_trace(work.chol, cfg.penalty_order, z)
            if nkept > edf:
                best = min(best, nkept * rss / (nkept - edf) ** 2)
        out[q] = best


def gcv(recipe, fwhm, noisy):
    scene = G.build_scene(G.Case(recipe, fwhm, G.RECIPES[recipe].peak_snr))
    flux = np.ascontiguousarray(scene.flux if noisy else G.noise_free_flux(scene), dtype=np.float64)
    regions = scene.regions.astype(np.int64)
    alpha = np.where(regions > 0, scene.alpha, np.nan)
    ids = sorted(set(regions[flux > 0.05 * np.nanmax(flux)].tolist()) - {0})
    geom = region_geometry(regions, alpha, np.array(ids))
    nx = flux.shape[1]
    score = {}
    for nk in KNOTS:
        row = []
        for k in range(len(ids)):
            cfg = T.region_setup(geom, k, nk, 15, 0, 1, replace(PRESET, nknots=nk), False)
            ncoef = nk + 3
            norm, ngood = T.column_norms(flux, alpha, regions, cfg.rid, cfg.row0, cfg.row1, cfg.a0, cfg.a1,
                                         2 * nk, T.MAX_MISSING_FLUX)
            table = T._new_pixel_table(nx, cfg)
            T._pixel_table(flux, alpha, regions, norm, cfg, *table, np.empty(4))
            scale = int(np.count_nonzero(table[1] >= 0)) / nx * (2 * cfg.window + 1) / ncoef
            out = np.empty(T.GCV_WINDOWS)
            _gcv_scores(norm, ngood, *table, difference_penalty(ncoef, cfg.penalty_order), scale, cfg,
                        T.column_work(nx, cfg), np.empty(ncoef), out)
            row.append(np.nanmedian(out))
        score[nk] = np.array(row)
    print(f"{recipe} FWHM {fwhm} {'noisy' if noisy else 'noise-free'}: slices {ids}")
    for nk in KNOTS:
        print(f"  {nk:3d} knots: log10 GCV / GCV(68) = {np.round(np.log10(score[nk] / score[68]), 2).tolist()}")


def positions(kind, fwhm):
    res = {nk: [] for nk in KNOTS}
    for da in (0.0, 0.02, 0.04, 0.06, 0.08):
        if kind == "isolated":
            base, snr, opts = "point_source", 5000.0, {"alpha": 0.12 + da, "beta": 0.03 + da / 2}
        else:
            base, snr, opts = "two_sources", 2000.0, G._binary(0.33)
            for key in ("alpha1", "alpha2"):
                opts[key] += da
            for key in ("beta1", "beta2"):
                opts[key] += da / 2
        G.RECIPES["moved"] = G.Recipe("moved", "moved", base, opts, snr)
        scene = G.build_scene(G.Case("moved", fwhm, snr))
        nf = G.noise_free_flux(scene)
        line = []
        for nk in KNOTS:
            es = []
            for n in (2, 3):
                t = scene.truth_oversampled(n)
                b = t > 0.05 * np.nanmax(t)
                f = M.run_ours(scene, n, flux=nf, parameters=replace(PRESET, nknots=nk)).flux
                es.append(100 * np.sqrt(np.nanmean(((f - t)[b] / t[b]) ** 2)))
            res[nk].append(es)
            line.append(f"{nk}: {es[0]:.2f}/{es[1]:.2f}")
        print(f"{kind} FWHM {fwhm} moved {da:.2f}\": " + "  ".join(line), flush=True)
    for label, fn in (("mean", np.mean), ("max", np.max)):
        print(f"{label:4s} " + "  ".join(f"{nk}: {fn(res[nk], axis=0)[0]:.2f}/{fn(res[nk], axis=0)[1]:.2f}"
                                         for nk in KNOTS))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    p = sub.add_parser("positions")
    p.add_argument("kind", choices=("isolated", "binary"))
    p.add_argument("fwhm", type=float)
    g = sub.add_parser("gcv")
    g.add_argument("recipe")
    g.add_argument("fwhm", type=float)
    g.add_argument("--noisy", action="store_true")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    if args.what == "positions":
        positions(args.kind, args.fwhm)
    else:
        gcv(args.recipe, args.fwhm, args.noisy)


if __name__ == "__main__":
    main()
