"""A whole network through the generated hardware, layer by layer, checked against the simulator.

:func:`run_network` runs an integer program compiled for an array (:func:`fpxint_hw.quant.
for_array`) on a float batch. Every conv and linear layer runs on the Verilated Verilog of
the array: the layer's input -- the *hardware's* output of the layers before it -- is cut
into whole-layer GEMM tiles (:func:`fpxint_hw.intsim.layer_tiles`, one per conv group), all
their passes go through the C++ harness in one call (:func:`fpxint_hw.flow.verilator.
run_tiles_verilator_timed`), and ``acc``, ``out`` and the output digits of every element are
compared with the simulator's tile runner (:func:`fpxint_hw.intsim.run_tile`) on the same
input; the layer's ``out`` also with the simulator's own layer. The operations between the
GEMMs (input quantization, pooling, residual adds, flatten) run on the host in the
simulator's integer semantics. The run stops at the first layer with a mismatch and names
the layer, the pass, the element, the PE and -- when one product explains the difference --
the lane (:func:`diagnose`).

Measured cycles per layer are the harness's count for that layer's passes back to back;
the cycle model's figure is :func:`fpxint_hw.costmodel.cycles.gemm_cycles` for the same
shape. The network total joins the layers as the array runs them one after another (each
layer's final FIFO drain hides under the next layer's weight load,
:data:`fpxint_hw.hw.timing.FIFO_STAGES`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..costmodel.cycles import gemm_cycles
from ..errors import InputError, MismatchError
from ..float_exec import to_nchw, to_nhwc
from ..hw import bits, layouts, timing
from ..hw.program import mismatches, pass_count, plan
from ..quant import program as P
from ..report import progress
from .toggles import by_block

__all__ = ["LayerCheck", "NetworkRun", "run_network", "diagnose"]


@dataclass
class LayerCheck:
    """One conv/linear layer on the hardware.

    Members
    -------
    name, node, kind : str
        The layer's tensor in the integer program, its graph node, ``conv`` or ``linear``.
    m, k, n, groups : int
        GEMM shape per group: ``m`` vectors (images x output positions), reduction ``k``,
        ``n`` outputs per group.
    passes : int
    cycles, model_cycles : int
        Measured on the RTL; predicted by the cycle model.
    seconds : float
        Wall time of the layer (tiles, harness, comparison).
    hw_seconds : float
        Wall time of the harness alone.
    mismatches : list of str
        Lines naming tile, element, row and column (empty: bit-exact).
    first_mismatch : dict or None
        :func:`diagnose` of the first difference.
    toggles : dict of str -> int or None
        Signal-bit toggles of the layer's run per array block
        (:func:`fpxint_hw.flow.toggles.by_block`; None: the model does not count them).
    """

    name: str
    node: str
    kind: str
    m: int
    k: int
    n: int
    groups: int
    passes: int = 0
    cycles: int = 0
    model_cycles: int = 0
    seconds: float = 0.0
    hw_seconds: float = 0.0
    mismatches: list[str] = field(default_factory=list)
    first_mismatch: dict | None = None
    toggles: dict[str, int] | None = None

    @property
    def macs(self) -> int:
        """Multi-term multiply-accumulates of the layer."""
        return self.groups * self.m * self.k * self.n

    def utilisation(self, spec) -> float:
        """Share of PE-cycles doing a useful MAC, from the measured cycles (0..1)."""
        return self.macs / (self.cycles * spec.rows * spec.cols) if self.cycles else 0.0


@dataclass
class NetworkRun:
    """Outcome of :func:`run_network`.

    Members
    -------
    layers : list of LayerCheck
        The layers that ran on the hardware, in order (up to the first mismatching one).
    host_layers : dict of str -> str
        Conv/linear layers that ran on the host instead, with the reason.
    output_hw, output_sim : ndarray
        The program's integer output from the hardware path and from the simulator alone
        (None when the run stopped at a mismatch).
    seconds : float
    """

    spec: object
    layers: list[LayerCheck]
    host_layers: dict[str, str]
    output_hw: np.ndarray | None = None
    output_sim: np.ndarray | None = None
    seconds: float = 0.0

    @property
    def mismatch(self) -> LayerCheck | None:
        """The layer that stopped the run, or None."""
        return next((lay for lay in self.layers if lay.mismatches), None)

    @property
    def outputs_equal(self) -> bool:
        """The hardware path's final output equals the simulator's, bit for bit."""
        return (self.output_hw is not None and self.output_sim is not None
                and np.array_equal(self.output_hw, self.output_sim))

    @property
    def ok(self) -> bool:
        """No mismatch and equal final outputs."""
        return self.mismatch is None and self.outputs_equal

    @property
    def cycles(self) -> int:
        """Measured cycles of the layers that ran, back to back."""
        return timing.back_to_back(lay.cycles for lay in self.layers)

    @property
    def model_cycles(self) -> int:
        """The cycle model's figure for the same layers, back to back."""
        return timing.back_to_back(lay.model_cycles for lay in self.layers)

    @property
    def utilisation(self) -> float:
        """Useful MACs over PE-cycles of the measured total (0..1)."""
        macs = sum(lay.macs for lay in self.layers)
        return macs / (self.cycles * self.spec.rows * self.spec.cols) if self.cycles else 0.0

    @property
    def toggles(self) -> dict[str, int] | None:
        """Signal-bit toggles of all layers per array block (None: not counted)."""
        if not self.layers or any(lay.toggles is None for lay in self.layers):
            return None
        total: dict[str, int] = {}
        for lay in self.layers:
            for blk, n in lay.toggles.items():
                total[blk] = total.get(blk, 0) + n
        return dict(sorted(total.items(), key=lambda kv: -kv[1]))


