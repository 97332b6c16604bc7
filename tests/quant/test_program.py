"""The program types: every engine handles every op, a program holds only ops, geometry once."""

from __future__ import annotations

import numpy as np
import pytest

from fpxint_hw import golden
from fpxint_hw.errors import FormatError
from fpxint_hw.intsim import executor, widths
from fpxint_hw.quant import OPS, QProgram, expand_graph
from fpxint_hw.quant.program import check_handlers, window_out


@pytest.mark.parametrize("table,engine", [(golden._RUN, "golden"), (executor._RUN, "intsim"),
                                          (widths._ROWS, "widths")])
def test_every_engine_handles_every_op(table, engine):
    assert set(OPS) <= set(table), f"{engine} lacks {set(OPS) - set(table)}"


def test_a_missing_handler_fails_at_import_time():
    table = dict(golden._RUN)
    del table[OPS[-1]]
    with pytest.raises(TypeError, match=OPS[-1].__name__):
        check_handlers(table, "golden")


def test_program_refuses_a_layer_that_is_no_op(tiny_graph):
    prog = expand_graph(tiny_graph, *tiny_formats())
    with pytest.raises(FormatError, match="not one of the integer ops"):
        QProgram(prog.layers + ("conv",), prog.output, "layer", prog.graph, prog.w_fmt,
                 prog.a_fmt)


@pytest.mark.parametrize("h,w,k,s,p,d", [(7, 9, (3, 3), (2, 1), (1, 0, 2, 1), (1, 2)),
                                         (5, 5, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1)),
                                         (8, 6, (3, 2), (3, 2), (2, 2, 2, 2), (2, 1))])
def test_window_out_is_the_size_golden_convolution_produces(h, w, k, s, p, d):
    x = np.zeros((1, 1, h, w), np.int64)
    wt = np.zeros((1, 1, *k), np.int64)
    out = golden.conv2d(x, wt, stride=s, padding=p, dilation=d)
    assert window_out((h, w), k, s, p, d) == out.shape[2:]


def tiny_formats():
    from fpxint_hw.spec import SeriesFormat
    return SeriesFormat(4, 2, per_channel=True), SeriesFormat(4, 2)


@pytest.fixture
def tiny_graph():
    from fpxint_hw.models import build_model
    return build_model("mnist-resnet", fold_bn=False)


@pytest.mark.parametrize("input_range, top", [((0.0, 1.0), 255), ((-1.0, 1.0), 63)])
def test_quantize_input_reaches_both_ends_of_its_grid_and_clamps(tiny_graph, input_range, top):
    """4-bit x 2-term pow2 inputs: unsigned digits 0..15 at weights 16, 1 (0..255); signed
    digits -7..7 at weights 8, 1 (-63..63). The range's ends map to the grid's ends."""
    from fpxint_hw.spec import SeriesFormat
    prog = expand_graph(tiny_graph, SeriesFormat(4, 2, per_channel=True), SeriesFormat(4, 2),
                        "layer", input_range=input_range)
    lo, hi = input_range
    x = np.array([[lo, hi, 2 * hi, hi + 10.0, 2 * lo - 1, 0.0]])
    bottom = 0 if lo == 0 else -top
    assert prog.quantize_input(x).tolist() == [[bottom, top, top, top, bottom, 0]]
