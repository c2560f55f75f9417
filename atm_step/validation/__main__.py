"""``python -m atm_step.validation [--out docs] [--quick]``: regenerate docs/validation.md."""

import argparse
import logging
import os
import sys


def main(argv=None):
    """Run the validation and write the report; returns the exit status."""
    p = argparse.ArgumentParser(prog="python -m atm_step.validation", description=__doc__)
    p.add_argument("--out", default="docs", help="output folder (validation.md, figures/)")
    p.add_argument("--quick", action="store_true", help="small scenes (a few minutes less; for checks)")
    p.add_argument("--only-miri", action="store_true",
                   help="run only the MIRI MRS section; other numbers come from <out>/validation.json")
    p.add_argument("--no-miri", action="store_true", help="skip the MIRI MRS section")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    os.environ.setdefault("STPIPE_DISABLE_CRDS_STEPPARS", "True")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("atm_step.validation").setLevel(logging.INFO)
    from atm_step.validation import nirspec, report

    if args.only_miri:
        res = report.miri_section(args.out)
        print(f"wrote {args.out}/validation.md (MIRI section re-run)")
    else:
        cfg = nirspec.QUICK_CONFIG if args.quick else nirspec.DEFAULT_CONFIG
        res = report.generate(args.out, cfg, miri=not args.no_miri)
        print(f"wrote {args.out}/validation.md in {res['seconds']:.0f} s")
        for row in res["point_source"]["rows"]:
            print(f"{row['method']:>8s} N={row['N']}: half-amp {100 * row['half_amp']:.2f}%  "
                  f"(noise-free {100 * row['half_amp_noisefree']:.2f}%)  aperture/standard {row['ap_vs_standard']:.4f}")
    for row in res.get("miri", {}).get("rows", []):
        print(f"MIRI {row['method']:>8s} N={row['N']}: half-amp {100 * row['half_amp']:.2f}%  "
              f"aperture/standard {row['ap_vs_standard']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
