"""Override files: what allocate writes, simulate and the sweep read; errors name the file and
the entry."""

from __future__ import annotations

import pytest

from fpxint_hw.errors import InputError
from fpxint_hw.quant import LayerFormats
from fpxint_hw.quant.overrides import load_overrides, parse_override, write_overrides
from fpxint_hw.spec import SeriesFormat


def test_round_trip_keeps_every_format(tmp_path):
    layers = {"conv1": LayerFormats(SeriesFormat(4, 3, per_channel=True), SeriesFormat(4, 2)),
              "input": LayerFormats(None, SeriesFormat(8, 1))}
    f = tmp_path / "o.yaml"
    write_overrides(f, layers, record={"model": "m", "lane_macs": 12})
    back = load_overrides(f)
    assert back["conv1"] == layers["conv1"]
    assert back["input"].a_fmt == layers["input"].a_fmt
    assert not list(tmp_path.glob(".*tmp"))                 # no temporary left behind


@pytest.mark.parametrize("text,match", [
    ("layers: {conv1: 4x2}", r"layers\.conv1"),
    ("layers: {conv1: 4xq/4x2}", r"layers\.conv1"),
    ("layers: [conv1]", "expected a mapping"),
    ("scale: linear\nlayers: {conv1: 4x2/4x2}", "scale must be"),
    ("layers: {conv1: 4x2/4x2", "not valid YAML"),
    ("layers: {conv1: 4x9/4x2}", r"layers\.conv1"),
])
def test_bad_files_name_the_file_and_entry(tmp_path, text, match):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(InputError, match=match) as e:
        load_overrides(f)
    assert "bad.yaml" in str(e.value)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="cannot read"):
        load_overrides(tmp_path / "none.yaml")


def test_parse_override_names_the_flag():
    assert parse_override("c=8x2/4x3")[1].a_fmt.terms == 3
    with pytest.raises(InputError, match="--override 'c=8'"):
        parse_override("c=8")
