"""Regenerate docs/validation.md, or run a subset of the sharp-PSF grid.

Full run (writes <out>/validation.md, validation.json, figures/):

    python -m atm_step.validation --out docs [--no-miri] [--no-legacy]

Subsets (print the grid table; write nothing unless --json is given):

    python -m atm_step.validation --quick
    python -m atm_step.validation --scene binary --fwhm 1 --n 3
    python -m atm_step.validation --scene isolated --fwhm 2 --snr 100 --no-jwst
    python -m atm_step.validation --scene binary --fwhm 1 --seed 2   # another noise realisation

MIRI MRS channels 3/4 matrix (writes <out>/validation_miri.md and .json only):

    python -m atm_step.validation --only-miri-matrix --out docs

MIRI MRS channels 1/2 (band 12A) against jwst and the ideal floors, three noise seeds
(writes <out>/validation_miri_ch12.md and .json only):

    python -m atm_step.validation --only-miri-ch12 --out docs

jwst results are cached in $ATM_STEP_VALIDATION_CACHE (default
~/.cache/atm-step-validation), so re-runs only pay for atm-step.
"""

import argparse
import json
import logging
import os
import sys
from dataclasses import replace


def _parser():
    from atm_step.validation import grid as G

    p = argparse.ArgumentParser(prog="python -m atm_step.validation", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="docs", help="output folder of a full run (validation.md, figures/)")
    sub = p.add_argument_group("grid subsets (no docs written)")
    sub.add_argument("--quick", action="store_true",
                     help="the five issue-9 scenes at FWHM 1 px, default SNR, N=2 and 3")
    sub.add_argument("--scene", action="append", choices=sorted(G.RECIPES), metavar="NAME",
                     help=f"scene (repeatable): {', '.join(G.RECIPES)}")
    sub.add_argument("--fwhm", action="append", type=float, metavar="PX", help="PSF FWHM in native pixels (repeatable)")
    sub.add_argument("--snr", action="append", type=float, metavar="S", help="peak SNR (repeatable; default per scene)")
    sub.add_argument("--n", action="append", type=int, choices=(2, 3), help="oversampling factor (repeatable)")
    sub.add_argument("--seed", type=int, default=None, metavar="S",
                     help="noise seed of the scenes (default: the grid's, 1); jwst's cubes of a new seed are "
                     "computed, not cached")
    sub.add_argument("--json", metavar="FILE", help="also write the subset's numbers as JSON")
    p.add_argument("--no-jwst", action="store_true", help="leave jwst out of the grid")
    p.add_argument("--jwst-cached-only", action="store_true",
                   help="use cached jwst results, do not compute missing ones (they show as '-')")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the jwst/truth cache")
    p.add_argument("--no-legacy", action="store_true",
                   help="full run without the G395H-like blurred-PSF sections 1-5")
    p.add_argument("--only-grid", action="store_true",
                   help="re-run only the full sharp-PSF grid; other numbers come from <out>/validation.json")
    p.add_argument("--only-miri", action="store_true",
                   help="run only the MIRI MRS section; other numbers come from <out>/validation.json")
    p.add_argument("--only-miri-matrix", action="store_true",
                   help="run only the MIRI ch3/ch4 matrix (point, nebula, binary; with and without blur; "
                   "common spaxel mask) and write <out>/validation_miri.md (section 6b)")
    p.add_argument("--only-miri-ch12", action="store_true",
                   help="run only MIRI MRS channels 1 and 2 (band 12A; ours, jwst and the ideal-oversampling "
                   "floor, N = 2 and 3) and write <out>/validation_miri_ch12.md (section 6c)")
    p.add_argument("--no-miri", action="store_true", help="skip the MIRI MRS section")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def _subset_cases(args):
    from atm_step.validation import grid as G

    if args.quick:
        cases = G.quick_cases()
    else:
        pool = G.full_cases()
        if not args.snr:  # the SNR sweep is selected by --snr; otherwise each scene's default SNR
            pool = [c for c in pool if c.snr == G.RECIPES[c.recipe].peak_snr]
        scenes = args.scene or sorted({c.recipe for c in pool}, key=list(G.RECIPES).index)
        fwhms = args.fwhm or G.FWHMS
        cases = [c for c in pool if c.recipe in scenes and c.fwhm in fwhms]
        for s in scenes:  # scene/FWHM pairs not in the full grid are run at the scene's default SNR
            for f in fwhms:
                if not any(c.recipe == s and c.fwhm == f for c in cases):
                    cases.append(G.Case(s, f, G.RECIPES[s].peak_snr))
    if args.scene and args.quick:
        cases = [c for c in cases if c.recipe in args.scene]
    if args.snr:
        seen, out = set(), []
        for c in cases:
            for s in args.snr:
                key = (c.recipe, c.fwhm, s)
                if key not in seen:
                    seen.add(key)
                    out.append(G.Case(c.recipe, c.fwhm, s, noise_free=s == G.RECIPES[c.recipe].peak_snr))
        cases = out
    return cases


