"""The VNNI int8 GEMM: uint8 activations x int8 constant weights -> int32, in Numba.

One ``vpdpbusd`` (AVX512-VNNI) adds four uint8 x int8 products to each of 16 int32 sums,
without saturating: the GEMM is exact for every operand while the sums stay in int32, which
the width analysis proves per layer (:func:`fpxint_hw.intsim.widths.int8_product_rows`).
The weights are packed once into panels of :data:`PANEL` columns with four reduction steps
interleaved, ``(panels, K/4, 64, 4)`` bytes, so one 64-byte load holds 16 columns x 4 steps;
the micro-kernel keeps a :data:`ROWS` x 64 block of sums in 24 zmm registers and broadcasts
four activation bytes of each row against four such loads. LLVM emits the instruction from
its intrinsic (``llvm.x86.avx512.vpdpbusd.512``), so the kernel runs only where the CPU has
it (:func:`unavailable`); elsewhere the simulator takes onnxruntime's int8 GEMM.

One call runs on one thread and releases the GIL: the simulator's worker pool shares a
layer's rows among its threads (:mod:`fpxint_hw.intsim.pool`).
"""

from __future__ import annotations

import functools
import platform

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["VnniMatMul", "gemm_packed", "pack_weights", "unavailable", "unsupported_cpu",
           "PANEL", "ROWS", "STEP"]

#: Output columns per weight panel: four 512-bit registers of 16 int32 sums.
PANEL = 64
#: Output rows per micro-kernel call (24 accumulators + 4 weight registers of the 32).
ROWS = 6
#: Reduction elements per instruction and row: four bytes broadcast as one int32.
STEP = 4

_VECTORS = PANEL // 16
_STEP_BYTES = PANEL * STEP           # one reduction step of one panel
#: The LLVM CPU features the instruction needs.
_FEATURES = ("avx512f", "avx512bw", "avx512vnni")


@intrinsic
def _micro_kernel(typingctx, a, a_row, b, b_off, steps, c, c_row, c_col):
    """``c[c_row + r, c_col + j] = sum_k a[a_row + r, k] * w[k, j]`` for ``r < ROWS``, ``j <
    PANEL``, ``k < STEP * steps``, with the panel's packed weights at byte ``b_off`` of
    ``b``. ``a`` uint8 (M, K) and ``c`` int32 (M, N), both C-contiguous."""
    sig = numba.types.void(a, numba.types.intp, b, numba.types.intp, numba.types.intp, c,
                           numba.types.intp, numba.types.intp)

    def codegen(context, builder, signature, args):
        a_arr, a_row, b_arr, b_off, steps, c_arr, c_row, c_col = args
        intp = context.get_value_type(numba.types.intp)
        i32 = ir.IntType(32)
        vec = ir.VectorType(i32, 16)
        a_s = context.make_array(signature.args[0])(context, builder, a_arr)
        c_s = context.make_array(signature.args[5])(context, builder, c_arr)
        b_s = context.make_array(signature.args[2])(context, builder, b_arr)
        lda = builder.extract_value(a_s.shape, 1)
        ldc = builder.extract_value(c_s.shape, 1)
        a_ptr = builder.bitcast(a_s.data, ir.IntType(8).as_pointer())
        b_ptr = builder.bitcast(b_s.data, ir.IntType(8).as_pointer())
        c_ptr = builder.bitcast(c_s.data, i32.as_pointer())
        dot = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vec, [vec, vec, vec]),
            "llvm.x86.avx512.vpdpbusd.512")

        def const(v):
            return ir.Constant(intp, v)

        a_rows = [builder.mul(builder.add(a_row, const(r)), lda) for r in range(ROWS)]
        sums = [[cgutils.alloca_once_value(builder, ir.Constant(vec, [0] * 16))
                 for _ in range(_VECTORS)] for _ in range(ROWS)]
        with cgutils.for_range(builder, steps) as loop:
            k = loop.index
            b_at = builder.add(b_off, builder.mul(k, const(_STEP_BYTES)))
            w = [builder.load(builder.bitcast(builder.gep(b_ptr, [builder.add(b_at,
                                                                             const(64 * j))]),
                                              vec.as_pointer()), align=1)
                 for j in range(_VECTORS)]
            for r in range(ROWS):
                at = builder.gep(a_ptr, [builder.add(a_rows[r], builder.mul(k, const(STEP)))])
                four = builder.load(builder.bitcast(at, i32.as_pointer()), align=1)
                one = builder.insert_element(ir.Constant(vec, None), four, ir.Constant(i32, 0))
                bcast = builder.shuffle_vector(one, ir.Constant(vec, None),
                                               ir.Constant(vec, [0] * 16))
                for j in range(_VECTORS):
                    s = builder.load(sums[r][j])
                    builder.store(builder.call(dot, [s, bcast, w[j]]), sums[r][j])
        for r in range(ROWS):
            row = builder.add(builder.mul(builder.add(c_row, const(r)), ldc), c_col)
            for j in range(_VECTORS):
                at = builder.gep(c_ptr, [builder.add(row, const(16 * j))])
                builder.store(builder.load(sums[r][j]), builder.bitcast(at, vec.as_pointer()),
                              align=4)
        return context.get_dummy_value()

    return sig, codegen


