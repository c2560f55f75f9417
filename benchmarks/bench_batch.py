"""Throughput of ``atm-step run`` (exposures per minute) against a plain loop over jwst's step.

Run on demand (not part of the test suite)::

    python benchmarks/bench_batch.py            # 2 MRS + 3 MOS exposures, oversample 2
    python benchmarks/bench_batch.py --quick    # 3 MOS cutouts only (about a minute)

Measured on the same files, each time from a fresh process or cluster:

- ``jwst loop``: a plain Python loop calling jwst's own
  ``jwst.adaptive_trace_model.AdaptiveTraceModelStep`` (``skip=False``) and saving
  each result, in one process: what a user writes today.
- ``atm loop``: the same loop over atm-step's step.
- ``batch, 1 worker`` and ``batch, 2 workers``: :func:`atm_step.batch.run` with a
  local Dask cluster of 1 and 2 worker processes (cluster start-up included).

Throughput counts the whole wall time, imports and start-up included, because that
is what a user waits for. Ratios are against the jwst loop. Data: the NIRSpec MOS
cutouts and MIRI MRS real-geometry exposures built by ``atm_step.validation.miri`` from
``$ATM_STEP_TEST_DATA`` (default ``/work/shared/data``). Every runner processes the
same files; jwst's step needs about 1.5 minutes per MRS exposure, so keep ``--mrs``
small.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("STPIPE_DISABLE_CRDS_STEPPARS", "True")

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ATM_STEP_TEST_DATA", REPO.parent / "shared" / "data"))
MOS = sorted((DATA / "nirspec_mos").glob("*_phot.*.fits"))
JWST_STEP = "jwst.adaptive_trace_model.AdaptiveTraceModelStep"
ATM_STEP = "atm_step.step.AdaptiveTraceModelStep"

LOOP = r"""
import json, os, sys, time, importlib
t0 = time.perf_counter()
os.environ["STPIPE_DISABLE_CRDS_STEPPARS"] = "True"
cfg = json.loads(sys.argv[1])
module, name = cfg["step"].rsplit(".", 1)
cls = getattr(importlib.import_module(module), name)
for i, path in enumerate(cfg["files"]):
    result = cls.call(path, oversample=cfg["oversample"], skip=False)
    result.save(os.path.join(cfg["out"], f"{i}_" + os.path.basename(path)))
    result.close()
print(json.dumps({"seconds": time.perf_counter() - t0}))
"""


def make_mrs(n, workdir):
    """Write ``n`` MIRI MRS real-geometry exposures with a point source; return paths."""
    from atm_step.validation.miri import inject_point_source, miri_mrs_model

    model = miri_mrs_model(DATA, workdir)
    paths = []
    for i in range(n):
        inject_point_source(model, alpha0=-1.0 + 0.6 * i, beta0=0.2, nsub=1, seed=i)
        path = Path(workdir) / f"jw0999900100{i + 1}_02101_00001_mirifulong_cal.fits"
        model.meta.filename = path.name
        model.save(str(path))
        paths.append(str(path))
    model.close()
    return paths


def time_loop(step, files, oversample, workdir):
    """Wall time of a fresh-process loop over ``files`` (imports included)."""
    out = tempfile.mkdtemp(dir=workdir, prefix="loop-")
    cfg = json.dumps({"step": step, "files": files, "oversample": oversample, "out": out})
    env = dict(os.environ, NUMBA_NUM_THREADS="1")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", LOOP, cfg], env=env, capture_output=True,
                          text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"loop over {step} failed:\n{proc.stderr[-2000:]}")
    return wall


def time_batch(files, oversample, workers, workdir):
    """Wall time of atm_step.batch.run with a local cluster of ``workers`` processes."""
    from atm_step.batch import run

    out = tempfile.mkdtemp(dir=workdir, prefix=f"batch{workers}-")
    t0 = time.perf_counter()
    report = run(files, output_dir=out, oversample=oversample, workers=workers,
                 progress=False)
    wall = time.perf_counter() - t0
    if not report.ok:
        raise RuntimeError(report.table())
    return wall


def main(argv=None):
    """Run the benchmark and print a table of exposures/minute and ratios."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="3 MOS cutouts only")
    p.add_argument("--mrs", type=int, default=2, help="MRS exposures (default 2)")
    p.add_argument("--no-jwst", action="store_true",
                   help="skip jwst's loop (ratios are then against the atm loop); for "
                        "larger --mrs")
    p.add_argument("--oversample", type=float, default=2.0)
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)
    if not MOS:
        sys.exit(f"no NIRSpec MOS files in {DATA / 'nirspec_mos'}; set ATM_STEP_TEST_DATA")

    with tempfile.TemporaryDirectory(prefix="atm-bench-batch-") as work:
        mrs = [] if args.quick else make_mrs(args.mrs, work)
        files = [*mrs, *map(str, MOS)]
        # warm Numba's on-disk cache once, so no contender pays the compilation
        time_loop(ATM_STEP, [files[0]], args.oversample, work)
        rows = []
        if not args.no_jwst:
            t = time_loop(JWST_STEP, files, args.oversample, work)
            rows.append(("jwst loop (1 process)", len(files), t))
        t = time_loop(ATM_STEP, files, args.oversample, work)
        rows.append(("atm loop (1 process)", len(files), t))
        for n in (1, 2):
            t = time_batch(files, args.oversample, n, work)
            rows.append((f"atm-step run, {n} worker{'s' if n > 1 else ''}", len(files), t))

    base = 60.0 * rows[0][1] / rows[0][2]
    print(f"\n{len(mrs)} MRS + {len(MOS)} MOS exposures, oversample {args.oversample:g}, "
          f"{os.cpu_count()} cores")
    ref = "vs atm loop" if args.no_jwst else "vs jwst"
    print(f"{'runner':32s} {'exposures':>9s} {'wall [s]':>9s} {'exp/min':>8s} {ref:>11s}")
    results = []
    for name, n, t in rows:
        rate = 60.0 * n / t
        print(f"{name:32s} {n:9d} {t:9.1f} {rate:8.2f} {rate / base:10.1f}x")
        results.append({"runner": name, "exposures": n, "seconds": t,
                        "exposures_per_minute": rate, "ratio_vs_first_row": rate / base})
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
