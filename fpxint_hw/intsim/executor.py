"""The fast bit-exact executor of an integer program (:class:`fpxint_hw.quant.QProgram`).

Tensors are channels-last inside, each in the narrowest integer dtype that holds its static
range (:func:`storage_dtype`: uint8 for a 0..255 tensor, a quarter of int32's memory
traffic); the program's output and captured tensors come out as int32 (int64 for an exact
accumulator).

A conv/linear layer splits its weight terms and its activation terms into *lane groups*
(consecutive terms combined exactly into one wider integer) according to the path, and
computes every (weight group, activation group) pair product with the plan that the width
analysis proves exact on the fastest backend (:mod:`fpxint_hw.intsim.planes`): on the int8
GEMM each group is cut into planes that fit it, so a format needing ``P_w x P_a`` int8 GEMMs
runs that many. The layer runs in chunks of output rows (operands and im2col, the GEMMs, then
one kernel that sums the products scaled by the group weights and requantizes), shared among
the simulator's threads (:mod:`fpxint_hw.intsim.pool`):

* ``path="combined"`` (default): every term combined, one weight and one activation group
  (e.g. W4x2 ``|w| <= 63`` and unsigned A4x2 ``0..255`` are one int8 GEMM; W4x3/A4x3 is
  three, by Karatsuba on 6-bit planes);
* ``path="lanes"``: every term alone, T_w x T_a pairs (the per-lane datapath);
* ``path="model"``: every weight term alone against the combined activation (the T_w basis
  models side by side, summed layer by layer).

All paths give identical integers (the lane sum is exact), for any thread count and any order
of the lane pairs (``lane_order``). The static width analysis runs first and refuses programs
whose accumulators could overflow.

A conv pads its input with the input's zero point (real 0; the bias carries ``-z sum w``),
each activation group with its own part of it, each operand with its plane of that.
"""

from __future__ import annotations

import time

import numba
import numpy as np

from ..errors import FormatError, InputError
from ..float_exec import to_nchw, to_nhwc
from ..intops import round_shift
from ..quant import program as P
from . import kernels
from .gemm import OrtMatMul, gemm_int, plan_layer
from .planes import INT8_BACKENDS
from .vnni import ROWS, VnniMatMul
from .pool import shared_pool
from .share import COMBINE_CODES, run_share
from .profile import PhaseTimes, no_tick
from .widths import WidthConfig, accumulator_bounds, analyze_widths, combine_kernel

__all__ = ["Simulator", "PATHS", "storage_dtype", "to_nchw", "to_nhwc", "isqrt_int64",
           "round_div_rows"]

#: Lane-grouping paths.
PATHS = ("combined", "lanes", "model")

_DTYPE = {"vnni": np.uint8, "ort": np.uint8, "f32": np.float32, "f64": np.float64,
          "int": np.int32}

_KERNELS = ("im2col_rows", "combine_requant", "combine_requant_i32", "combine_requant_p32",
            "combine_acc")
_PARALLEL = {name: getattr(kernels, name) for name in _KERNELS}
_SERIAL = {name: getattr(kernels, name + "_serial") for name in _KERNELS}

#: Bytes of activation operands (or of GEMM results) per chunk of output rows: a layer runs
#: chunk by chunk (im2col, GEMMs, requantization) so that its working set stays in the caches.
_CHUNK_BYTES = 1 << 19

#: ``run_share``'s flags when it starts no other thread, and its residual rows and Add
#: arguments when it runs no Add.
_NO_WAKE = np.zeros(1, dtype=np.int64)
_NO_RESIDUAL = np.zeros((0, 1), dtype=np.uint8)
_NO_ADD = np.zeros(8, dtype=np.int64)

_STORAGE = (np.uint8, np.int8, np.uint16, np.int16, np.int32)