def run_network(program, x: np.ndarray, model, *, layers=None, processes: int = 2,
                ready: float = 1.0, valid: float = 1.0, seed: int = 0,
                label: str = "rtl") -> NetworkRun:
    """Run ``program`` (compiled for ``model.spec``) on float batch ``x`` through ``model``.

    ``model``: a built :class:`fpxint_hw.flow.verilator.VerilatorModel`. ``layers``: the
    conv/linear layers to run on the hardware, by graph node or tensor name (default: all
    that fit the array; the others run on the host, listed in ``host_layers``).
    ``processes``: harness processes per layer (independent column blocks side by side).
    ``ready`` / ``valid``: handshake probabilities per cycle (below 1 the measured cycles
    include the stalls and exceed the cycle model's). Stops at the first layer whose results
    differ from the simulator's.
    """
    from ..intsim import Simulator

    spec = model.spec
    target = program.target
    if target is None:
        raise InputError("run_network: the program was not compiled for an array (use "
                         "fpxint_hw.quant.for_array with the spec)")
    if target.spec != spec:
        raise InputError(f"run_network: the program was compiled for array {target.name}, "
                         f"not for the model's spec")
    gemms = program.gemm_layers()
    if layers is None:
        chosen = {q.name for q in gemms}
    else:
        by_name = {alias: q.name for q in gemms for alias in (q.name, q.node)}
        unknown = [name for name in layers if name not in by_name]
        if unknown:
            raise InputError(f"--layers: {', '.join(unknown)} is not a conv/linear layer of "
                             f"{program.graph.name!r}; its layers are "
                             f"{', '.join(q.node for q in gemms)}")
        chosen = {by_name[name] for name in layers}
    host = {q.name: target.misfits[q.name] for q in gemms
            if q.name in chosen and q.name in target.misfits}
    host.update({q.name: "not selected (--layers)" for q in gemms if q.name not in chosen})
    sim = Simulator(program)
    start = time.perf_counter()
    run = NetworkRun(spec, [], host)
    on_hw = [q for q in program.gemm_layers() if q.name not in host]
    with progress(len(on_hw), label, "layer") as bar:
        return _run_layers(program, spec, x, sim, run, host, bar, start, model=model,
                           processes=processes, ready=ready, valid=valid, seed=seed)


