"""Every command's --help reads well: options and arguments are named by what they take
(URL, SECONDS, QUEUE, ID), never by a Python type placeholder such as ``<str>`` or
``<bool>``."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from pgq import cli

cli._register_commands()
COMMANDS = sorted(c.name or c.callback.__name__ for c in cli.app.registered_commands)  # type: ignore[union-attr]
TYPE_PLACEHOLDER = re.compile(r"<(str|bool|int|float|list\[[a-z]+\])[^>]*>")


def test_every_command_is_listed() -> None:
    assert {"work", "enqueue", "cancel", "retry", "migrate"} <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_no_python_type_placeholders(command: str) -> None:
    result = CliRunner().invoke(cli.app, [command, "--help"], terminal_width=100)
    assert result.exit_code == 0, result.output
    assert not TYPE_PLACEHOLDER.findall(result.output), result.output
    assert not re.search(r"\b(\w+) \1\b", result.output), "a doubled word in the help"
