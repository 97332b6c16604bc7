"""One thread's share of a conv/linear layer on the VNNI kernel, in one Numba call.

A layer runs in chunks of output rows (:mod:`fpxint_hw.intsim.executor`): im2col, the GEMMs,
then the kernel that sums the products and requantizes. Driven from Python, each of those
steps takes the GIL back, and two threads that both want it wait for each other's wake-up
(about 30 us on a virtual machine) several times per chunk. :func:`run_share` does a
thread's whole share of chunks without the GIL, with the same kernels in the same order, so
the integers are the same; the profiled run (``Simulator(profile=True)``) keeps the Python
loop, which can time each phase.

A residual Add that reads the layer's output (and nothing else does) can run in the same
call (``res``): each chunk's requantized rows go to a scratch buffer and the Add's kernel
joins them with the residual's rows while they are in the cache, so the Add needs no pass
over the tensors of its own. The integers are those of the two layers run one after the
other.
"""

from __future__ import annotations

import numba

from . import kernels
from .vnni import gemm_packed

__all__ = ["run_share", "COMBINE_CODES"]

#: The combining kernel of each name (:func:`fpxint_hw.intsim.widths.combine_kernel`; "acc":
#: no requantization, the int64 accumulators).
COMBINE_CODES = {"acc": 0, "i32": 1, "p32": 2, "i64": 3}


@numba.njit(nogil=True, cache=True)
def _combine(combine, sums, t_buf, t_col, t_coef, bias, mult, pre, shift, lo, hi, zp,
             half_up, dst):
    """The combining kernel ``combine`` (:data:`COMBINE_CODES`) on one chunk's products."""
    if combine == 0:
        kernels.combine_acc_serial(sums, t_buf, t_col, t_coef, bias, dst)
    elif combine == 1:
        kernels.combine_requant_i32_serial(sums, t_buf, t_col, t_coef, bias, mult, shift, lo,
                                           hi, zp, half_up, dst)
    elif combine == 2:
        kernels.combine_requant_p32_serial(sums, t_buf, t_col, t_coef, bias, mult, shift, lo,
                                           hi, zp, half_up, dst)
    else:
        kernels.combine_requant_serial(sums, t_buf, t_col, t_coef, bias, mult, pre, shift, lo,
                                       hi, zp, half_up, dst)


@numba.njit(nogil=True, cache=True)
def run_share(flat, direct, c, top, left, fill, ho, wo, kh, kw, sh, sw, dh, dw, first, last,
              step, m_rows, packed, steps, sums, combine, t_buf, t_col, t_coef, bias, mult,
              pre, shift, lo, hi, zp, half_up, buf, out, res, scratch, add, wake, wake_value):
    """Chunks ``first .. last - 1`` (``step`` output rows each, of ``m_rows``) of an
    ungrouped layer into ``out``: im2col of the operands ``flat`` (``(A, N, H, W * c)``, or
    with ``direct`` -- a 1x1 stride-1 unpadded layer -- ``(A, 1, M, c)``, whose rows are the
    GEMM rows themselves) into ``buf`` (``(A, step, row width)`` uint8), one VNNI GEMM per
    operand (``packed[a]``, ``steps`` reduction steps) into ``sums[a]`` (``(step, padded
    columns)`` int32), then the combining kernel ``combine`` (:data:`COMBINE_CODES`). The
    other arguments up to ``half_up`` are those of
    :func:`fpxint_hw.intsim.kernels.im2col_rows` and of the combining kernels.

    With a residual ``res`` (``(m_rows, O)``; 0 rows: none) the layer's rows go to
    ``scratch`` (``(step, O)``) and ``out`` receives the residual Add of them (first) and
    ``res`` (second): ``add`` = ``(m_layer, m_res, offset, shift, lo, hi, zero point,
    half_up)``, the arguments of :func:`fpxint_hw.intsim.kernels.add_requant`.

    ``wake[1:] = wake_value`` comes first, with the GIL released: it starts the pool's other
    threads (:meth:`fpxint_hw.intsim.pool.WorkerPool.run`; a one-element ``wake``: none)."""
    wake[1:] = wake_value
    n_ops = flat.shape[0]
    k_len = kh * kw * c
    fused = res.shape[0] > 0
    for chunk in range(first, last):
        r0 = chunk * step
        rows = min(step, m_rows - r0)
        if not direct:
            kernels.im2col_rows_serial(flat, c, top, left, fill, ho, wo, kh, kw, sh, sw, dh,
                                       dw, 0, r0, buf[:, :rows, :k_len])
        for a in range(n_ops):
            src = flat[a, 0, r0:r0 + rows] if direct else buf[a, :rows]
            gemm_packed(src, packed[a], steps, sums[a][:rows])
        # the combiners read rows < len(dst)
        if fused:
            dst = scratch[:rows]
            _combine(combine, sums, t_buf, t_col, t_coef, bias, mult, pre, shift, lo, hi, zp,
                     half_up, dst)
            kernels.add_requant_serial(dst.reshape(-1), res[r0:r0 + rows].reshape(-1),
                                       add[0], add[1], add[2], add[3], add[4], add[5],
                                       add[6], add[7] != 0, out[r0:r0 + rows].reshape(-1))
        else:
            _combine(combine, sums, t_buf, t_col, t_coef, bias, mult, pre, shift, lo, hi, zp,
                     half_up, out[r0:r0 + rows])
