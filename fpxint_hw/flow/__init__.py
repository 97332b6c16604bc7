"""Tool flows around the generated hardware: Verilog export, Verilator co-simulation, formal.

Each module runs one external tool and keeps its knowledge of that tool in one place:
:mod:`~fpxint_hw.flow.verilog` (Amaranth's Verilog back end),
:mod:`~fpxint_hw.flow.verilator` (build and run the C++ harness of ``data/sim/``) and
:mod:`~fpxint_hw.flow.formal` (SymbiYosys with an SMT solver).
"""

__all__: list[str] = []
