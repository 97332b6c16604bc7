"""pipeline.py, the main job: how a step's outcome is recorded (the whole job runs in make demo
and in the slow suite's demo test)."""

from __future__ import annotations

from fpxint_hw.errors import InputError
from fpxint_hw.pipeline import StepResult, _run_step, _Skip


def _run(fn):
    results, lines = [], []
    res = _run_step("step", fn, results, lines.append)
    assert results == [res] and isinstance(res, StepResult)
    return res, lines


def test_ok_skipped_and_failed_steps_are_recorded_and_the_job_goes_on():
    ok, lines = _run(lambda: ("did it", {"n": 1}))
    assert (ok.status, ok.detail, ok.outputs) == ("ok", "did it", {"n": 1})
    assert lines[0] == "[step] ..." and lines[1].startswith("[step] ok in ")

    def skip():
        raise _Skip("no tool here")
    sk, _ = _run(skip)
    assert (sk.status, sk.detail) == ("skipped", "no tool here")

    def user_error():
        raise InputError("bad file x.npz")
    fe, _ = _run(user_error)
    assert (fe.status, fe.detail) == ("failed", "bad file x.npz") and "trace" in fe.outputs

    def bug():
        raise ZeroDivisionError("division by zero")
    fb, _ = _run(bug)
    assert fb.status == "failed" and fb.detail == "ZeroDivisionError: division by zero"