def _run_layers(program, spec, x, sim, run, host, bar, start, *, model, processes, ready,
                valid, seed) -> NetworkRun:
    """The layer loop of :func:`run_network`: array layers on the RTL, the rest simulated."""
    from ..intsim import layer_tiles, run_tile
    from .verilator import run_tiles_verilator_timed

    env: dict[str, np.ndarray] = {}
    last_use = {i: k for k, q in enumerate(program.layers) for i in q.inputs}
    for k, q in enumerate(program.layers):
        # a tensor is dropped after its last reader (the output is kept)
        for i in [i for i in env if last_use.get(i, -1) < k and i != program.output]:
            del env[i]
        if isinstance(q, P.Quantize):
            env[q.name] = to_nhwc(program.quantize_input(x))
            continue
        args = [env[i] for i in q.inputs]
        if not isinstance(q, P.GemmOp) or q.name in host:
            env[q.name] = sim.run_layer(q, args)
            continue
        t0 = time.perf_counter()
        tiles = layer_tiles(program, q.name, args[0], sim)
        hw = run_tiles_verilator_timed(spec, tiles, model=model, processes=processes,
                                       ready=ready, valid=valid, seed=seed,
                                       names=[f"{q.name}[{g}]" for g in range(len(tiles))])
        check = LayerCheck(q.name, q.node, q.kind, tiles[0].m, tiles[0].k, tiles[0].n,
                           len(tiles), passes=len(hw.passes), cycles=hw.cycles,
                           hw_seconds=hw.seconds,
                           toggles=None if hw.toggles is None else by_block(hw.toggles))
        check.model_cycles = gemm_cycles(spec, check.m, check.k, check.n, check.groups,
                                         name=q.name).cycles
        expected = [run_tile(t) for t in tiles]
        pass0 = 0
        for g, (tile, exp, got) in enumerate(zip(tiles, expected, hw.results)):
            lines = mismatches(spec, exp, got, f"{q.name}[{g}]", limit=5)
            if lines and not check.mismatches:
                check.first_mismatch = diagnose(spec, model, q, tile, exp, got, g, pass0,
                                                args[0].shape)
            check.mismatches += lines
            pass0 += pass_count(spec, tile)
        # a final layer without requantization outputs its exact accumulator
        out = _layer_output(q, args[0].shape, [r.out if q.requant is not None else r.acc
                                                for r in hw.results])
        if not check.mismatches:
            ref = sim.run_layer(q, args)
            if not np.array_equal(ref, out):
                raise MismatchError(f"layer {q.name!r}: the simulator's layer and its tile "
                                    f"runner disagree (a simulator bug, not the hardware's)")
        check.seconds = time.perf_counter() - t0
        run.layers.append(check)
        bar.update(1)
        if check.mismatches:
            run.seconds = time.perf_counter() - start
            return run
        env[q.name] = out
    run.output_hw = to_nchw(env[program.output])
    run.output_sim = sim(x)
    run.seconds = time.perf_counter() - start
    return run


def _layer_output(q, in_shape, outs: list[np.ndarray]) -> np.ndarray:
    """Per-group ``(M, N/g)`` hardware outputs as the layer's channels-last tensor."""
    out = np.concatenate(outs, axis=1)
    dtype = np.int32 if q.requant is not None else np.int64
    if isinstance(q, P.Linear):
        return out.reshape(*in_shape[:-1], -1).astype(dtype)
    ho, wo = q.out_hw(in_shape[1], in_shape[2])
    return out.reshape(in_shape[0], ho, wo, -1).astype(dtype)