def main(argv=None):
    """Run the validation and write the report or print the table; returns the exit status."""
    args = _parser().parse_args(argv)
    os.environ.setdefault("STPIPE_DISABLE_CRDS_STEPPARS", "True")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("atm_step.validation").setLevel(logging.INFO)
    from atm_step.validation import grid as G
    from atm_step.validation import report

    jwst_kw = {"jwst": not args.no_jwst, "jwst_compute": not args.jwst_cached_only, "cache": not args.no_cache}
    command = "python -m atm_step.validation " + " ".join(sys.argv[1:] if argv is None else argv)
    subset = bool(args.quick or args.scene or args.fwhm or args.snr or args.n)
    if args.seed is not None and not subset:
        print("error: --seed applies to grid subsets (--quick, --scene, --fwhm, --snr, --n); the report "
              "is made with the grid's own seed", file=sys.stderr)
        return 2
    if subset:
        cases = _subset_cases(args)
        cfg = G.DEFAULT_GRID if args.seed is None else replace(G.DEFAULT_GRID, seed=args.seed)
        res = G.run_grid(cases, cfg, oversamples=args.n, **jwst_kw)
        res["stamp"] = report.commit_stamp(command.strip())
        print(G.format_table(res))
        print(f"{len(cases)} case(s) in {res['seconds']:.0f} s (ours {sum(c['ours_seconds'] for c in res['cases']):.0f} s)")
        if args.json:
            report.write_text_atomic(args.json, json.dumps(res, indent=1, default=report.json_default))
        return 0
    if args.only_grid:
        res = report.grid_section(args.out, grid_kw=jwst_kw, command=command.strip())
        print(G.format_table(res["grid"]))
        print(f"wrote {args.out}/validation.md (grid section re-run in {res['grid']['seconds']:.0f} s)")
        return 0
    if args.only_miri_matrix:
        import tempfile

        from atm_step.validation import miri_matrix as MM

        with tempfile.TemporaryDirectory(prefix="atm_miri_matrix_") as tmp:
            res = MM.run_matrix(report._default_data_dir(), tmp, cache=not args.no_cache)
        path = MM.write_report(args.out, res, command.strip())
        print(MM.render_markdown(res))
        print(f"wrote {path} in {res['seconds']:.0f} s")
        return 0
    if args.only_miri_ch12:
        import tempfile

        from atm_step.validation import miri as V

        with tempfile.TemporaryDirectory(prefix="atm_miri_ch12_") as tmp:
            res = V.run_ch12(report._default_data_dir(), tmp)
        path = V.write_ch12_report(args.out, res, command.strip())
        print(V.render_ch12_markdown(res))
        print(f"wrote {path} in {res['seconds']:.0f} s")
        return 0
    if args.only_miri:
        report.miri_section(args.out)
        print(f"wrote {args.out}/validation.md (MIRI section re-run)")
        return 0
    res = report.generate(args.out, miri=not args.no_miri, legacy=not args.no_legacy, grid_kw=jwst_kw,
                          command=command.strip())
    print(G.format_table(res["grid"]))
    print(f"wrote {args.out}/validation.md in {res['seconds']:.0f} s")
    for row in res.get("miri", {}).get("rows", []):
        print(f"MIRI {row['method']:>8s} N={row['N']}: half-amp {100 * row['half_amp']:.2f}%  "
              f"aperture/standard {row['ap_vs_standard']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
