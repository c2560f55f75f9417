"""The ``stpipe.steps`` entry point: makes ``strun atm``, ``strun atm-step::atm``,
``strun calwebb_spec2_atm``, ``strun calwebb_spec3_atm`` and ``strun calwebb_tso3_atm``
work.

The step is registered under the alias ``atm``, not ``adaptive_trace_model``: jwst
registers that alias for its own step, and a second registration would make
``strun adaptive_trace_model`` ambiguous. (The step's ``class_alias`` is still
``adaptive_trace_model``, so it sets jwst's ``S_TRCMOD`` keyword and answers to
``steps.adaptive_trace_model`` inside pipelines.)
"""

__all__ = ["get_steps"]


def get_steps():
    """
    Step and pipeline classes this package provides, for stpipe's registry.

    Returns
    -------
    list of tuple (str, str, bool)
        Fully qualified class name, alias, and whether the class is a Pipeline.
        Nothing is imported here, to keep ``strun`` start-up fast.
    """
    return [
        ("atm_step.step.AdaptiveTraceModelStep", "atm", False),
        ("atm_step.pipelines.Spec2PipelineATM", "calwebb_spec2_atm", True),
        ("atm_step.pipelines.Spec3PipelineATM", "calwebb_spec3_atm", True),
        ("atm_step.pipelines.Tso3PipelineATM", "calwebb_tso3_atm", True),
    ]