@numba.njit(nogil=True, cache=True)
def gemm_packed(a, packed, steps, c):
    """``c = a @ w`` for the packed weights ``packed`` (``steps`` reduction steps per panel):
    ``a`` uint8 ``(M, STEP * steps)``, ``c`` int32 ``(M, PANEL * panels)``, C-contiguous.
    Rows past the last whole block of :data:`ROWS` go through a zero-padded copy."""
    m = a.shape[0]
    panels = c.shape[1] // PANEL
    whole = m - m % ROWS
    for p in range(panels):
        for r in range(0, whole, ROWS):
            _micro_kernel(a, r, packed, p * steps * _STEP_BYTES, steps, c, r, p * PANEL)
    if whole < m:
        a_tail = np.zeros((ROWS, a.shape[1]), dtype=np.uint8)
        a_tail[:m - whole] = a[whole:]
        c_tail = np.empty((ROWS, c.shape[1]), dtype=np.int32)
        for p in range(panels):
            _micro_kernel(a_tail, 0, packed, p * steps * _STEP_BYTES, steps, c_tail, 0,
                          p * PANEL)
        c[whole:] = c_tail[:m - whole]


def pack_weights(w: np.ndarray) -> tuple[np.ndarray, int]:
    """``w`` (K, N) int8-range integers as ``(packed bytes, reduction steps)``: zero rows up to
    a multiple of :data:`STEP`, zero columns up to a multiple of :data:`PANEL`, laid out
    ``(panels, steps, PANEL, STEP)``.

    Raises
    ------
    ValueError
        A weight lies outside ``[-128, 127]``.
    """
    w = np.asarray(w)
    if w.size and (int(w.min()) < -128 or int(w.max()) > 127):
        raise ValueError(f"VNNI weights must lie in [-128, 127], got "
                         f"[{int(w.min())}, {int(w.max())}]")
    k, n = w.shape
    steps, panels = -(-k // STEP), max(1, -(-n // PANEL))
    full = np.zeros((steps * STEP, panels * PANEL), dtype=np.int8)
    full[:k, :n] = w
    packed = full.reshape(steps, STEP, panels, PANEL).transpose(2, 0, 3, 1)
    return np.ascontiguousarray(packed).reshape(-1), steps


class VnniMatMul:
    """``a_u8 (M, K) -> a_u8 @ w`` as int32 ``(M, N)``, with constant int8-range ``w``
    ``(K, N)`` packed once (the same call as :class:`fpxint_hw.intsim.gemm.OrtMatMul`). The
    caller proves that the sums fit int32.

    ``a_u8`` may also be :attr:`width` wide (``K`` up to whole steps of :data:`STEP`): its
    columns past ``K`` meet zero weights, so whatever they hold adds nothing."""

    def __init__(self, w: np.ndarray):
        self.k, self.n = w.shape
        #: The packed weights and their reduction steps (:func:`pack_weights`).
        self.packed, self.steps = pack_weights(w)
        #: Columns of the kernel's result rows (``N`` up to whole panels).
        self.cols = self.packed.size // (self.steps * STEP)
        #: Columns the kernel reads per activation row.
        self.width = self.steps * STEP

    def _rows(self, a_u8: np.ndarray) -> np.ndarray:
        """``a_u8`` as the kernel reads it: C-contiguous uint8 rows :attr:`width` wide."""
        if a_u8.dtype != np.uint8 or a_u8.ndim != 2 or a_u8.shape[1] not in (self.k,
                                                                             self.width):
            raise ValueError(f"VnniMatMul: need uint8 (M, {self.k}), got {a_u8.dtype} "
                             f"{a_u8.shape}")
        if a_u8.shape[1] != self.width:     # reduction tail: zero bytes meet zero weights
            padded = np.zeros((a_u8.shape[0], self.width), dtype=np.uint8)
            padded[:, :self.k] = a_u8
            return padded
        return np.ascontiguousarray(a_u8)

    def __call__(self, a_u8: np.ndarray) -> np.ndarray:
        a_u8 = self._rows(a_u8)
        c = np.empty((a_u8.shape[0], self.cols), dtype=np.int32)
        gemm_packed(a_u8, self.packed, self.steps, c)
        # C-contiguous like every other backend's result (the combining kernels take a tuple
        # of them, which must be of one array type)
        return c if self.cols == self.n else np.ascontiguousarray(c[:, :self.n])


#: Self-test shapes (M, K, N): one element, row/reduction/column tails, several panels.
_SHAPES = ((1, 1, 1), (7, 5, 17), (13, 130, 65), (6, 256, 128))


def unsupported_cpu() -> str | None:
    """Why this CPU cannot run the kernel (None when it has the instruction): not x86-64,
    no AVX512-VNNI as LLVM sees the host, or Numba told to compile for another CPU."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return f"not an x86-64 CPU ({platform.machine()})"
    if numba.config.CPU_NAME not in (None, "host") or numba.config.CPU_FEATURES:
        return "NUMBA_CPU_NAME / NUMBA_CPU_FEATURES is set: the host's features are not used"
    import llvmlite.binding as llvm
    features = llvm.get_host_cpu_features()
    missing = [f for f in _FEATURES if not features.get(f, False)]
    if missing:
        return f"the CPU lacks {'+'.join(missing)}"
    return None


@functools.lru_cache(maxsize=None)
def unavailable() -> str | None:
    """Why the VNNI GEMM cannot run here (None when it can): :func:`unsupported_cpu`, or a
    self-test that is not exact (all-255 activations against all-127 and all-(-128) weights,
    and random operands, in shapes with row, reduction and column tails). Found once per
    process."""
    reason = unsupported_cpu()
    if reason:
        return reason
    rng = np.random.default_rng(0)
    for m, k, n in _SHAPES:
        cases = [(np.full((m, k), 255, np.uint8), np.full((k, n), v, np.int64))
                 for v in (127, -128)]
        cases.append((rng.integers(0, 256, (m, k)).astype(np.uint8),
                      rng.integers(-128, 128, (k, n))))
        for a, w in cases:
            want = a.astype(np.int64) @ w
            if not np.array_equal(VnniMatMul(w)(a), want):
                return f"the self-test at M={m}, K={k}, N={n} was not exact"
    return None
