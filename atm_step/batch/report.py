"""Result objects of a batch run: one row per exposure, and the report that holds them."""

import math
from dataclasses import asdict, dataclass, field

__all__ = ["DONE", "FAILED", "SKIPPED", "BatchReport", "ExposureResult"]

#: Row statuses.
DONE = "done"
SKIPPED = "skipped"
FAILED = "failed"


@dataclass
class ExposureResult:
    """
    What happened to one exposure of a batch.

    Attributes
    ----------
    input : str
        Absolute path of the input file (or the pattern / association member that
        could not be resolved).
    output : str or None
        Absolute path of the output file; None if no output name could be made.
    status : str
        ``'done'`` (processed and written), ``'skipped'`` (a complete output already
        existed) or ``'failed'``.
    regions_fitted, regions_total : int or None
        Regions (IFU slices or slits) with a spline fit, and regions seen. None when
        not known (skipped rows; a step that does not report them).
    model_pixels : int or None
        Pixels of the output taken from the trace model.
    wall_time : float
        Seconds spent on this exposure by its worker (open, step, write).
    error : str or None
        One-line description of the failure, naming the file and the problem.
    traceback : str or None
        Full traceback of an unexpected exception (for ``--verbose`` and bug reports).
    worker : str or None
        Address of the Dask worker that ran the task.
    counts_from : str or None
        Where the counts come from: ``'step'`` (the step's own summary) or
        ``'output'`` (counted in the output: finite ``trace_model`` pixels; regions
        not known).
    warnings : list of str
        WARNING and ERROR messages logged while processing this exposure.
    """

    input: str
    output: str | None
    status: str
    regions_fitted: int | None = None
    regions_total: int | None = None
    model_pixels: int | None = None
    wall_time: float = 0.0
    error: str | None = None
    traceback: str | None = None
    worker: str | None = None
    counts_from: str | None = None
    warnings: list = field(default_factory=list)

    @property
    def ok(self):
        """bool: True unless the exposure failed."""
        return self.status != FAILED

    def as_dict(self):
        """Return the row as a plain dict (for JSON or pandas)."""
        return asdict(self)


@dataclass
class BatchReport:
    """
    The outcome of :func:`atm_step.batch.run`: one :class:`ExposureResult` per exposure.

    Rows are in input order. Iterating over the report yields the rows.

    Attributes
    ----------
    rows : list of ExposureResult
    elapsed : float
        Wall time of the whole batch in seconds, cluster start-up included.
    n_workers : int
        Number of Dask workers that were available (0 if nothing needed computing).
    scheduler : str or None
        Address of the scheduler used.
    """

    rows: list
    elapsed: float = 0.0
    n_workers: int = 0
    scheduler: str | None = None

    def __iter__(self):
        return iter(self.rows)

    def __len__(self):
        return len(self.rows)

    def _count(self, status):
        return sum(1 for r in self.rows if r.status == status)

    @property
    def n_done(self):
        """int: exposures processed in this run."""
        return self._count(DONE)

    @property
    def n_skipped(self):
        """int: exposures whose output was already complete."""
        return self._count(SKIPPED)

    @property
    def n_failed(self):
        """int: exposures that failed."""
        return self._count(FAILED)

    @property
    def failed(self):
        """list of ExposureResult: the failed rows."""
        return [r for r in self.rows if r.status == FAILED]

    @property
    def ok(self):
        """bool: True if no exposure failed."""
        return self.n_failed == 0

    @property
    def exit_status(self):
        """int: 0 if every exposure is done or skipped, 1 otherwise."""
        return 0 if self.ok else 1

    @property
    def throughput(self):
        """float: exposures processed per minute of batch wall time (0 if none)."""
        if self.n_done == 0 or self.elapsed <= 0:
            return 0.0
        return 60.0 * self.n_done / self.elapsed

    def table(self, *, width=None):
        """
        Format the rows as a plain-text table, followed by one line per failure.

        Parameters
        ----------
        width : int or None
            Truncate the input column to this many characters (None: no limit).

        Returns
        -------
        str
        """
        head = ("exposure", "status", "regions fitted", "model pixels", "time [s]", "output")
        lines = []
        for r in self.rows:
            name = _basename(r.input)
            if width and len(name) > width:
                name = "..." + name[-(width - 3):]
            if r.regions_fitted is None:
                regions = "-"
            elif r.regions_total is None:
                regions = str(r.regions_fitted)
            else:
                regions = f"{r.regions_fitted}/{r.regions_total}"
            pixels = "-" if r.model_pixels is None else str(r.model_pixels)
            wall = "-" if r.status == SKIPPED else f"{r.wall_time:.1f}"
            output = r.output if r.output and r.status != FAILED else "-"
            lines.append((name, r.status, regions, pixels, wall, output))
        widths = [max(len(h), *(len(row[i]) for row in lines)) if lines else len(h)
                  for i, h in enumerate(head)]
        right = {2, 3, 4}

        def fmt(row):
            cells = [c.rjust(w) if i in right else c.ljust(w)
                     for i, (c, w) in enumerate(zip(row, widths))]
            return "  ".join(cells).rstrip()

        out = [fmt(head), fmt(["-" * w for w in widths])]
        out += [fmt(row) for row in lines]
        rate = self.throughput
        out.append(
            f"{len(self.rows)} exposures: {self.n_done} done, {self.n_skipped} skipped, "
            f"{self.n_failed} failed in {self.elapsed:.1f} s"
            + (f" ({rate:.1f} exposures/min on {self.n_workers} workers)"
               if rate and not math.isnan(rate) else "")
        )
        for r in self.failed:
            out.append(f"FAILED {r.error}")
        return "\n".join(out)


def _basename(path):
    return str(path).rstrip("/").rsplit("/", 1)[-1]
