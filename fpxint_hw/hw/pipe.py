"""Delay lines: the pipeline and skew registers of the array, built in one place."""

from __future__ import annotations

from amaranth.hdl import Module, Signal

__all__ = ["KEEP", "delay"]


#: Attributes of a register that synthesis must not merge with an identical one
#: (``flow.synth`` turns them into kept cells).
KEEP = {"keep": 1}


def delay(m: Module, value, cycles: int, name: str, keep: bool = False):
    """``value`` delayed by ``cycles`` registers in the ``sync`` domain (0 returns it as is).

    ``value`` may be a Value or a ``lib.data`` View; the registers take its shape and are
    named ``{name}_0 .. {name}_{cycles-1}``. With ``keep`` they carry :data:`KEEP`.
    """
    if cycles < 0:
        raise ValueError(f"delay: cycles must be >= 0, got {cycles}")
    shape = value.shape()
    for i in range(cycles):
        reg = Signal(shape, name=f"{name}_{i}", attrs=KEEP if keep else {})
        m.d.sync += reg.eq(value)
        value = reg
    return value
