"""Progress bars: on a terminal only, silenced for machine-readable runs."""

import io

from fpxint_hw import report
from fpxint_hw.cli import main


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def _terminal(monkeypatch, show=True):
    # set inside the test: pytest replaces sys.stderr again when the test body starts
    err = _Terminal()
    monkeypatch.setattr("sys.stderr", err)
    monkeypatch.setattr(report, "SHOW_PROGRESS", show)
    return err


def _run(total):
    with report.progress(total, "simulate", "image") as bar:
        for _ in range(total):
            bar.update(1)


def test_a_terminal_sees_the_bar(monkeypatch):
    err = _terminal(monkeypatch)
    _run(5)
    assert "simulate" in err.getvalue() and "/5" in err.getvalue()


def test_no_bar_for_one_item_when_silenced_or_off_a_terminal(monkeypatch):
    err = _terminal(monkeypatch)
    _run(1)
    monkeypatch.setattr(report, "SHOW_PROGRESS", False)
    _run(5)
    assert err.getvalue() == ""
    plain = io.StringIO()                      # CI: stderr is a pipe
    monkeypatch.setattr("sys.stderr", plain)
    monkeypatch.setattr(report, "SHOW_PROGRESS", True)
    _run(5)
    assert plain.getvalue() == ""


def test_json_runs_show_no_bar(monkeypatch, tmp_path):
    err = _terminal(monkeypatch)
    assert main(["simulate", "--model", "mnist-resnet", "--images", "16", "--batch", "4",
                 "--json", str(tmp_path / "r.json")]) == 0
    assert "simulate" not in err.getvalue()
    assert (tmp_path / "r.json").is_file()
    err = _terminal(monkeypatch)               # the same run without --json shows it
    assert main(["simulate", "--model", "mnist-resnet", "--images", "16", "--batch", "4"]) == 0
    assert "simulate k=" in err.getvalue()
