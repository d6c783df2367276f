"""Command-line conventions: --version, help that shows bracketed defaults, no escapes in pipes."""

from typer.testing import CliRunner

from mirage import __version__
from mirage.cli import app


def test_version():
    res = CliRunner().invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"mirage {__version__}"


def test_help_keeps_bracketed_defaults():
    res = CliRunner().invoke(app, ["preprocess", "--help"])
    assert res.exit_code == 0 and "mixed [mixed]" in " ".join(res.output.split())


def test_progress_bars_stay_off_when_stderr_is_not_a_terminal(tmp_path):
    # CliRunner's streams are not terminals: a run must not write tqdm's carriage returns
    res = CliRunner().invoke(app, ["demo", "--quick", "--steps", "1", "--out", str(tmp_path / "d")])
    assert res.exit_code == 0, res.output
    assert "\r" not in res.output and "it/s" not in res.output
