"""What this machine's int8 GEMM computes exactly, found out once per process.

onnxruntime's ``MatMulInteger`` multiplies uint8 activations by int8 weights with the CPU's
int8 dot product. With VNNI (``vpdpbusd``: AVX512-VNNI, AVX-VNNI, or AMX) four products go
straight into an int32 sum: exact for every uint8 x int8 operand. Without it (AVX2,
AVX-512BW) ``vpmaddubsw`` first adds each pair of products into 16 bits *with saturation*:
exact only while every pair sum ``a0 w0 + a1 w1`` stays in [-2^15, 2^15 - 1], e.g. for
``|w| <= 64`` with any uint8 activation, or activations up to 127 with any int8 weight. The
uint8 x uint8 kernel (``vpmaddwd`` on 16-bit operands) never saturates.

:func:`int8_gemm` decides from both what the CPU reports and what onnxruntime does: it runs a
few tiny GEMMs at saturating operands (255 x 127, 255 x -128; 255 x 255 on the uint8 x uint8
kernel) and takes the full
int8 range only when the CPU reports VNNI *and* those come out exact. Anything else -- no
VNNI flag, no ``/proc/cpuinfo``, a wrong self-test -- gets the 16-bit pair condition, which
is exact on every CPU.
"""

from __future__ import annotations

import functools
import platform
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Int8Gemm", "int8_gemm", "cpu_flags", "decide", "self_test", "VNNI_FLAGS",
           "PAIR_LIMIT", "VNNI"]

#: /proc/cpuinfo flags of an int8 dot product that sums into 32 bits without saturating.
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")

#: Largest pair sum ``a0 w0 + a1 w1`` that ``vpmaddubsw`` keeps exact (int16 maximum).
PAIR_LIMIT = 2 ** 15 - 1


@dataclass(frozen=True)
class Int8Gemm:
    """The exactness conditions of the int8 GEMM on this machine.

    Members
    -------
    pair_saturates : bool
        uint8 x int8 products are summed in pairs into 16 bits with saturation: a GEMM is
        exact only when ``2 * max(a) * max|w| <= 2^15 - 1`` (see :data:`PAIR_LIMIT`).
    u8u8 : bool
        The uint8 x uint8 GEMM is exact for every operand (usable for 8-bit weights stored
        as ``w + 128``).
    reason : str
        How this was decided (the CPU flags seen and the self-test), for reports.
    """

    pair_saturates: bool = True
    u8u8: bool = False
    reason: str = "assumed: 16-bit pair saturation (exact on every CPU)"

    def to_dict(self) -> dict:
        """The fields as a JSON-ready dict."""
        return {"pair_saturates": self.pair_saturates, "u8u8": self.u8u8,
                "reason": self.reason}


#: The conditions of the Numba VNNI kernel (:mod:`fpxint_hw.intsim.vnni`), which runs only
#: where the CPU has the instruction: ``vpdpbusd`` sums four uint8 x int8 products into each
#: int32 without saturating, and there is no uint8 x uint8 form.
VNNI = Int8Gemm(pair_saturates=False, u8u8=False,
                reason="vpdpbusd (AVX512-VNNI): u8 x s8 summed in int32; full int8 range")


def cpu_flags(path: str | Path = "/proc/cpuinfo") -> frozenset[str] | None:
    """The CPU feature flags from ``/proc/cpuinfo`` (None where there is no such file)."""
    try:
        text = Path(path).read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def _exact(run, a_value: int, w_value: int, shapes) -> bool:
    """Whether ``run(a, w)`` gives ``K * a_value * w_value`` everywhere, for each shape."""
    for m, k, n in shapes:
        a = np.full((m, k), a_value, dtype=np.uint8)
        w = np.full((k, n), w_value, dtype=np.int64)
        got = run(a, w)
        if not np.array_equal(got, np.full((m, n), k * a_value * w_value, dtype=np.int64)):
            return False
    return True


#: Self-test shapes (M, K, N): a single pair, a GEMV row, odd sizes across kernel blocks.
_SHAPES = ((1, 2, 1), (1, 64, 3), (37, 130, 17))


def decide(flags: frozenset[str] | None, s8_exact: bool | None, u8_exact: bool | None,
           machine: str) -> Int8Gemm:
    """The conditions from what was found: the CPU ``flags`` (None: unknown), whether the
    u8 x s8 self-test at saturating operands was exact and the u8 x u8 one (None: not run,
    no onnxruntime), and the ``machine`` (``platform.machine()``).

    The full int8 range needs an x86 CPU that reports VNNI *and* an exact self-test; the
    uint8 x uint8 kernel needs its self-test."""
    vnni = sorted(set(VNNI_FLAGS) & flags) if flags else []
    seen = ("no /proc/cpuinfo" if flags is None
            else f"CPU flags {'+'.join(vnni)}" if vnni else "no VNNI flag in /proc/cpuinfo")
    if s8_exact is None:
        return Int8Gemm(True, False, f"{seen}; onnxruntime not installed")
    test = (f"self-test: u8 x s8 at 255 x 127 {'exact' if s8_exact else 'saturates'}, "
            f"u8 x u8 at 255 x 255 {'exact' if u8_exact else 'wrong'}")
    full = bool(vnni) and s8_exact and machine.lower() in ("x86_64", "amd64")
    return Int8Gemm(pair_saturates=not full, u8u8=bool(u8_exact),
                    reason=f"{seen}; {test}; "
                           f"{'full int8 range' if full else '16-bit pair condition'}")


def self_test() -> tuple[bool, bool] | None:
    """``(u8 x s8 exact, u8 x u8 exact)`` of onnxruntime's GEMMs at saturating operands
    (None without onnxruntime): all-255 activations against all-127 and all-(-128) int8
    weights, and against uint8 weights 255, in a few shapes."""
    from .gemm import OrtMatMul, have_ort
    if not have_ort():
        return None

    def u8s8(a, w):
        return OrtMatMul(w, 0, 1)(a)

    def u8u8(a, w):
        return OrtMatMul(w, 0, 1, unsigned=True)(a)

    s8 = _exact(u8s8, 255, 127, _SHAPES) and _exact(u8s8, 255, -128, _SHAPES)
    u8 = _exact(u8u8, 255, 127, _SHAPES)                # stored as 127 + 128 = 255
    return s8, u8


@functools.lru_cache(maxsize=None)
def int8_gemm() -> Int8Gemm:
    """The int8 GEMM conditions of this machine (:func:`decide` on the CPU flags and the
    :func:`self_test`), found once per process and cached.

    Without onnxruntime (no int8 backend to run) the conservative conditions are returned.
    """
    test = self_test()
    return decide(cpu_flags(), *(test if test else (None, None)), platform.machine())
