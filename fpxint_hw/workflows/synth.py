"""Synthesis as a library call: one spec through yosys (and nextpnr) to a flat record."""

from __future__ import annotations

import dataclasses

__all__ = ["synth_record"]


def synth_record(spec, target: str, *, pnr: bool = False, device=None, freq: float = 200.0,
                 seed: int = 1, lut_mult_below: int = 10, build_dir=None,
                 timeout=None, speed: int = 6) -> dict:
    """Synthesize (and place and route) ``spec``; return the flat figures as a dict.

    Keys: ``target``, ``luts``, ``ffs``, ``carries``, ``dsps``, ``brams``, ``lutrams``,
    ``srls``, ``muxes``, ``cells``, ``synth_seconds``, ``synth_cached``, ``tools``,
    ``workdir`` and with ``pnr``: ``fmax_mhz``, ``freq_mhz``, ``device``, ``critical_path``,
    ``pnr_seconds``, ``pnr_cached``, ``speed`` (the ECP5 speed grade), ``unplaced`` (smaller
    devices on which nextpnr found no legal placement).
    """
    from ..flow.pnr import place_and_route
    from ..flow.synth import FIELDS, synthesize
    s = synthesize(spec, target, build_dir=build_dir, lut_mult_below=lut_mult_below,
                   timeout=timeout)
    rec = {"target": s.target, **{f: getattr(s, f) for f in FIELDS}, "cells": s.cells,
           "synth_seconds": s.seconds, "synth_cached": s.cached, "tools": dict(s.tools),
           "lut_mult_below": lut_mult_below, "workdir": s.workdir}
    if pnr:
        r = place_and_route(s, device=device, freq_mhz=freq, seed=seed, timeout=timeout,
                            speed=speed)
        rec.update(speed=speed, fmax_mhz=r.fmax_mhz, freq_mhz=r.constraint_mhz, device=r.device,
                   critical_path=None if r.critical_path is None else
                   dataclasses.asdict(r.critical_path), pnr_seconds=r.seconds, pnr_cached=r.cached,
                   pnr_shell=r.shell, utilization=r.utilization, pnr_workdir=r.workdir,
                   unplaced=list(r.unplaced))
        rec["tools"].update(r.tools)
    return rec
