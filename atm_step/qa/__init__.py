"""QA pictures for Adaptive Trace Modeling runs (needs the ``qa`` extra: matplotlib).

- :func:`atm_step.qa.plots.profile_figure`: normalised along-slice profile of chosen
  columns with the neighbouring-column samples and the spline fit (paper Figure 3);
- :func:`atm_step.qa.plots.model_map_figure`: where the spline model was used;
- :func:`atm_step.qa.plots.spectra_figure`: brightest-spaxel spectra before/after and
  their ratio to the aperture spectrum (paper Figure 6);
- :mod:`atm_step.qa.cli`: the ``atm-step qa`` command.

matplotlib is imported only when a figure is drawn; without it a clear ImportError
says ``pip install atm-step[qa]``.
"""

__all__ = ["require_matplotlib"]


def require_matplotlib():
    """
    Import matplotlib with the non-interactive Agg backend.

    Returns
    -------
    module
        ``matplotlib.pyplot``.

    Raises
    ------
    ImportError
        If matplotlib is not installed, with the install hint ``pip install atm-step[qa]``.
    """
    try:
        import matplotlib
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "atm-step QA pictures need matplotlib: pip install atm-step[qa]"
        ) from exc
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt
