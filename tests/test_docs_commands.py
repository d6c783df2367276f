"""Every `mirage ...` command written in README.md and docs/*.md parses as written.

Commands are collected from the fenced shell blocks (line continuations joined, comments
dropped), including those behind `python -m mirage`, `accelerate launch ... -m mirage[.cli]`
and `torchrun ... -m mirage`. Each is parsed by the real command line down to its last
subcommand (unknown commands, unknown options and values of the wrong type fail) without
running it; the commands that run on a CPU in seconds are run for real elsewhere
(`tests/pipeline/test_generate_cli.py`, `tests/test_demo.py`, `tests/test_cli_conventions.py`).
"""

import re
import shlex
from pathlib import Path

import pytest
import typer

try:  # typer >= 0.20 carries its own click
    from typer._click.exceptions import UsageError
except ImportError:
    from click.exceptions import UsageError

from mirage.cli import app

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LAUNCHERS = re.compile(r".*?(?:^|\s)(?:-m\s+mirage(?:\.cli)?|\$\(which mirage\)|^mirage)\s")


def _commands():
    for doc in DOCS:
        for block in re.findall(r"```(?:bash|sh)\n(.*?)```", doc.read_text(), re.S):
            for line in block.replace("\\\n", " ").splitlines():
                line = line.split(" #")[0].strip()
                match = LAUNCHERS.match(line + " ")
                if match and "..." not in line:  # "..." marks an elided example
                    yield pytest.param(line[match.end() :].strip(), id=f"{doc.name}: {line[:60]}")


def _left(ctx) -> list[str]:
    """What a group left for its subcommand (click keeps the subcommand name apart)."""
    protected = getattr(ctx, "_protected_args", None)
    if protected is None:
        protected = getattr(ctx, "protected_args", [])
    return [*protected, *ctx.args]


def _parse(group, args: list[str]) -> None:
    ctx = group.make_context("mirage", list(args))
    name, cmd, rest = group.resolve_command(ctx, _left(ctx))
    while hasattr(cmd, "resolve_command"):  # a group: go down to its subcommand
        ctx = cmd.make_context(name, rest, parent=ctx)
        name, cmd, rest = cmd.resolve_command(ctx, _left(ctx))
    cmd.make_context(name, rest, parent=ctx)  # options and their types, nothing run


@pytest.mark.parametrize("command", list(_commands()))
def test_documented_command_parses(command):
    args = shlex.split(command)
    if args in (["--help"], ["--version"]):
        return
    _parse(typer.main.get_command(app), args)


def test_the_collector_finds_the_documented_commands():
    found = [p.values[0] for p in _commands()]
    assert any(c.startswith("generate --scene") for c in found)
    assert any(c.startswith("train --data") for c in found)
    assert len(found) >= 20


@pytest.mark.parametrize(
    "bad",
    [
        ["generat", "--out", "x"],
        ["generate", "--no-such-flag"],
        ["demo", "--steps", "ten"],
        ["eval", "closed-loop", "--no-such-flag"],  # nested subcommands are checked too
    ],
)
def test_the_parser_refuses_what_the_cli_refuses(bad):
    with pytest.raises(UsageError):
        _parse(typer.main.get_command(app), bad)
