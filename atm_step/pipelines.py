"""jwst's Spec2, Spec3 and Tso3 pipelines with atm-step in the ``adaptive_trace_model`` slot.

Registered as ``calwebb_spec2_atm``, ``calwebb_spec3_atm`` and ``calwebb_tso3_atm``. As
in jwst, the slot is skipped by default inside the pipelines; switch it on with
``--steps.adaptive_trace_model.skip=false``::

    strun calwebb_spec3_atm asn.json --steps.adaptive_trace_model.skip=false \\
        --steps.adaptive_trace_model.oversample=3
"""

from jwst.pipeline import Spec2Pipeline, Spec3Pipeline, Tso3Pipeline

from atm_step.step import AdaptiveTraceModelStep, accept_jwst_parameter_class

# Output names inside the pipelines are jwst's: with
# ``--steps.adaptive_trace_model.save_results=true`` the step's product is
# ``<root>_adaptive_trace_model.fits`` (Spec2) or ``<root>_<asn id>_adaptive_trace_model.fits``
# (Spec3, Tso3; stpipe's naming for a step of a pipeline run on an association).

__all__ = [
    "PipelineAdaptiveTraceModelStep",
    "Spec2PipelineATM",
    "Spec3PipelineATM",
    "Tso3PipelineATM",
]


class PipelineAdaptiveTraceModelStep(AdaptiveTraceModelStep):
    """`AdaptiveTraceModelStep` skipped by default, as jwst's step is inside pipelines."""

    spec = AdaptiveTraceModelStep.spec.replace(
        "skip = boolean(default=False)", "skip = boolean(default=True)"
    )


class Spec2PipelineATM(Spec2Pipeline):
    """jwst's `~jwst.pipeline.Spec2Pipeline` using atm-step for adaptive trace modelling."""

    class_alias = "calwebb_spec2_atm"
    #: atm-step's loggers are configured too, so the step's per-exposure summary shows
    get_stpipe_loggers = staticmethod(AdaptiveTraceModelStep.get_stpipe_loggers)
    step_defs = {**Spec2Pipeline.step_defs, "adaptive_trace_model": PipelineAdaptiveTraceModelStep}

    @classmethod
    def _parse_class_and_name(cls, config, parent=None, name=None, config_file=None):
        # accept parameter files exported from jwst's Spec2Pipeline (stpipe hook)
        accept_jwst_parameter_class(
            cls,
            config,
            ("jwst.pipeline.calwebb_spec2.Spec2Pipeline", "jwst.pipeline.Spec2Pipeline",
             "calwebb_spec2"),
        )
        return super()._parse_class_and_name(
            config, parent=parent, name=name, config_file=config_file
        )


class Spec3PipelineATM(Spec3Pipeline):
    """jwst's `~jwst.pipeline.Spec3Pipeline` using atm-step for adaptive trace modelling."""

    class_alias = "calwebb_spec3_atm"
    #: atm-step's loggers are configured too, so the step's per-exposure summary shows
    get_stpipe_loggers = staticmethod(AdaptiveTraceModelStep.get_stpipe_loggers)
    step_defs = {**Spec3Pipeline.step_defs, "adaptive_trace_model": PipelineAdaptiveTraceModelStep}

    @classmethod
    def _parse_class_and_name(cls, config, parent=None, name=None, config_file=None):
        # accept parameter files exported from jwst's Spec3Pipeline (stpipe hook)
        accept_jwst_parameter_class(
            cls,
            config,
            ("jwst.pipeline.calwebb_spec3.Spec3Pipeline", "jwst.pipeline.Spec3Pipeline",
             "calwebb_spec3"),
        )
        return super()._parse_class_and_name(
            config, parent=parent, name=name, config_file=config_file
        )


class Tso3PipelineATM(Tso3Pipeline):
    """
    jwst's `~jwst.pipeline.Tso3Pipeline` using atm-step for adaptive trace modelling.

    jwst 3.0's tso3 runs the step on each multi-integration exposure before
    ``pixel_replace`` and ``extract_1d``; only ``oversample = 1`` (a trace model fitted
    to the median image) is possible there, as in jwst.
    """

    class_alias = "calwebb_tso3_atm"
    #: atm-step's loggers are configured too, so the step's per-exposure summary shows
    get_stpipe_loggers = staticmethod(AdaptiveTraceModelStep.get_stpipe_loggers)
    step_defs = {**Tso3Pipeline.step_defs, "adaptive_trace_model": PipelineAdaptiveTraceModelStep}

    @classmethod
    def _parse_class_and_name(cls, config, parent=None, name=None, config_file=None):
        # accept parameter files exported from jwst's Tso3Pipeline (stpipe hook)
        accept_jwst_parameter_class(
            cls,
            config,
            ("jwst.pipeline.calwebb_tso3.Tso3Pipeline", "jwst.pipeline.Tso3Pipeline",
             "calwebb_tso3"),
        )
        return super()._parse_class_and_name(
            config, parent=parent, name=name, config_file=config_file
        )
