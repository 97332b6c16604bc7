"""The int8 GEMM conditions are detected, never assumed: the CPU flags are read, the full
int8 range needs both a VNNI flag and an exact self-test, and the self-test's verdict is what
onnxruntime really computes on this machine."""

from __future__ import annotations

import platform

import numpy as np
import pytest

from fpxint_hw.intsim.cpu import cpu_flags, decide, int8_gemm, self_test
from fpxint_hw.intsim.gemm import OrtMatMul, have_ort

needs_ort = pytest.mark.skipif(not have_ort(), reason="onnxruntime is not installed")


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    f = tmp_path / "cpuinfo"
    f.write_text("processor\t: 0\nmodel name\t: X\nflags\t\t: fpu avx2 avx512_vnni\n\n"
                 "processor\t: 1\nflags\t\t: fpu avx2 avx512_vnni\n")
    assert cpu_flags(f) == {"fpu", "avx2", "avx512_vnni"}
    f.write_text("Features\t: fp asimd asimddp\n")                  # an Arm kernel
    assert cpu_flags(f) == {"fp", "asimd", "asimddp"}
    assert cpu_flags(tmp_path / "missing") is None


@pytest.mark.parametrize("flags,s8,u8,machine,saturates,u8u8", [
    ({"avx2", "avx512_vnni"}, True, True, "x86_64", False, True),    # VNNI, exact: full range
    ({"avx2", "avx_vnni"}, True, True, "x86_64", False, True),
    ({"avx2", "avx512_vnni"}, False, True, "x86_64", True, True),    # flag, but it saturates
    ({"avx2"}, True, True, "x86_64", True, True),                    # exact, but no flag
    ({"avx2"}, False, False, "x86_64", True, False),
    (None, True, True, "x86_64", True, True),                        # no cpuinfo
    ({"asimddp"}, True, True, "aarch64", True, True),                # not x86
    ({"avx512_vnni"}, None, None, "x86_64", True, False),            # no onnxruntime
])
def test_the_full_int8_range_needs_the_flag_and_the_self_test(flags, s8, u8, machine,
                                                               saturates, u8u8):
    got = decide(None if flags is None else frozenset(flags), s8, u8, machine)
    assert (got.pair_saturates, got.u8u8) == (saturates, u8u8), got.reason


@needs_ort
def test_the_self_test_says_what_onnxruntime_computes_here():
    """At 255 x 127 pairs the u8 x s8 GEMM is exact iff the self-test says so; at 255 x 64
    (the 16-bit pair condition's edge) it is exact on every CPU."""
    s8, u8 = self_test()
    a = np.full((3, 40), 255, np.uint8)
    w = np.full((40, 2), 127, np.int64)
    assert np.array_equal(OrtMatMul(w, 0, 1)(a), a.astype(np.int64) @ w) == s8
    w64 = np.full((40, 2), -64, np.int64)
    np.testing.assert_array_equal(OrtMatMul(w64, 0, 1)(a), a.astype(np.int64) @ w64)
    assert u8
    np.testing.assert_array_equal(OrtMatMul(w, 0, 1, unsigned=True)(a), a.astype(np.int64) @ w)


@needs_ort
def test_this_machine_is_detected_as_its_flags_and_self_test_say():
    got = int8_gemm()
    flags = cpu_flags() or frozenset()
    s8, u8 = self_test()
    assert got == decide(cpu_flags(), s8, u8, platform.machine())
    if not {"avx512_vnni", "avx_vnni", "amx_int8"} & flags:
        assert got.pair_saturates                        # no VNNI flag: never the full range
    if not s8:
        assert got.pair_saturates                        # it saturates: never the full range
