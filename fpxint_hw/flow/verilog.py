"""Export the accelerator of an ArraySpec as Verilog (``amaranth.back.verilog``).

The top module is :data:`~fpxint_hw.hw.top.TOP_NAME` (``fpxint_array``). Its ports are the
component's signature flattened with ``__`` (``a_in__payload``, ``a_in__valid``,
``a_in__ready``, ...) plus ``clk`` and ``rst`` (synchronous, active high). Payload ports are
flat bit vectors laid out by :mod:`fpxint_hw.hw.layouts`; :func:`ports` lists them with their
widths and :func:`fields` gives every field's bit offset.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from amaranth.back import verilog
from amaranth.hdl import Shape

from ..spec import ArraySpec
from ..hw import bits, layouts, timing
from ..hw.multiplier import DspPrimitives
from ..hw.top import TOP_NAME, Accelerator, accelerator_signature

__all__ = ["TOP_NAME", "Port", "ports", "fields", "convert", "write_verilog", "header"]

_PORT_DOC = {
    "w_in": "weight rows, rows beats per pass, last array row first",
    "cfg_in": "per-pass constants: bias, M0, shift, zero point, clamp range, lane mask",
    "a_in": "one activation vector (digits) and preloaded partial sums per beat",
    "o_out": "one result per vector: acc, out and digits of every column",
    "busy": "a vector is in flight",
}


@dataclass(frozen=True)
class Port:
    """One port of the exported top: Verilog name, ``input``/``output``, width, meaning."""

    name: str
    direction: str
    width: int
    doc: str


def ports(spec: ArraySpec) -> list[Port]:
    """The top module's ports in declaration order (``clk`` and ``rst`` first)."""
    out = [Port("clk", "input", 1, "clock, rising edge"),
           Port("rst", "input", 1, "synchronous reset, active high")]
    for path, member in accelerator_signature(spec).members.flatten():
        if not member.is_port:
            continue
        doc = _PORT_DOC.get(path[0], "")
        if len(path) > 1:
            doc = f"{path[-1]} of {path[0]}: {doc}" if path[-1] == "payload" else path[-1]
        out.append(Port("__".join(path), "input" if member.flow.value == "In" else "output",
                        Shape.cast(member.shape).width, doc))
    return out


def fields(spec: ArraySpec) -> dict[str, list[tuple[str, int, int, bool]]]:
    """Field map of every payload port: ``{port: [(field, offset, width, signed)]}``."""
    lays = {"w_in__payload": layouts.weight_row(spec), "cfg_in__payload": layouts.config(spec),
            "a_in__payload": layouts.act_vector(spec), "o_out__payload": layouts.result(spec)}
    return {port: [(".".join(str(p) for p in path), off, w, sgn)
                   for path, off, w, sgn in bits.leaves(lay)]
            for port, lay in lays.items()}


def header(spec: ArraySpec) -> str:
    """A Verilog comment block: the spec, derived figures, ports and payload fields."""
    lines = [f"// {TOP_NAME}: fpxint-hw systolic array, generated from this ArraySpec:"]
    lines += [f"//   {k}: {v}" for k, v in spec.to_dict().items()]
    lines += [f"// derived: {k} = {v}" for k, v in timing.summary(spec).items()]
    lines.append("// ports:")
    lines += [f"//   {p.direction:6} [{p.width:4}] {p.name:16} {p.doc}" for p in ports(spec)]
    lines.append("// payload fields (name offset width):")
    for port, fl in fields(spec).items():
        lines.append(f"//   {port}: " + ", ".join(f"{n}@{o}:{w}" for n, o, w, _ in fl[:8])
                     + (f", ... ({len(fl)} fields)" if len(fl) > 8 else ""))
    return "\n".join(lines) + "\n"


def convert(spec: ArraySpec, dsp: str | None = None, lut_mult_below: int = 10) -> str:
    """Verilog text of the accelerator (top module ``fpxint_array``), header included.

    ``dsp="ecp5"`` builds the output units' ``acc x M0`` tiles from ECP5 ``MULT18X18D``
    primitives with their registers on (for synthesis), unless M0 or the accumulator is
    narrower than ``lut_mult_below`` bits (then LUTs build it). The default is plain
    Verilog arithmetic with the same registers (for simulation and any synthesizer).
    """
    platform = DspPrimitives(dsp, lut_mult_below) if dsp else None
    text = verilog.convert(Accelerator(spec), name=TOP_NAME, emit_src=False, platform=platform)
    return header(spec) + text


def write_verilog(spec: ArraySpec, path, dsp: str | None = None) -> Path:
    """Write :func:`convert` to ``path`` atomically (parent folders are created); returns the
    path."""
    from ..outputs import write_text
    path = Path(path)
    write_text(path, convert(spec, dsp))
    return path
