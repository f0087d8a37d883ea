"""Every `--help` reads plainly: values named in the Unix way, never by their Python type."""

from __future__ import annotations

import re

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from fleetguard.cli.main import app, command_paths

runner = CliRunner()

# What typer prints for a parameter with no metavar: `<bool>`, `<list[str]>`, `<int range>`,
# `<a|b|c>`, and `{name}` for a required argument on the usage line.
TYPE_NOISE = re.compile(r"<[a-z_|\[\] -]+>|\{[a-z_]+\}")


def _help(path: list[str]) -> str:
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("path", command_paths(), ids=lambda p: " ".join(p) or "fleetguard")
def test_help_names_no_python_type(path: list[str]) -> None:
    assert TYPE_NOISE.findall(_help(path)) == []


def test_usage_names_a_required_argument_in_capitals() -> None:
    assert "Usage: fleetguard device set [OPTIONS] DEVICE_ID" in _help(["device", "set"])


def test_usage_marks_a_repeated_argument_with_dots() -> None:
    assert "Usage: fleetguard scan [OPTIONS] TARGETS..." in _help(["scan"])


def test_a_flag_shows_no_value() -> None:
    line = next(line for line in _help(["scan"]).splitlines() if "--no-credentials" in line)
    assert re.search(r"--no-credentials\s+Never attempt a login", line), line


def _words(text: str) -> str:
    """The help as one line of words, its box and wrapping gone."""
    return " ".join(text.replace("│", " ").split())


def test_a_choice_lists_its_values_in_its_help() -> None:
    assert re.search(
        r"--state STATE [^-]*One of: registered, active, quarantined, suspended, decommissioned\.",
        _words(_help(["device", "list"])),
    )


def test_a_metavar_chosen_in_the_source_is_kept() -> None:
    assert re.search(r"--fail-on\s+SEVERITY", _help(["scan"]))


def test_top_level_help_says_the_agent_runs() -> None:
    assert "agent The device agent: enroll, renew, run." in _words(_help([]))


def test_agent_help_lists_run() -> None:
    commands = [line.split()[1] for line in _help(["agent"]).splitlines()
                if line.startswith("│ ") and len(line.split()) > 2]
    assert {"enroll", "renew", "run"} <= set(commands)


def test_every_help_fits_80_columns() -> None:
    for path in command_paths():
        assert max(len(line) for line in _help(path).splitlines()) <= 80, path


def test_every_option_says_what_it_is_for() -> None:
    root = get_command(app)
    unexplained = []
    for path in command_paths():
        command = root
        for name in path:
            command = command.commands[name]  # type: ignore[attr-defined]
        unexplained += [f"{' '.join(path)} {param.opts[0]}" for param in command.params
                        if param.param_type_name == "option" and not getattr(param, "help", None)]
    assert unexplained == []
