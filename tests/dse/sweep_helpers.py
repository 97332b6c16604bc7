"""A stand-in accuracy evaluator for sweep tests (deterministic, optionally slow, logged).

It returns figures derived from the point's formats only, sleeps ``options.options.sleep`` seconds,
and appends one line ``<bits> <terms> <scale>`` to the file named by the environment variable
``FPXINT_TEST_EVAL_LOG`` (when set), so tests can count evaluations across processes.
"""

import os
import time

__all__ = ["evaluate"]


def evaluate(spec, options):
    """Evaluator with the call shape of :func:`fpxint_hw.dse.accuracy.simulate`."""
    time.sleep(float((options.get("options") or {}).get("sleep", 0)))
    b, t, s = spec.w_bits, spec.w_terms, spec.scale
    log = os.environ.get("FPXINT_TEST_EVAL_LOG")
    if log:
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(fd, f"{b} {t} {s}\n".encode())
        os.close(fd)
    return {"accuracy": 1.0 - 0.5 ** (b * t), "top1_agreement": 1.0 - 0.4 ** (b * t),
            "logit_sqnr_db": 5.0 * (b - 1) * t, "weight_sqnr_db": 6.0 * (b - 1) * t + 2.0,
            "float_accuracy": 0.99, "model": "stand-in"}
