"""Every command's --help reads well: options are named by what they take (URL, SECONDS,
QUEUE), never by a Python type placeholder such as ``<str>`` or ``<bool>``."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from pgq import cli

cli._register_commands()
COMMANDS = sorted(c.name or c.callback.__name__ for c in cli.app.registered_commands)  # type: ignore[union-attr]
TYPE_PLACEHOLDER = re.compile(r"<(str|bool|int|float|list\[[a-z]+\])[^>]*>")


def options_section(text: str) -> str:
    return text.split("\nOptions:", 1)[1]


def test_every_command_is_listed() -> None:
    assert {"work", "enqueue", "cancel", "retry", "migrate"} <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_options_show_no_python_type_placeholders(command: str) -> None:
    result = CliRunner().invoke(cli.app, [command, "--help"], terminal_width=100)
    assert result.exit_code == 0, result.output
    options = options_section(result.output)
    assert not TYPE_PLACEHOLDER.findall(options), options
    assert not re.search(r"\b(\w+) \1\b", result.output), "a doubled word in the help"