def _chunk_rows(m_rows: int, most: int, threads: int) -> int:
    """Rows per chunk of an ``m_rows`` layer: at most ``most`` (the cache budget), the
    chunks a multiple of ``threads`` in number (equal shares), each a multiple of the VNNI
    kernel's row block where that keeps them within budget."""
    shares = -(-m_rows // most)
    shares = -(-shares // threads) * threads
    step = -(-m_rows // shares)
    whole = -(-step // ROWS) * ROWS
    return whole if whole <= most else step


def storage_dtype(lo: int, hi: int):
    """The narrowest integer dtype (of uint8, int8, uint16, int16, int32) holding [lo, hi]."""
    for dt in _STORAGE:
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return dt
    return np.int64


def _wide(x: np.ndarray) -> np.ndarray:
    """``x`` as int32 when it is stored narrower (int64 stays)."""
    return x if x.dtype in (np.int32, np.int64) else x.astype(np.int32)


def _group_range(fmt, terms):
    last = fmt.lane_weights[terms[-1]]
    span = sum(fmt.lane_weights[i] // last for i in terms)
    return fmt.qmin * span, fmt.qmax * span


class _ConvPlan:
    """A conv/linear layer prepared for one path and backend."""

    def __init__(self, q, xin, path: str, backend: str, threads: int, int8=None, pool=None):
        self.q, self.xin = q, xin
        self.pool = pool
        self.linear = isinstance(q, P.Linear)
        digits = q.w_digits.astype(np.int64)
        t_w, o = digits.shape[:2]
        a_fmt, w_fmt = xin.fmt, q.w_fmt
        self.mask = q.lanes_on(a_fmt.terms)
        if not self.mask.all():
            path = "lanes"                  # a switched-off lane: every pair on its own
        self.groups = 1 if self.linear else q.groups
        self.depthwise = not self.linear and q.depthwise
        self.w_groups = ([[k] for k in range(t_w)] if path in ("lanes", "model")
                         else [list(range(t_w))])
        self.a_groups = ([[j] for j in range(a_fmt.terms)] if path == "lanes"
                         else [list(range(a_fmt.terms))])
        self.w_weights = [w_fmt.lane_weights[g[-1]] for g in self.w_groups]
        self.a_weights = [a_fmt.lane_weights[g[-1]] for g in self.a_groups]
        self.a_ranges = [(xin.lo, xin.hi) if len(g) == a_fmt.terms else _group_range(a_fmt, g)
                         for g in self.a_groups]
        wvals = [sum(np.int64(w_fmt.lane_weights[k] // last) * digits[k] for k in g)
                 for g, last in zip(self.w_groups, self.w_weights)]
        self.o, self.o_g = o, o // self.groups
        # what a padded tap holds in each activation group: its part of the zero point
        z = np.array([xin.zero_point], dtype=np.int32)
        self.pads = [int(v[0]) for v in self._group_values(z)]
        self.mult = None if q.requant is None else q.requant.multiplier.astype(np.int64)
        self._tables = {}
        if self.depthwise:
            self.backend, self.plan = "int", None
            self.dw = [np.ascontiguousarray(v[:, 0].transpose(1, 2, 0)).astype(np.int32)
                       for v in wvals]
            return
        mats = [v.T if self.linear else v.transpose(2, 3, 1, 0).reshape(-1, o) for v in wvals]
        pairs = self.pair_keys()
        self.plan = plan_layer(
            backend, self.a_ranges, mats, pairs, k=q.reduction, what=f"layer {q.name!r}",
            layer=q.name, int8=int8,
            pair_weights=[self.w_weights[gw] * self.a_weights[ga] for gw, ga in pairs],
            bias_max=int(np.abs(q.bias).max()) if q.bias.size else 0)
        self.backend = self.plan.backend
        plan = self.plan
        self.dtype = _DTYPE[self.backend]
        self._operand_table(plan.acts)
        # per activation operand: the weight operands it meets, side by side in one GEMM
        self.calls = [[p.weight for p in plan.products if p.act == ai]
                      for ai in range(len(plan.acts))]
        self.gemms = []
        for ai, wis in enumerate(self.calls):
            per_cg = []
            for cgi in range(self.groups):
                cols = slice(cgi * self.o_g, (cgi + 1) * self.o_g)
                m = np.ascontiguousarray(np.concatenate(
                    [plan.weights[wi].values[:, cols] for wi in wis], axis=1))
                if self.backend == "vnni":           # one thread per call, like ort's:
                    per_cg.append(VnniMatMul(m))     # the pool's threads share the rows
                elif self.backend == "ort":
                    per_cg.append(OrtMatMul(m, 0, 1 if pool else threads,
                                            unsigned=plan.kernel == "u8u8"))
                else:
                    per_cg.append(m.astype(np.int64 if self.backend == "int" else self.dtype))
            self.gemms.append(per_cg)
        plan.weights = [w.without_values() for w in plan.weights]   # the backend holds them
        bias = q.bias.astype(np.int64).copy()
        for (gw, ga), corr in zip(plan.pairs, plan.corrections):
            if corr is not None:
                bias += np.int64(self.w_weights[gw] * self.a_weights[ga]) * corr
        self.bias = bias
        # the combining kernel (share.COMBINE_CODES): "acc" keeps the int64 accumulators
        self.combine, self.combine_rows = ("acc" if q.requant is None else "i64"), []
        if self.backend in INT8_BACKENDS and q.requant is not None:
            coef = max(abs(p.coef) * self.w_weights[plan.pairs[p.pair][0]]
                       * self.a_weights[plan.pairs[p.pair][1]] for p in plan.products)
            self.combine, self.combine_rows = combine_kernel(
                q.name, plan.sum_bound, coef, max(accumulator_bounds(q, xin)),
                bool(q.requant.pre_shift.any()))

    def _operand_table(self, acts) -> None:
        """The arguments of :func:`kernels.im2col_operands` for the plan's operands."""
        n = len(acts)
        self.op_group = np.array([a.group for a in acts], dtype=np.int64)
        self.op_offset = np.array([a.offset for a in acts], dtype=np.int64)
        self.op_shift = np.zeros((n, 2), dtype=np.int64)
        self.op_mask = np.zeros((n, 2), dtype=np.int64)           # 0: an unused part
        for ai, a in enumerate(acts):
            if len(a.parts) > 2 or any(coef != 1 for _, _, coef in a.parts):
                raise ValueError(f"layer {self.q.name!r}: operand parts {a.parts} are not "
                                 f"one or two planes")
            for pi, (shift, bits, _) in enumerate(a.parts):
                self.op_shift[ai, pi] = shift
                self.op_mask[ai, pi] = (1 << bits) - 1 if bits else 0xFFFFFFFF
        self.op_fill = np.array([int(a.value(self.pads[a.group])) for a in acts],
                                dtype=np.int64)
        self.fill = self.op_fill.astype(self.dtype)        # what im2col writes at a pad
        # one operand that is the group's integers themselves (no offset, no planes)
        self.identity = n == 1 and acts[0].offset == 0 and acts[0].parts == ((0, 0, 1),)

    # -- running --------------------------------------------------------------------------

    def _group_values(self, x: np.ndarray) -> np.ndarray:
        """The activation group tensors ``(G, *x.shape)`` (int32; ``x[None]`` for one group
        of every term)."""
        fmt = self.xin.fmt
        if len(self.a_groups) == 1 and len(self.a_groups[0]) == fmt.terms:
            return np.ascontiguousarray(x)[None]
        group_of = np.zeros(fmt.terms, dtype=np.int64)
        for g, terms in enumerate(self.a_groups):
            group_of[terms] = g
        out = np.empty((len(self.a_groups), x.size), dtype=np.int32)
        kernels.split_groups(np.ascontiguousarray(x).reshape(-1),
                             np.array(fmt.lane_weights, dtype=np.int64), fmt.qmin, fmt.qmax,
                             fmt.signed, group_of, np.array(self.a_weights, dtype=np.int64), out)
        return out.reshape((len(self.a_groups),) + x.shape)

    def im2col(self, a: np.ndarray, dtype, cgi: int, pad: int) -> np.ndarray:
        """im2col of NHWC ``a`` for conv group ``cgi``: ``(N*Ho*Wo, kh*kw*C_g)`` in (kh, kw,
        C) order, as ``dtype``; a padded tap holds ``pad``. A linear layer's ``(N, F)`` input
        is its own matrix."""
        if self.linear:
            return a.astype(dtype, copy=False)
        q = self.q
        n, h, w, c = a.shape
        cg = c // self.groups
        if self.groups > 1:
            a = a[..., cgi * cg:(cgi + 1) * cg]
        kh, kw = q.kernel
        sh, sw = q.stride
        dh, dw = q.dilation
        pt, pl, pb, pr = q.padding
        ho, wo = q.out_hw(h, w)
        src = a.astype(dtype, copy=False)
        if (kh, kw, sh, sw) == (1, 1, 1, 1) and not (pt or pl or pb or pr):
            return np.ascontiguousarray(src).reshape(n * h * w, cg)
        if pt or pl or pb or pr:
            xp = np.full((n, h + pt + pb, w + pl + pr, cg), pad, dtype=dtype)
            xp[:, pt:pt + h, pl:pl + w] = src
        else:
            xp = src
        cols = np.empty((n, ho, wo, kh, kw, cg), dtype=dtype)
        for i in range(kh):
            for j in range(kw):
                cols[:, :, :, i, j, :] = xp[:, i * dh:i * dh + sh * (ho - 1) + 1:sh,
                                            j * dw:j * dw + sw * (wo - 1) + 1:sw]
        return cols.reshape(n * ho * wo, kh * kw * cg)

    def _out_hw(self, x):
        if self.linear:
            return ()
        return self.q.out_hw(x.shape[1], x.shape[2])

    def _table(self, order):
        """``(t_buf, t_col, t_coef)`` of the plan's products, their pairs in ``order``."""
        key = tuple(order)
        if key not in self._tables:
            plan = self.plan
            rank = {pair: i for i, pair in enumerate(key)}
            prods = sorted((p for p in plan.products if plan.pairs[p.pair] in rank),
                           key=lambda p: rank[plan.pairs[p.pair]])
            t_buf, t_col, t_coef = [], [], []
            for p in prods:
                gw, ga = plan.pairs[p.pair]
                t_buf.append(p.act)
                t_col.append(self.calls[p.act].index(p.weight) * self.o_g)
                t_coef.append(p.coef * self.w_weights[gw] * self.a_weights[ga])
            self._tables[key] = tuple(np.array(v, dtype=np.int64)
                                      for v in (t_buf, t_col, t_coef))
        return self._tables[key]

    def _depthwise(self, x: np.ndarray, order, tick) -> np.ndarray:
        q = self.q
        t = time.perf_counter()
        groups = self._group_values(x)
        t = tick(q.name, "split", t)
        n = x.shape[0]
        ho, wo = self._out_hw(x)
        sh, sw = q.stride
        dh, dw = q.dilation
        pt, pl, pb, pr = q.padding
        acc = np.zeros((n * ho * wo, self.o), dtype=np.int64)
        r = np.empty((n, ho, wo, self.o), dtype=np.int64)
        for gw, ga in order:
            a = np.ascontiguousarray(groups[ga], dtype=np.int32)
            top, left = pt, pl
            if self.pads[ga] and (pt or pl or pb or pr):
                # the kernel skips padded taps (zero padding): pad with the zero point here
                a = np.pad(a, ((0, 0), (pt, pb), (pl, pr), (0, 0)),
                           constant_values=self.pads[ga])
                top = left = 0
            kernels.depthwise_nhwc(a, self.dw[gw], sh, sw, dh, dw, top, left, r)
            acc += np.int64(self.w_weights[gw] * self.a_weights[ga]) * r.reshape(acc.shape)
        t = tick(q.name, "gemm", t)
        out = self._finish(acc, x, np.ascontiguousarray(q.bias, dtype=np.int64))
        tick(q.name, "requant", t)
        return out

    def _finish(self, acc, x, bias):
        """``acc`` (int64 ``(M, O)``) plus ``bias``, requantized."""
        q = self.q
        shape = (x.shape[0],) + self._out_hw(x) + (self.o,)
        if q.requant is None:
            return (acc + bias[None, :]).reshape(shape)
        rq = q.requant
        out = np.empty(acc.shape, dtype=storage_dtype(rq.lo, rq.hi))
        kernels.requant_rows(acc, bias, self.mult, rq.shift, rq.lo, rq.hi, rq.zero_point,
                             rq.mode == "half_up", out, rq.pre_shift)
        return out.reshape(shape)

    def _geometry(self, x):
        """``((ho, wo), kernel, stride, dilation, (top, left) padding)`` of the layer on ``x``
        (a linear layer is a 1x1 convolution of a 1x1 image)."""
        if self.linear:
            return (1, 1), (1, 1), (1, 1), (1, 1), (0, 0)
        q = self.q
        return q.out_hw(x.shape[1], x.shape[2]), q.kernel, q.stride, q.dilation, q.padding[:2]

    def _operand_planes(self, vals: np.ndarray) -> tuple[np.ndarray, bool]:
        """The plan's activation operands of the group values ``vals`` ``(G, N, H, W, C)``:
        ``(A, N, Hp, Wp, C)`` padded for the convolution, and True; or, where the stored
        integers are the one operand, ``vals`` itself unpadded (the im2col pads), and
        False."""
        pt, pl, pb, pr = (0, 0, 0, 0) if self.linear else self.q.padding
        _, n, h, w, c = vals.shape
        acts = self.plan.acts
        if self.identity and vals.dtype == self.dtype:
            return vals, not (pt or pl or pb or pr)
        out = np.empty((len(acts), n, h + pt + pb, w + pl + pr, c), dtype=self.dtype)
        if self.backend in INT8_BACKENDS:
            kernels.split_planes(vals, self.op_group, self.op_offset, self.op_shift,
                                 self.op_mask, self.op_fill, pt, pl, out)
            return out, True
        for ai, a in enumerate(acts):                       # raw: the values themselves
            out[ai] = self.op_fill[ai]
            out[ai, :, pt:pt + h, pl:pl + w] = vals[a.group]
        return out, True

    @property
    def fuses_add(self) -> bool:
        """Whether a residual Add after the layer can run in its shares
        (:func:`~fpxint_hw.intsim.share.run_share`; the unprofiled VNNI path)."""
        return self.backend == "vnni" and self.groups == 1

    def __call__(self, x: np.ndarray, order=None, tick=no_tick, add=None) -> np.ndarray:
        """The layer on ``x`` (channels-last integers), with the pair order ``order``; with
        ``add = (Add layer, its other input, True if the layer is the Add's first input)``
        (:attr:`fuses_add`, unprofiled) the Add's output instead."""
        order = self.pair_keys() if order is None else order
        if self.depthwise:
            return self._depthwise(x, order, tick)
        q, name = self.q, self.q.name
        t = time.perf_counter()
        vals = self._group_values(x)
        if self.linear:
            vals = vals.reshape(vals.shape[:2] + (1, 1, vals.shape[-1]))
        planes, padded = self._operand_planes(vals)
        t = tick(name, "split", t)
        (ho, wo), (kh, kw), (sh, sw), (dh, dw), (top, left) = self._geometry(x)
        if padded:
            top = left = 0
        n_ops, n, hp, wp, c = planes.shape
        cg = c // self.groups
        k_len = kh * kw * cg
        m_rows = n * ho * wo
        direct = (kh, kw, sh, sw, hp, wp) == (1, 1, 1, 1, ho, wo) and self.groups == 1
        # a 1x1 stride-1 layer's GEMM rows are the operands themselves: (A, 1, M, c)
        flat = planes.reshape(n_ops, 1, m_rows, c) if direct else \
            planes.reshape(n_ops, n, hp, wp * c)
        row_bytes = max(n_ops * k_len * planes.itemsize,
                        sum(len(w) for w in self.calls) * self.o_g * 4)   # operands, results
        pooled = self.pool is not None and self.backend in INT8_BACKENDS
        step = _chunk_rows(m_rows, max(1, _CHUNK_BYTES // row_bytes),
                           self.pool.threads if pooled else 1)
        t_buf, t_col, t_coef = self._table(order)
        # im2col rows as wide as the GEMM reads them (the VNNI kernel: whole 4-byte steps)
        k_row = self.gemms[0][0].width if self.backend == "vnni" else k_len
        rq = q.requant
        out = np.empty((m_rows, self.o),
                       dtype=np.int64 if rq is None else storage_dtype(rq.lo, rq.hi))
        chunks = [(r0, min(step, m_rows - r0)) for r0 in range(0, m_rows, step)]
        out_shape = (n,) + self._out_hw(x) + (self.o,)
        if self.fuses_add and tick is no_tick:
            # unprofiled: each thread's share in one GIL-free call (same kernels, same order)
            res, final, add_args = self._residual(add, out)
            share = self._share_args(flat, direct, c, top, left, ho, wo, (kh, kw, sh, sw, dh,
                                                                         dw), step, m_rows,
                                     t_buf, t_col, t_coef, final)

            def work(first: int, last: int, wake=None) -> None:
                buf = np.empty((0 if direct else n_ops, step, k_row), dtype=np.uint8)
                sums = tuple(np.empty((step, g[0].cols), dtype=np.int32) for g in self.gemms)
                scratch = np.empty((step if len(res) else 0, self.o), dtype=out.dtype)
                run_share(*share(first, last, sums, buf), res, scratch, add_args,
                          *(wake or (_NO_WAKE, 0)))

            if pooled:
                self.pool.run(work, len(chunks), wake=True)
            else:
                work(0, len(chunks))
            return final.reshape(out_shape)
        if add is not None:
            raise ValueError(f"{name}: a residual Add runs in the layer only on its "
                             f"unprofiled VNNI path")

        def work(first: int, last: int) -> dict:
            """Chunks ``first .. last - 1``: im2col, GEMMs, sums; returns phase seconds."""
            sec = {"im2col": 0.0, "gemm": 0.0, "requant": 0.0}
            k = _SERIAL if pooled else _PARALLEL
            t0 = time.perf_counter()
            buf = None if direct else np.empty((n_ops, step * k_row), dtype=self.dtype)
            for r0, rows in chunks[first:last]:
                for cgi in range(self.groups):
                    if direct:
                        ops = flat[:, 0, r0:r0 + rows]
                    else:                            # one buffer for all of this share's chunks
                        ops = buf[:, :rows * k_row].reshape(n_ops, rows, k_row)
                        k["im2col_rows"](flat, c, top, left, self.fill, ho, wo, kh, kw, sh,
                                         sw, dh, dw, cgi * cg, r0, ops[:, :, :k_len])
                    t1 = time.perf_counter()
                    cols = slice(cgi * self.o_g, (cgi + 1) * self.o_g)
                    dst = out[r0:r0 + rows] if self.groups == 1 else out[r0:r0 + rows, cols]
                    bufs = tuple(self._gemm(ops[ai], self.gemms[ai][cgi])
                                 for ai in range(n_ops))
                    t2 = time.perf_counter()
                    self._combine(k, bufs, t_buf, t_col, t_coef, cols, dst)
                    t3 = time.perf_counter()
                    sec["im2col"] += t1 - t0
                    sec["gemm"] += t2 - t1
                    sec["requant"] += t3 - t2
                    t0 = t3
            return sec

        t = tick(name, "split", t)
        shares = self.pool.run(work, len(chunks)) if pooled else [work(0, len(chunks))]
        # each phase's share of the wall time the chunks took (threads overlap)
        wall = time.perf_counter() - t
        busy = sum(sum(sec.values()) for sec in shares) or 1.0
        for phase in ("im2col", "gemm", "requant"):
            tick(name, phase, time.perf_counter() - wall * sum(s[phase] for s in shares) / busy)
        return out.reshape(out_shape)

    def _residual(self, add, out: np.ndarray):
        """``(residual rows, output, Add arguments)`` of :func:`share.run_share` for ``add``
        (see :meth:`__call__`) after a layer whose own output would be ``out`` ``(M, O)``;
        without one: no rows, ``out`` itself, zeros."""
        m_rows = out.shape[0]
        if add is None:
            return _NO_RESIDUAL, out, _NO_ADD
        q, other, layer_first = add
        if other.size != m_rows * self.o:
            raise ValueError(f"{q.name}: residual of {other.size} values for a layer output "
                             f"of {m_rows} x {self.o}")
        m_layer, m_res = (q.ma, q.mb) if layer_first else (q.mb, q.ma)
        args = np.array([m_layer, m_res, q.offset, q.shift, q.out.lo, q.out.hi,
                         q.out.zero_point, q.mode == "half_up"], dtype=np.int64)
        return (np.ascontiguousarray(other).reshape(m_rows, self.o),
                np.empty((m_rows, self.o), dtype=storage_dtype(q.out.lo, q.out.hi)), args)

    def _share_args(self, flat, direct, c, top, left, ho, wo, geometry, step, m_rows, t_buf,
                    t_col, t_coef, out):
        """``(first, last, sums, buf) -> the arguments of share.run_share``."""
        mult, pre, tail = self._requant_args()
        packed = tuple(g[0].packed for g in self.gemms)
        steps = self.gemms[0][0].steps

        def args(first, last, sums, buf):
            return (flat, direct, c, top, left, self.fill, ho, wo, *geometry, first, last,
                    step, m_rows, packed, steps, sums, COMBINE_CODES[self.combine], t_buf,
                    t_col, t_coef, self.bias, mult, pre, *tail, buf, out)
        return args

    def _requant_args(self):
        """``(mult, pre-shifts, (shift, lo, hi, zero point, half_up))`` of the layer's
        requantization (placeholders for the accumulators of ``combine == "acc"``)."""
        rq = self.q.requant
        if rq is None:
            return self.bias, self.bias, (0, 0, 0, 0, False)
        return self.mult, rq.pre_shift, (rq.shift, rq.lo, rq.hi, rq.zero_point,
                                         rq.mode == "half_up")

    def _combine(self, k, bufs, t_buf, t_col, t_coef, cols, dst) -> None:
        """The products of one chunk summed (and requantized) into ``dst`` with the kernels
        ``k`` (parallel or one-thread)."""
        head = (bufs, t_buf, t_col, t_coef, self.bias[cols])
        if self.combine == "acc":
            k["combine_acc"](*head, dst)
            return
        mult, pre, tail = self._requant_args()
        if self.combine == "i64":
            k["combine_requant"](*head, mult[cols], pre[cols], *tail, dst)
        else:
            k[f"combine_requant_{self.combine}"](*head, mult[cols], *tail, dst)

    def _gemm(self, a: np.ndarray, mat):
        if self.backend in INT8_BACKENDS:
            return mat(a)
        if self.backend == "int":
            return gemm_int(a, mat)
        return a @ mat

    def pair_keys(self):
        """The (weight group, activation group) pairs whose lanes are on."""
        return [(gw, ga) for gw in range(len(self.w_groups)) for ga in range(len(self.a_groups))
                if all(self.mask[k, j] for k in self.w_groups[gw] for j in self.a_groups[ga])]


class Simulator:
    """Runs a QProgram bit-exactly on batches (see the module docstring).

    Parameters
    ----------
    program : QProgram
    path : {"combined", "lanes", "model"}
        Lane grouping; ``None`` takes ``"model"`` for a model-level program, else
        ``"combined"``.
    backend : {"auto", "vnni", "ort", "f32", "f64", "int"}
        GEMM backend; "auto" takes each layer's cheapest plan proved exact
        (:mod:`fpxint_hw.intsim.planes`); a named one must be proved exact for every layer
        (else WidthError, a ValueError).
    threads : int, optional
        Threads (default: Numba's current setting): the worker threads that share each
        layer's rows (:mod:`fpxint_hw.intsim.pool`) and Numba's for the other kernels.
    lane_order : None, "reverse" or int seed
        Order in which each layer adds its lane-pair results (any order gives the same bits).
    widths : WidthConfig
        Configured widths; the analysis raises WidthError before anything runs.
    int8 : Int8Gemm, optional
        The exactness conditions of onnxruntime's int8 GEMM (default: this machine's,
        :func:`fpxint_hw.intsim.cpu.int8_gemm`; the VNNI kernel's are its instruction's,
        :data:`fpxint_hw.intsim.cpu.VNNI`). Only conditions at least as strict as the
        machine's give exact results (a test may impose the 16-bit pair condition on a VNNI
        CPU, with ``backend="ort"``, never the reverse).
    profile : bool
        Record wall seconds per layer and phase in :attr:`profile`
        (:class:`fpxint_hw.intsim.profile.PhaseTimes`; None without).

    Members
    -------
    width_rows : list of WidthRow
        The width analysis of the program, then every layer's GEMM plan rows.
    """

    def __init__(self, program, *, path: str | None = None, backend: str = "auto",
                 threads: int | None = None, lane_order=None,
                 widths: WidthConfig = WidthConfig(), int8=None, profile: bool = False):
        if path is None:
            path = "model" if program.level == "model" else "combined"
        if path not in PATHS:
            raise FormatError(f"Simulator: path must be one of {', '.join(PATHS)}, got {path!r}")
        self.program = program
        self.path = path
        self.threads = int(threads) if threads is not None else numba.get_num_threads()
        self.width_rows = analyze_widths(program, widths)
        self.tensors = program.tensors()
        self.plans = {}
        self.pool = shared_pool(self.threads) if self.threads > 1 else None
        for q in program.gemm_layers():
            self.plans[q.name] = _ConvPlan(q, self.tensors[q.inputs[0]], path, backend,
                                           self.threads, int8, self.pool)
            if self.plans[q.name].plan is not None:
                self.width_rows += self.plans[q.name].plan.rows + self.plans[q.name].combine_rows
        self.profile = PhaseTimes() if profile else None
        self._tick = self.profile.tick if profile else no_tick
        self.orders = {}
        for name, plan in self.plans.items():
            keys = plan.pair_keys()
            if lane_order == "reverse":
                keys = keys[::-1]
            elif isinstance(lane_order, int) and not isinstance(lane_order, bool):
                rng = np.random.default_rng(lane_order)
                keys = [keys[i] for i in rng.permutation(len(keys))]
            elif lane_order is not None:
                raise FormatError(f"Simulator: lane_order must be None, 'reverse' or an int "
                                 f"seed, got {lane_order!r}")
            self.orders[name] = keys
        last_use = {}
        readers: dict[str, int] = {}
        for k, q in enumerate(program.layers):
            for i in q.inputs:
                last_use[i] = k
                readers[i] = readers.get(i, 0) + 1
        self._last_use = last_use
        # A residual Add right after a GEMM layer that only it reads runs in that layer's
        # shares (unprofiled VNNI path, docs/simulator.md): the GEMM layer's name -> the Add.
        self.fused_adds = {}
        layers = program.layers
        for p, q in zip(layers, layers[1:]):
            if (not profile and isinstance(q, P.Add) and p.name in q.inputs
                    and len(set(q.inputs)) == 2 and readers[p.name] == 1
                    and p.name != program.output and p.name in self.plans
                    and self.plans[p.name].fuses_add):
                self.fused_adds[p.name] = q

    def backends(self) -> dict[str, str]:
        """The GEMM backend chosen per conv/linear layer."""
        return {n: p.backend for n, p in self.plans.items()}

    def gemm_plans(self) -> dict[str, str]:
        """Per conv/linear layer, its plan in words (backend, kernel, scheme, GEMM count)."""
        return {n: ("int depthwise kernel" if p.plan is None else p.plan.describe())
                for n, p in self.plans.items()}

    def run_layer(self, q, args: list[np.ndarray], add=None) -> np.ndarray:
        """One layer on channels-last integer inputs (any integer dtype holding their values);
        returns its (NHWC / (N, F)) output in the narrowest dtype holding its range
        (:func:`storage_dtype`; int64 for an accumulator). ``add``: a GEMM layer's fused
        residual Add (:meth:`_ConvPlan.__call__`), whose output it returns instead."""
        if isinstance(q, P.GemmOp):
            x = args[0]
            if isinstance(q, P.Linear) and x.ndim == 3:      # per token: (N*T, F) rows
                n, t, f = x.shape
                out = self.plans[q.name](np.ascontiguousarray(x).reshape(n * t, f),
                                         self.orders[q.name], self._tick, add)
                return out.reshape(n, t, -1)
            return self.plans[q.name](x, self.orders[q.name], self._tick, add)
        t = time.perf_counter()
        out = _RUN[type(q)](self, q, args)
        self._tick(q.name, q.kind, t)
        return out

    def run(self, x: np.ndarray, capture: bool = False):
        """Run the float batch ``x`` (N, *input_shape).

        Returns ``(output, captured)``: the program's integer output (NCHW / (N, F); int64
        accumulators for a requant-free classifier, else int32) and, with ``capture``, every
        layer's integer output by name (NCHW / (N, F)).
        """
        if not np.issubdtype(np.asarray(x).dtype, np.floating):
            raise InputError(f"Simulator.run: x must be the float input batch (it is "
                             f"quantized here), got dtype {np.asarray(x).dtype}; pass the "
                             f"real values, not QProgram.quantize_input(x)")
        numba.set_num_threads(self.threads)
        prog = self.program
        env: dict[str, np.ndarray] = {}
        captured = {}
        for k, q in enumerate(prog.layers):
            add = None if capture else self.fused_adds.get(q.name)
            if isinstance(q, P.Quantize):
                t = time.perf_counter()
                env[q.name] = self._quantize(np.asarray(x), q.out)
                self._tick(q.name, "quantize", t)
            elif add is not None:                       # the Add's output, in one pass
                other = add.inputs[1] if add.inputs[0] == q.name else add.inputs[0]
                env[add.name] = self.run_layer(q, [env[i] for i in q.inputs],
                                               (add, env[other], add.inputs[0] == q.name))
            elif q.name not in env:                     # (not an Add already run)
                env[q.name] = self.run_layer(q, [env[i] for i in q.inputs])
            if capture:
                captured[q.name] = _wide(to_nchw(env[q.name]))
            for i in set(q.inputs):
                if self._last_use.get(i) == k and i != prog.output:
                    env.pop(i, None)                    # (a fused layer's output never was)
        return _wide(to_nchw(env[prog.output])), captured

    def _quantize(self, x: np.ndarray, t) -> np.ndarray:
        """The input integers of the float batch ``x`` on grid ``t`` (channels-last)."""
        if x.ndim != 4:
            return self.program.quantize_input(x).astype(storage_dtype(t.lo, t.hi))
        n, c, h, w = x.shape
        out = np.empty((n, h, w, c), dtype=storage_dtype(t.lo, t.hi))
        kernels.quantize_nhwc(np.ascontiguousarray(x), float(t.unit), float(t.zero_point),
                              t.lo, t.hi, out)
        return out

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The integer output for the float batch ``x``."""
        return self.run(x)[0]

    def logits(self, x: np.ndarray) -> np.ndarray:
        """The dequantized (real-valued, float64) output for the float batch ``x``."""
        return self.program.dequantize_output(self(x))


# -- the non-GEMM operations, channels-last --------------------------------------------------

def _scaled(sums: np.ndarray, q) -> np.ndarray:
    """``clamp(round_shift((sums - count z) * m0, shift) + z)`` of a pool's int64 window
    sums (NHWC), ``z`` the zero point its output shares with its input."""
    c, z = sums.shape[-1], q.out.zero_point
    return _requant_flat(sums, np.full(c, q.m0), q.shift, q.out.lo, q.out.hi, z, q.mode,
                         bias=np.full(c, -q.count * z))


def _add(sim, q, args):
    a, b = args
    out = np.empty(a.size, dtype=storage_dtype(q.out.lo, q.out.hi))
    kernels.add_requant(a.reshape(-1), b.reshape(-1), q.ma, q.mb, q.offset, q.shift, q.out.lo,
                        q.out.hi, q.out.zero_point, q.mode == "half_up", out)
    return out.reshape(a.shape)


def _maxpool(sim, q, args):
    x = args[0]
    n, h, w, c = x.shape
    out = np.empty((n, *q.out_hw(h, w), c), dtype=x.dtype)
    kernels.maxpool_nhwc(x, *q.kernel, *q.stride, *q.padding[:2], out)
    return out


def _avgpool(sim, q, args):
    x = args[0]
    n, h, w, c = x.shape
    sums = np.empty((n, *q.out_hw(h, w), c), dtype=np.int64)
    kernels.sumpool_nhwc(x, *q.kernel, *q.stride, *q.padding[:2], sums)
    return _scaled(sums, q)


def _global_avgpool(sim, q, args):
    x = args[0]
    n, _, _, c = x.shape
    sums = np.empty((n, 1, 1, c), dtype=np.int64)
    kernels.global_sum_nhwc(x, sums.reshape(n, c))
    return _scaled(sums, q)


def _requant_flat(acc: np.ndarray, mult, shift: int, lo: int, hi: int, zp: int, mode: str,
                  bias=None) -> np.ndarray:
    """``clamp(round_shift((acc + bias[c]) * mult[c], shift) + zp)`` of int64 ``acc`` whose
    last axis is the channel (one multiplier: ``mult`` of length 1 and a flat ``acc``)."""
    c = len(mult)
    flat = acc.reshape(-1, c)
    out = np.empty(flat.shape, dtype=storage_dtype(lo, hi))
    bias = np.zeros(c, dtype=np.int64) if bias is None else np.asarray(bias, dtype=np.int64)
    kernels.requant_rows(flat, bias, np.asarray(mult, dtype=np.int64), shift, lo, hi, zp,
                         mode == "half_up", out, np.zeros(c, dtype=np.int64))
    return out.reshape(acc.shape)


def _lookup(sim, q, args):
    x = args[0]
    table = q.table.astype(storage_dtype(q.out.lo, q.out.hi))
    idx = x.astype(np.intp) - q.index_lo
    if table.shape[0] == 1:
        return table[0][idx]
    return table[np.arange(table.shape[0]), idx]          # channels last: row c per channel


def _mul(sim, q, args):
    za = sim.tensors[q.inputs[0]].zero_point
    zb = sim.tensors[q.inputs[1]].zero_point
    prod = (args[0].astype(np.int64) - za) * (args[1].astype(np.int64) - zb)   # proved int64
    return _requant_flat(np.ascontiguousarray(prod), [q.m0], q.shift, q.out.lo, q.out.hi,
                         q.out.zero_point, q.mode)


def _concat(sim, q, args):
    parts = [_requant_flat(np.ascontiguousarray(x.astype(np.int64)
                                                - sim.tensors[name].zero_point),
                           [m], q.shift, q.out.lo, q.out.hi, q.out.zero_point, q.mode)
             for x, name, m in zip(args, q.inputs, q.multipliers)]
    return np.concatenate(parts, axis=-1)


def _scale(sim, q, args):
    x = args[0].astype(np.int64) - sim.tensors[q.inputs[0]].zero_point
    acc = np.ascontiguousarray(x * (q.sign << q.frac_bits))     # channels last
    rq = q.requant
    return _requant_flat(acc, rq.multiplier, rq.shift, rq.lo, rq.hi, rq.zero_point, rq.mode,
                         q.bias)


def _zero_insert(sim, q, args):
    x, (sh, sw) = args[0], q.stride
    n, h, w, c = x.shape
    out = np.full((n, (h - 1) * sh + 1, (w - 1) * sw + 1, c), q.out.zero_point,
                  dtype=storage_dtype(q.out.lo, q.out.hi))
    out[:, ::sh, ::sw] = x
    return out


def _upsample(sim, q, args):
    sh, sw = q.scale
    return args[0].repeat(sh, axis=1).repeat(sw, axis=2)


def _slice(sim, q, args):
    x = args[0]
    if x.ndim == 4:                                   # NHWC: channels are the last axis
        return np.ascontiguousarray(x[..., q.start:q.stop])
    return np.ascontiguousarray(x[:, q.start] if q.squeeze else x[:, q.start:q.stop])


def _pad(sim, q, args):
    x = args[0]
    top, left, bottom, right = q.padding
    n, h, w, c = x.shape
    out = np.full((n, h + top + bottom, w + left + right, c), q.value,
                  dtype=storage_dtype(q.out.lo, q.out.hi))
    out[:, top:top + h, left:left + w] = x
    return out


# -- the transformer ops, on (N, T, F) sequences ----------------------------------------------

def isqrt_int64(v: np.ndarray) -> np.ndarray:
    """``floor(sqrt(v))`` exactly for int64 ``0 <= v < 2^62``: the float64 root (within one of
    the integer root: ``v`` rounds by at most 2^-53 relative, the root by less than 2^-21
    absolute below 2^31) corrected by comparing squares in int64 (``(r + 1)^2 <= 2^62``)."""
    v = np.asarray(v, dtype=np.int64)
    r = np.floor(np.sqrt(v.astype(np.float64))).astype(np.int64)
    for _ in range(2):
        r = r - (r * r > v)
        r = r + ((r + 1) * (r + 1) <= v)
    return r


def round_div_rows(num: np.ndarray, den: np.ndarray, mode: str) -> np.ndarray:
    """``num / den`` rounded exactly (``rne`` or ``half_up``) for int64 ``num`` and positive
    int64 ``den`` (broadcast), ``|num|, 2 den < 2^63``: floor division, then the remainder."""
    q = np.floor_divide(num, den)
    rem2 = 2 * (num - q * den)
    if mode == "half_up":
        up = rem2 >= den
    else:
        up = (rem2 > den) | ((rem2 == den) & ((q & 1) == 1))
    return q + up


def _matmul(sim, q, args):
    za, zb = (sim.tensors[i].zero_point for i in q.inputs)
    a = args[0].astype(np.int64) - za
    b = args[1].astype(np.int64) - zb           # |acc| <= q.acc_bound < 2^61: proved
    n, t, fa = a.shape
    s_len, fb = b.shape[1], b.shape[2]
    h = q.heads
    if q.transpose_b:
        d = fa // h
        acc = np.matmul(a.reshape(n, t, h, d).transpose(0, 2, 1, 3),
                        b.reshape(n, s_len, h, d).transpose(0, 2, 3, 1))   # (N, H, T, S)
    else:
        d = fb // h
        acc = np.matmul(a.reshape(n, t, h, s_len).transpose(0, 2, 1, 3),
                        b.reshape(n, s_len, h, d).transpose(0, 2, 1, 3))   # (N, H, T, d)
    acc = np.ascontiguousarray(acc.transpose(0, 2, 1, 3)).reshape(n, t, -1)
    return _requant_flat(acc, [q.m0], q.shift, q.out.lo, q.out.hi, q.out.zero_point, q.mode)


def _softmax(sim, q, args):
    x = args[0].astype(np.int64)
    shape = x.shape
    x = x.reshape(-1, q.groups, shape[-1] // q.groups)
    e = q.exp_table[x.max(axis=2, keepdims=True) - x]
    total = e.sum(axis=2, keepdims=True)               # <= block 2^E < 2^62: proved
    out = round_div_rows(e * np.int64(q.out.hi), total, q.mode)
    return out.reshape(shape).astype(storage_dtype(q.out.lo, q.out.hi))


def _layernorm(sim, q, args):
    x = args[0].astype(np.int64)
    shape = x.shape
    x = x.reshape(-1, shape[-1])
    c = round_shift(shape[-1] * x - x.sum(axis=1, keepdims=True), q.pre_shift, q.mode)
    v = (c * c).sum(axis=1, keepdims=True) * np.int64(4 ** q.sqrt_bits) + np.int64(q.eps_int)
    r = np.maximum(isqrt_int64(v), 1)                  # every bound < 2^62: proved
    num = c * q.gain[None, :] + q.offset[None, :] * r
    out = round_div_rows(num, r << np.int64(q.frac_bits), q.mode) + q.out.zero_point
    return np.clip(out, q.out.lo, q.out.hi).reshape(shape).astype(
        storage_dtype(q.out.lo, q.out.hi))


def _no_input(sim, q, args):
    raise InputError(f"Simulator.run_layer: layer {q.name!r} quantizes the float input; "
                     f"use QProgram.quantize_input")


_RUN = {
    P.Quantize: _no_input,
    P.Conv: lambda sim, q, args: sim.plans[q.name](args[0], sim.orders[q.name], sim._tick),
    P.Linear: lambda sim, q, args: sim.plans[q.name](args[0], sim.orders[q.name], sim._tick),
    P.Add: _add,
    P.MaxPool: _maxpool,
    P.AvgPool: _avgpool,
    P.GlobalAvgPool: _global_avgpool,
    P.Clamp: lambda sim, q, args: np.clip(args[0].astype(np.int64), q.out.lo, q.out.hi).astype(
        storage_dtype(q.out.lo, q.out.hi)),
    P.Flatten: lambda sim, q, args: np.ascontiguousarray(
        to_nchw(args[0]).reshape(args[0].shape[0], -1)),
    P.Lookup: _lookup,
    P.Mul: _mul,
    P.Concat: _concat,
    P.Scale: _scale,
    P.Pad: _pad,
    P.ZeroInsert: _zero_insert,
    P.Upsample: _upsample,
    P.Slice: _slice,
    P.MatMul: _matmul,
    P.Softmax: _softmax,
    P.LayerNorm: _layernorm,
}
P.check_handlers(_RUN, "intsim")
