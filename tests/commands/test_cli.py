"""The `mozart` console script: help, version, unknown commands."""
from __future__ import annotations

import pytest

from mozart.cli import COMMANDS, main


def test_help_lists_every_command_and_says_what_mozart_is(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0
    assert "write new pieces in the style of a chosen composer" in out
    assert all(name in out for name in COMMANDS) and "dvc repro" in out


def test_no_command_prints_help(capsys):
    assert main([]) == 0
    assert "COMMAND" in capsys.readouterr().out


def test_unknown_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["compose-symphony"])
    assert exc.value.code == 2 and "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0 and f"mozart {command}" in capsys.readouterr().out
