"""The VNNI int8 GEMM kernel: exact against an int64 reference (extreme operands, row,
reduction and column tails, wide rows), its int32 accumulator bound tight at the edge (one
over, the kernel really wraps, so the planner must refuse it), the planner's use of it, and
the reasons it is not used on CPUs that lack the instruction."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from fpxint_hw.errors import InputError
from fpxint_hw.intsim import vnni
from fpxint_hw.intsim.cpu import Int8Gemm
from fpxint_hw.intsim.gemm import plan_layer
from fpxint_hw.intsim.planes import plan_gemm

# on a CPU with the instruction the tests run even if the self-test fails (they say why)
needs_vnni = pytest.mark.skipif(vnni.unsupported_cpu() is not None,
                                reason=f"this CPU cannot run the VNNI kernel: "
                                       f"{vnni.unsupported_cpu()}")
SATURATING = Int8Gemm(pair_saturates=True, u8u8=False)
INT32_MAX = 2 ** 31 - 1


def _reference(a, w):
    return a.astype(np.int64) @ np.asarray(w, dtype=np.int64)


@needs_vnni
@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (5, 3, 2), (6, 4, 64), (7, 130, 65),
                                   (13, 257, 129), (48, 576, 256)])
def test_the_kernel_equals_int64_at_every_tail(m, k, n):
    rng = np.random.default_rng(m * 1000 + k)
    cases = [(np.full((m, k), 255, np.uint8), np.full((k, n), v, np.int64)) for v in (127, -128)]
    cases.append((rng.integers(0, 256, (m, k)).astype(np.uint8),
                  rng.integers(-128, 128, (k, n))))
    for a, w in cases:
        got = vnni.VnniMatMul(w)(a)
        assert got.dtype == np.int32 and got.shape == (m, n) and got.flags.c_contiguous
        np.testing.assert_array_equal(got, _reference(a, w))


@needs_vnni
def test_columns_past_the_reduction_add_nothing():
    """A row as wide as the kernel reads (K up to whole 4-byte steps) may hold anything past
    K: those bytes meet zero weights."""
    rng = np.random.default_rng(3)
    k, n = 147, 70
    w = rng.integers(-128, 128, (k, n))
    mm = vnni.VnniMatMul(w)
    assert mm.width == 148
    a = rng.integers(0, 256, (9, mm.width)).astype(np.uint8)
    a[:, k:] = 255
    np.testing.assert_array_equal(mm(a), _reference(a[:, :k], w))
    with pytest.raises(ValueError, match="need uint8"):
        mm(a[:, :k - 1])
    with pytest.raises(ValueError, match=r"\[-128, 127\]"):
        vnni.VnniMatMul(np.full((2, 2), 128))


@needs_vnni
def test_the_int32_accumulator_bound_is_tight_and_enforced():
    """K * 255 * 127 just below 2^31 runs on the kernel, exactly; one more row of the
    reduction and the kernel wraps, and the plan refuses one VNNI GEMM for it."""
    k_max = INT32_MAX // (255 * 127)
    for k, fits in ((k_max, True), (k_max + 1, False)):
        a = np.full((1, k), 255, np.uint8)
        w = np.full((k, 1), 127, np.int64)
        exact = np.array_equal(vnni.VnniMatMul(w)(a), _reference(a, w))
        assert exact == fits, k
        plan, refused = plan_gemm([(0, 255)], [w], backends=("vnni",), k=k)
        assert plan.backend == "vnni"
        assert (plan.gemms == 1) == fits, (k, plan.describe())
        if not fits:
            assert any("int32 accumulator" in r.node and not r.ok
                       for p in refused for r in p.rows)


def test_the_whole_int8_range_is_one_vnni_plane_whatever_onnxruntime_takes():
    """Planning needs no VNNI CPU: the kernel's conditions are its instruction's."""
    w = np.zeros((8, 3), np.int64)
    w[0], w[1] = -128, 127
    plan, _ = plan_gemm([(0, 255)], [w], backends=("vnni",), int8=SATURATING)
    assert (plan.backend, plan.kernel, plan.scheme, plan.gemms) == ("vnni", "u8s8", "planes", 1)
    w[1] = 128                                              # one over int8: two planes
    plan, _ = plan_gemm([(0, 255)], [w], backends=("vnni",), int8=SATURATING)
    assert plan.gemms == 2


@needs_vnni
def test_the_self_test_passes_where_the_cpu_has_the_instruction():
    assert vnni.unavailable() is None


@needs_vnni
def test_auto_takes_the_vnni_kernel_where_it_runs():
    w = np.zeros((8, 3), np.int64)
    w[0] = 5
    assert plan_layer("auto", [(0, 255)], [w]).backend == "vnni"


def test_vnni_is_refused_with_the_reason_where_it_cannot_run(monkeypatch):
    monkeypatch.setattr(vnni, "unavailable", lambda: "the CPU lacks avx512vnni")
    with pytest.raises(InputError, match="--backend vnni cannot run here: the CPU lacks "
                                         "avx512vnni; use --backend auto"):
        plan_layer("vnni", [(0, 255)], [np.ones((4, 2), np.int64)])
    assert plan_layer("auto", [(0, 255)], [np.ones((4, 2), np.int64)]).backend != "vnni"


def test_the_cpu_check_names_what_is_missing(monkeypatch):
    import llvmlite.binding as llvm
    features = dict(llvm.get_host_cpu_features())
    features.update(avx512f=True, avx512bw=True, avx512vnni=False)
    monkeypatch.setattr(vnni.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(llvm, "get_host_cpu_features", lambda: features)
    assert vnni.unsupported_cpu() == "the CPU lacks avx512vnni"
    features["avx512vnni"] = True
    assert vnni.unsupported_cpu() is None
    monkeypatch.setattr(numba.config, "CPU_NAME", "generic")
    assert "NUMBA_CPU_NAME" in vnni.unsupported_cpu()
    monkeypatch.setattr(vnni.platform, "machine", lambda: "aarch64")
    assert vnni.unsupported_cpu() == "not an x86-64 CPU (aarch64)"