def diagnose(spec, model, q, tile, expected, got, group: int, pass0: int, in_shape) -> dict:
    """Where the first difference of a tile comes from.

    Finds the first differing element (``acc`` before ``out`` before the digits), its output
    position and its array column. An ``acc`` difference is traced by re-running the
    element's column block with every pass's results kept: the first K chunk whose partial
    sum differs is the pass, and a difference equal to (minus) one lane product
    ``m_k n_j w_k[r, n] a_j[m, r]`` of that chunk names the PE row ``r`` and the lane
    ``(k, j)`` (doubled / dropped). An ``out`` or digit difference with a right ``acc`` is
    the column's output unit. Returns a dict for the report and the JSON.
    """
    from .verilator import run_jobs_verilator

    what, m, n = _first_difference(expected, got)
    block, col = divmod(n, spec.cols)
    chunks = max(1, -(-tile.k // spec.rows))
    info = {"layer": q.node, "tensor": q.name, "group": group, "element": what, "m": m, "n": n,
            "channel": group * tile.n + n, "position": _position(q, in_shape, m),
            "block": block, "pe_column": col, "pe_row": None, "lane": None,
            "pass": pass0 + block * chunks + chunks - 1,
            "got": _value(got, what, m, n), "expected": _value(expected, what, m, n)}
    if what != "acc":
        info["explanation"] = (f"acc is right; the output unit of array column {col} "
                               f"(requantization / digit split) differs")
        return info
    jobs = [j for j in plan(spec, tile, q.name) if j.n0 == block * spec.cols]
    if len(jobs) != chunks:
        info["explanation"] = (f"column block {block} ran {len(jobs)} passes; K = {tile.k} "
                               f"needs {chunks} of {spec.rows} rows")
        return info
    beats, _, _, _ = run_jobs_verilator(model, jobs, keep="all")
    rl = layouts.result(spec)
    got_sums = [int(bits.unpack(rl, b[m:m + 1])[("acc", col)][0]) if len(b) > m else None
                for b in beats]
    w = tile.weights.astype(np.int64)[:, :, n]                    # (T_w, K)
    a = tile.acts.astype(np.int64)[:, m, :]                       # (T_a, K)
    lanes = [(k, j, tile.w_fmt.lane_weights[k] * tile.a_fmt.lane_weights[j])
             for k in range(w.shape[0]) for j in range(a.shape[0]) if tile.mask[k, j]]
    prev_got, prev_exp = 0, 0
    for c in range(chunks):
        k0, k1 = c * spec.rows, min(tile.k, (c + 1) * spec.rows)
        exp_sum = (int(tile.bias[n]) if c == 0 else 0) + prev_exp + sum(
            s * int(w[k, k0:k1] @ a[j, k0:k1]) for k, j, s in lanes)
        if got_sums[c] is not None and got_sums[c] == exp_sum:
            prev_got, prev_exp = got_sums[c], exp_sum
            continue
        info["pass"] = pass0 + block * chunks + c
        info["chunk"] = c
        if got_sums[c] is None:
            info["explanation"] = f"pass {c} of the block returned no result for row {m}"
            return info
        diff = (got_sums[c] - prev_got) - (exp_sum - prev_exp)
        hits = [(r, k, j, sign) for r in range(k0, k1) for k, j, s in lanes
                for sign in (1, -1) if s * w[k, r] * a[j, r] != 0
                and diff == sign * s * w[k, r] * a[j, r]]
        if len(hits) == 1:
            r, k, j, sign = hits[0]
            info["pe_row"], info["lane"] = r - k0, [k, j]
            info["explanation"] = (f"one product {'too many' if sign > 0 else 'missing'}: "
                                   f"PE (row {r - k0}, column {col}), lane (w term {k}, a term "
                                   f"{j}), K index {r}")
        elif c > 0 and abs(diff) & (abs(diff) - 1) == 0:
            info["explanation"] = (f"the partial sum chained into K chunk {c} is off by "
                                   f"{diff} = {'-' if diff < 0 else ''}2^"
                                   f"{abs(diff).bit_length() - 1}: bit "
                                   f"{abs(diff).bit_length() - 1} of the psum chain")
        else:
            info["explanation"] = (f"partial sum after K chunk {c} is off by {diff}; "
                                   f"{len(hits) or 'no'} single lane products match it")
        return info
    info["explanation"] = "every partial sum of the re-run block is right (not reproducible)"
    return info


def _first_difference(expected, got) -> tuple[str, int, int]:
    pairs = [("acc", expected.acc, got.acc), ("out", expected.out, got.out)]
    if expected.out_digits is not None and got.out_digits is not None:
        pairs += [(f"digit {t + 1}", e, g)
                  for t, (e, g) in enumerate(zip(expected.out_digits, got.out_digits))]
    for what, e, g in pairs:
        diff = np.argwhere(np.asarray(e) != np.asarray(g))
        if diff.size:
            return what, int(diff[0][0]), int(diff[0][1])
    raise MismatchError("diagnose: the results do not differ")


def _value(result, what: str, m: int, n: int) -> int:
    if what == "acc":
        return int(result.acc[m, n])
    if what == "out":
        return int(result.out[m, n])
    return int(result.out_digits[int(what.split()[1]) - 1][m, n])


def _position(q, in_shape, m: int) -> dict:
    """Image and output pixel of im2col row ``m``."""
    if isinstance(q, P.Linear):
        return {"image": m}
    ho, wo = q.out_hw(in_shape[1], in_shape[2])
    image, rest = divmod(m, ho * wo)
    y, x = divmod(rest, wo)
    return {"image": image, "y": y, "x": x}
