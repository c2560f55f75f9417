"""NumPy's huge-page advice is off while the core works, restored afterwards, and left
alone when the user chose it with NUMPY_MADVISE_HUGEPAGE (atm_step.core.memory)."""

import threading

import pytest

from atm_step.core import FitParameters, adaptive_trace_model, memory, trace_fit
from atm_step.simulate import make_scene


def _advice():
    """NumPy's current setting, read through its setter without changing it."""
    setter = memory._setter()
    before = setter(True)
    setter(before)
    return bool(before)


@pytest.fixture(autouse=True)
def _no_user_choice(monkeypatch):
    monkeypatch.delenv("NUMPY_MADVISE_HUGEPAGE", raising=False)
    setter = memory._setter()
    start = setter(True)
    yield
    setter(start)


def test_the_advice_is_off_inside_and_restored_after_nesting():
    assert memory._setter() is not None  # this NumPy has the runtime switch
    assert _advice() is True
    with memory.no_huge_page_advice() as switched:
        assert switched and _advice() is False
        with memory.no_huge_page_advice():
            assert _advice() is False
        assert _advice() is False  # the inner exit does not restore it
    assert _advice() is True


def test_threads_leaving_in_any_order_restore_the_setting_once():
    inside = threading.Barrier(2)
    first_out = threading.Event()
    seen = []

    def first():
        with memory.no_huge_page_advice():
            inside.wait()
        seen.append(_advice())  # the other thread is still inside
        first_out.set()

    def second():
        with memory.no_huge_page_advice():
            inside.wait()
            first_out.wait()
    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == [False]
    assert _advice() is True


def test_a_user_choice_is_left_alone(monkeypatch):
    monkeypatch.setenv("NUMPY_MADVISE_HUGEPAGE", "1")
    with memory.no_huge_page_advice() as switched:
        assert not switched and _advice() is True


def _advice_seen_by(monkeypatch, owner, name):
    """Replace ``owner.name`` by a wrapper recording NumPy's advice at each call."""
    seen = []
    original = getattr(owner, name)

    def spying(*args, **kwargs):
        seen.append(_advice())
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, spying)
    return seen


def _scene():
    return make_scene("point_source", nx=120, ny=None, noise=0.01, seed=2)


def test_the_core_runs_without_the_advice(monkeypatch):
    seen = _advice_seen_by(monkeypatch, trace_fit, "fit_regions")
    s = _scene()
    adaptive_trace_model(s.flux, s.alpha, s.regions, err=s.err, oversample=2.0,
                         fit_threshold=0.0, parameters=FitParameters(nknots=12, window=10))
    assert seen and not any(seen)
    assert _advice() is True


def test_the_step_writes_its_output_without_the_advice(monkeypatch):
    from atm_step.modes import writeback
    from atm_step.simulate.to_datamodel import scene_to_ifu_model
    from atm_step.step import AdaptiveTraceModelStep

    seen = _advice_seen_by(monkeypatch, writeback, "apply_result")
    out = AdaptiveTraceModelStep.call(scene_to_ifu_model(_scene()), oversample=2)
    assert seen == [False]
    assert _advice() is True
    assert out.meta.cal_step.adaptive_trace_model == "COMPLETE"
