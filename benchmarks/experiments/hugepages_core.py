"""Experiment, not part of the package: how much of the core's time on one thread is the
kernel handing out fresh memory, with and without NumPy's transparent-huge-page advice.

Usage::

    python benchmarks/experiments/hugepages_core.py [--baseline DIR] [--rounds 2]
        [--workdir /tmp/atm_hugepages]

NumPy advises the kernel to back large arrays with transparent huge pages
(``madvise(MADV_HUGEPAGE)``); where ``/sys/kernel/mm/transparent_hugepage/defrag`` is
``madvise`` the kernel may compact memory on the page faults of every fresh array.
The core makes about 840 MB of new oversampled images per call on the crowded
2048x2048 scene at N = 3, so that system time can rival the compute. Each run is a
fresh process on one thread (``NUMBA_NUM_THREADS=1``) with
``NUMPY_MADVISE_HUGEPAGE`` set to 1 (NumPy's default) or 0 (NumPy's documented
switch), one warm-up call, then 3 timed calls; printed per call: wall, user and
system CPU seconds and minor page faults. ``--baseline DIR`` also runs another
checkout's ``atm_step`` (e.g. the one ``run_benchmarks.py --baseline`` extracts),
alternating with this tree, each with its own Numba cache.
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

CHILD = r"""
import json, os, resource, sys, time
import numpy as np
import atm_step
from atm_step.core import FitParameters, adaptive_trace_model
s = dict(np.load(sys.argv[1]))
kw = dict(oversample=3.0, fit_threshold=0.0, slope_limit=0.0,
          parameters=FitParameters.nirspec_ifu("NRS1"), maximum_cores=1)
adaptive_trace_model(s["flux"], s["alpha"], s["regions"], err=s["err"], **kw)
calls = []
for _ in range(3):
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    out = adaptive_trace_model(s["flux"], s["alpha"], s["regions"], err=s["err"], **kw)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    calls.append([round(wall, 2), round(r1.ru_utime - r0.ru_utime, 2),
                  round(r1.ru_stime - r0.ru_stime, 2), r1.ru_minflt - r0.ru_minflt])
    del out
print("RESULT " + json.dumps({"module": os.path.dirname(atm_step.__file__), "calls": calls}))
"""


def scene(workdir):
    path = workdir / "crowded_2048.npz"
    if not path.is_file():
        import numpy as np

        from atm_step.simulate import make_scene

        s = make_scene("crowded", nx=2048, ny=2048, seed=1)
        np.savez(path, flux=s.flux, err=s.err, alpha=s.alpha, regions=s.regions)
    return path


def run(code_dir, cache_dir, path, hugepage):
    env = dict(os.environ, PYTHONPATH=str(code_dir), NUMBA_CACHE_DIR=str(cache_dir),
               NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               NUMPY_MADVISE_HUGEPAGE=str(hugepage))
    proc = subprocess.run([sys.executable, "-c", CHILD, str(path)], env=env,
                          capture_output=True, text=True, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"child failed:\n{proc.stderr[-2000:]}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", help="another checkout's root (holding atm_step/)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--workdir", default="/tmp/atm_hugepages")
    args = ap.parse_args(argv)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    path = scene(workdir)
    codes = [("this tree", REPO, workdir / "cache_here")]
    if args.baseline:
        codes.insert(0, ("baseline", Path(args.baseline), workdir / "cache_baseline"))
    defrag = Path("/sys/kernel/mm/transparent_hugepage/defrag")
    print(f"THP defrag: {defrag.read_text().strip() if defrag.is_file() else '?'}")
    print("code | NUMPY_MADVISE_HUGEPAGE | per call: wall s, user s, sys s, minor faults")
    for rnd in range(args.rounds):
        for hugepage in (1, 0):
            for name, code_dir, cache in codes:
                res = run(code_dir, cache, path, hugepage)
                print(f"round {rnd + 1}: {name} ({res['module']}) | {hugepage} | {res['calls']}",
                      flush=True)


if __name__ == "__main__":
    main()
