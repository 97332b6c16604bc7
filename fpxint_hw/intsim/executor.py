"""The fast bit-exact executor of an integer program (:class:`fpxint_hw.quant.QProgram`).

Tensors are channels-last int32 inside. A conv/linear layer splits its weight terms and its
activation terms into *lane groups* (consecutive terms combined exactly into one wider
integer), runs one exact GEMM per (weight group, activation group) pair and adds the pairs'
results, scaled by the group weights, in int64:

* ``path="combined"`` (default): the largest groups the chosen backend proves exact -- with
  onnxruntime's int8 path, a 4-bit x 2-term weight (|w| <= 63) and a 4-bit x 2-term unsigned
  activation (0..255) are one GEMM;
* ``path="lanes"``: every term alone, T_w x T_a GEMMs (the per-lane datapath);
* ``path="model"``: every weight term alone against the combined activation (the T_w basis
  models side by side, summed layer by layer).

All paths give identical integers (the lane sum is exact), for any thread count and any order
of the lane pairs (``lane_order``). The static width analysis runs first and refuses programs
whose accumulators could overflow.

A conv pads its input with the input's zero point (real 0; the bias carries ``-z sum w``), each
activation group with its own part of it.
"""

from __future__ import annotations

import numba
import numpy as np

from ..errors import FormatError, InputError
from ..float_exec import to_nchw, to_nhwc
from ..quant import program as P
from . import kernels
from .gemm import OrtMatMul, choose_backend, gemm_int, have_ort
from .widths import WidthConfig, analyze_widths

__all__ = ["Simulator", "PATHS", "to_nchw", "to_nhwc"]

#: Lane-grouping paths.
PATHS = ("combined", "lanes", "model")


def _group_terms(fmt, limit_lo, limit_hi, single: bool):
    """Greedy consecutive groups of term indices whose combined range fits [lo, hi]."""
    t = fmt.terms
    if single:
        return [[k] for k in range(t)]
    w = fmt.lane_weights
    groups, cur = [], [0]
    for k in range(1, t + 1):
        cand = cur + [k] if k < t else None
        if cand is not None:
            last = w[cand[-1]]
            span = sum(w[i] // last for i in cand)
            if fmt.qmin * span >= limit_lo and fmt.qmax * span <= limit_hi:
                cur = cand
                continue
        groups.append(cur)
        if k < t:
            cur = [k]
    return groups


def _group_range(fmt, terms):
    last = fmt.lane_weights[terms[-1]]
    span = sum(fmt.lane_weights[i] // last for i in terms)
    return fmt.qmin * span, fmt.qmax * span


class _ConvPlan:
    """A conv/linear layer prepared for one path and backend."""

    def __init__(self, q, xin, path: str, backend: str, threads: int):
        self.q, self.xin = q, xin
        self.linear = isinstance(q, P.Linear)
        digits = q.w_digits.astype(np.int64)
        t_w, o = digits.shape[:2]
        a_fmt, w_fmt = xin.fmt, q.w_fmt
        self.mask = q.lanes_on(a_fmt.terms)
        if not self.mask.all():
            path = "lanes"                  # a switched-off lane: every pair on its own
        self.groups = 1 if self.linear else q.groups
        self.depthwise = not self.linear and q.depthwise
        want_ort = backend in ("auto", "ort") and have_ort() and not self.depthwise
        single_w = path in ("lanes", "model")
        single_a = path == "lanes"
        k_len = q.reduction
        attempts = (["ort"] if want_ort else []) + ["any"]
        for kind in attempts:
            if kind == "ort":
                wg = _group_terms(w_fmt, -64, 64, single_w)
                ag = ([list(range(a_fmt.terms))] if path == "model"
                      else _group_terms(a_fmt, -127 if a_fmt.signed else 0,
                                        127 if a_fmt.signed else 255, single_a))
            else:
                wg = [[k] for k in range(t_w)] if single_w else [list(range(t_w))]
                ag = ([[j] for j in range(a_fmt.terms)] if single_a
                      else [list(range(a_fmt.terms))])
            a_ranges = [(xin.lo, xin.hi) if len(g) == a_fmt.terms else _group_range(a_fmt, g)
                        for g in ag]
            wvals, wweights = [], []
            for g in wg:
                last = w_fmt.lane_weights[g[-1]]
                wweights.append(last)
                wvals.append(sum(np.int64(w_fmt.lane_weights[k] // last) * digits[k] for k in g))
            mats = [v.reshape(o, -1).T for v in wvals]
            if self.depthwise:
                be = "int"
                break
            try:
                be = choose_backend("ort" if kind == "ort" else backend, a_ranges, mats, k_len,
                                    what=f"layer {q.name!r}")
                break
            except ValueError:
                if kind == "ort" and backend == "auto":
                    continue
                raise
        self.backend = be
        self.w_groups, self.a_groups = wg, ag
        self.w_weights = wweights
        self.a_weights = [a_fmt.lane_weights[g[-1]] for g in ag]
        self.a_ranges = a_ranges
        self.zp = 0 if all(lo >= 0 for lo, _ in a_ranges) else 128
        if be == "ort" and any(lo < 0 for lo, _ in a_ranges) and \
                any(hi > 127 for _, hi in a_ranges):
            raise InputError(f"layer {q.name!r}: activation groups mix signed and >127 ranges")
        o_g = o // self.groups
        # weight matrices per conv group: (K, Gw * O_g), columns grouped by weight group
        self.mats = []
        if self.depthwise:
            self.dw = [np.ascontiguousarray(v[:, 0].transpose(1, 2, 0)).astype(np.int32)
                       for v in wvals]
        else:
            for cgi in range(self.groups):
                cols = []
                for v in wvals:
                    vv = v[cgi * o_g:(cgi + 1) * o_g]
                    if self.linear:
                        cols.append(vv.T)
                    else:
                        cols.append(vv.transpose(2, 3, 1, 0).reshape(-1, o_g))
                m = np.ascontiguousarray(np.concatenate(cols, axis=1))
                if be == "ort":
                    self.mats.append(OrtMatMul(m, self.zp, threads))
                elif be == "f32":
                    self.mats.append(m.astype(np.float32))
                elif be == "f64":
                    self.mats.append(m.astype(np.float64))
                else:
                    self.mats.append(m.astype(np.int64))
        self.o, self.o_g = o, o_g
        if q.requant is not None:
            self.mult = q.requant.multiplier.astype(np.int64)
        # what a padded tap holds in each activation group: its part of the zero point
        z = np.array([xin.zero_point], dtype=np.int32)
        self.pads = [int(v[0]) for v in self._act_groups(z)]

    # -- running --------------------------------------------------------------------------

    def _act_groups(self, x: np.ndarray):
        """The activation group tensors (int32, same shape as ``x``)."""
        fmt = self.xin.fmt
        if len(self.a_groups) == 1 and len(self.a_groups[0]) == fmt.terms:
            return [x]
        group_of = np.zeros(fmt.terms, dtype=np.int64)
        for g, terms in enumerate(self.a_groups):
            group_of[terms] = g
        out = np.empty((len(self.a_groups), x.size), dtype=np.int32)
        kernels.split_groups(np.ascontiguousarray(x).reshape(-1),
                             np.array(fmt.lane_weights, dtype=np.int64), fmt.qmin, fmt.qmax,
                             fmt.signed, group_of, np.array(self.a_weights, dtype=np.int64), out)
        return [out[g].reshape(x.shape) for g in range(len(self.a_groups))]

    def _cols(self, a: np.ndarray, dtype, fill: int, cgi: int, *, pad: int | None = None):
        """im2col of NHWC ``a`` for conv group ``cgi``: ``(N*Ho*Wo, kh*kw*C_g)``, every value
        plus ``fill`` (the ort backend's uint8 shift).

        A padded tap holds ``pad + fill``; ``pad`` None is the input's zero point (``a`` the
        whole input, as the tile cutter passes it), else an activation group's part of it.
        """
        pad = self.xin.zero_point if pad is None else pad
        if self.linear:
            return a.astype(dtype, copy=False) if fill == 0 else (a + fill).astype(dtype)
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
        src = (a + fill).astype(dtype) if fill else a.astype(dtype, copy=False)
        if (kh, kw, sh, sw) == (1, 1, 1, 1) and not (pt or pl or pb or pr):
            return np.ascontiguousarray(src).reshape(n * h * w, cg)
        if pt or pl or pb or pr:
            xp = np.full((n, h + pt + pb, w + pl + pr, cg), pad + fill, dtype=dtype)
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

    def parts(self, x: np.ndarray) -> dict:
        """Exact partial GEMMs ``{(gw, ga): (M, O) array}`` (unweighted)."""
        groups = self._act_groups(x)
        out = {}
        n = x.shape[0]
        if self.depthwise:
            q = self.q
            ho, wo = self._out_hw(x)
            sh, sw = q.stride
            dh, dw = q.dilation
            pt, pl, pb, pr = q.padding
            for ga, a in enumerate(groups):
                a = np.ascontiguousarray(a, dtype=np.int32)
                top, left = pt, pl
                if self.pads[ga] and (pt or pl or pb or pr):
                    # the kernel skips padded taps (zero padding): pad with the zero point here
                    a = np.pad(a, ((0, 0), (pt, pb), (pl, pr), (0, 0)),
                               constant_values=self.pads[ga])
                    top = left = 0
                for gw, wdw in enumerate(self.dw):
                    r = np.empty((n, ho, wo, self.o), dtype=np.int64)
                    kernels.depthwise_nhwc(a, wdw, sh, sw, dh, dw, top, left, r)
                    out[(gw, ga)] = r.reshape(-1, self.o)
            return out
        be = self.backend
        dtype = {"ort": np.uint8, "f32": np.float32, "f64": np.float64, "int": np.int32}[be]
        fill = self.zp if be == "ort" else 0
        og = self.o_g
        ngw = len(self.w_groups)
        for ga, a in enumerate(groups):
            per_cg = []
            for cgi in range(self.groups):
                cols = self._cols(a, dtype, fill, cgi, pad=self.pads[ga])
                mat = self.mats[cgi]
                if be == "ort":
                    r = mat(cols)
                elif be == "int":
                    r = gemm_int(cols, mat)
                else:
                    r = cols @ mat
                per_cg.append(r)
            for gw in range(ngw):
                blocks = [r[:, gw * og:(gw + 1) * og] for r in per_cg]
                part = blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=1)
                if be in ("f32", "f64"):
                    part = part.astype(np.int64)
                out[(gw, ga)] = part
        return out

    def __call__(self, x: np.ndarray, order=None) -> np.ndarray:
        parts = self.parts(x)
        keys = self.pair_keys() if order is None else [k for k in order if k in parts]
        if len(keys) == 1 and self.w_weights[keys[0][0]] * self.a_weights[keys[0][1]] == 1:
            acc = parts[keys[0]]
        else:
            acc = np.zeros(parts[keys[0]].shape, dtype=np.int64)
            for gw, ga in keys:
                acc += np.int64(self.w_weights[gw] * self.a_weights[ga]) * \
                    parts[(gw, ga)].astype(np.int64, copy=False)
        q = self.q
        shape = (x.shape[0],) + self._out_hw(x) + (self.o,)
        if q.requant is None:
            return (acc.astype(np.int64) + q.bias[None, :]).reshape(shape)
        rq = q.requant
        out = np.empty(acc.shape, dtype=np.int32)
        kernels.requant_rows(np.ascontiguousarray(acc), q.bias, self.mult, rq.shift, rq.lo,
                             rq.hi, rq.zero_point, rq.mode == "half_up", out, rq.pre_shift)
        return out.reshape(shape)

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
    backend : {"auto", "ort", "f32", "f64", "int"}
        GEMM backend; a named one must be proved exact for every layer (else ValueError).
    threads : int, optional
        Numba and onnxruntime threads (default: Numba's current setting).
    lane_order : None, "reverse" or int seed
        Order in which each layer adds its lane-pair results (any order gives the same bits).
    widths : WidthConfig
        Configured widths; the analysis raises WidthError before anything runs.
    """

    def __init__(self, program, *, path: str | None = None, backend: str = "auto",
                 threads: int | None = None, lane_order=None,
                 widths: WidthConfig = WidthConfig()):
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
        for q in program.gemm_layers():
            self.plans[q.name] = _ConvPlan(q, self.tensors[q.inputs[0]], path, backend,
                                           self.threads)
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
        for k, q in enumerate(program.layers):
            for i in q.inputs:
                last_use[i] = k
        self._last_use = last_use

    def backends(self) -> dict[str, str]:
        """The GEMM backend chosen per conv/linear layer."""
        return {n: p.backend for n, p in self.plans.items()}

    def run_layer(self, q, args: list[np.ndarray]) -> np.ndarray:
        """One layer on channels-last int32 inputs; returns its (NHWC / (N, F)) output."""
        return _RUN[type(q)](self, q, args)

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
            if isinstance(q, P.Quantize):
                val = to_nhwc(prog.quantize_input(x))
            else:
                val = self.run_layer(q, [env[i] for i in q.inputs])
            env[q.name] = val
            if capture:
                captured[q.name] = to_nchw(val)
            for i in set(q.inputs):
                if self._last_use.get(i) == k and i != prog.output:
                    del env[i]
        return to_nchw(env[prog.output]), captured

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The integer output for the float batch ``x``."""
        return self.run(x)[0]

    def logits(self, x: np.ndarray) -> np.ndarray:
        """The dequantized (real-valued, float64) output for the float batch ``x``."""
        return self.program.dequantize_output(self(x))


# -- the non-GEMM operations, channels-last --------------------------------------------------

def _scaled(sums: np.ndarray, q) -> np.ndarray:
    """``clamp(round_shift(sums * m0, shift))`` of a pool's int64 window sums (NHWC)."""
    c = sums.shape[-1]
    flat = sums.reshape(-1, c)
    out = np.empty(flat.shape, dtype=np.int32)
    kernels.requant_rows(flat, np.zeros(c, dtype=np.int64), np.full(c, q.m0, dtype=np.int64),
                         q.shift, q.out.lo, q.out.hi, 0, q.mode == "half_up", out,
                         np.zeros(c, dtype=np.int64))
    return out.reshape(sums.shape)


def _add(sim, q, args):
    a, b = args
    out = np.empty(a.size, dtype=np.int32)
    kernels.add_requant(a.reshape(-1), b.reshape(-1), q.ma, q.mb, q.offset, q.shift, q.out.lo,
                        q.out.hi, q.out.zero_point, q.mode == "half_up", out)
    return out.reshape(a.shape)


def _maxpool(sim, q, args):
    x = args[0]
    n, h, w, c = x.shape
    out = np.empty((n, *q.out_hw(h, w), c), dtype=np.int32)
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


def _no_input(sim, q, args):
    raise InputError(f"Simulator.run_layer: layer {q.name!r} quantizes the float input; "
                     f"use QProgram.quantize_input")


_RUN = {
    P.Quantize: _no_input,
    P.Conv: lambda sim, q, args: sim.plans[q.name](args[0], sim.orders[q.name]),
    P.Linear: lambda sim, q, args: sim.plans[q.name](args[0], sim.orders[q.name]),
    P.Add: _add,
    P.MaxPool: _maxpool,
    P.AvgPool: _avgpool,
    P.GlobalAvgPool: _global_avgpool,
    P.Clamp: lambda sim, q, args: np.clip(args[0], q.out.lo, q.out.hi).astype(np.int32),
    P.Flatten: lambda sim, q, args: np.ascontiguousarray(
        to_nchw(args[0]).reshape(args[0].shape[0], -1)),
}
P.check_handlers(_RUN, "intsim")
