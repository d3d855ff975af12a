"""The README's command and settings tables agree with the code.

The "Commands" section has one table per script (`### provision.py`, ...), one row per
option: `| flag | default | meaning |`. The first cell names the option strings in
backticks (`` `--stack NAME` ``, `` `-h`, `--help` ``); the default cell says `off` for a
switch, `none` for a repeatable flag that starts empty, the value in backticks for a
flag with a parser default, and in words (any value in backticks taken from the flag's
help text) for a flag whose default comes from elsewhere. The "Settings" table has one
row per `deploy.toml` key, with its default written as TOML.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from dataclasses import MISSING, Field, fields
from pathlib import Path

import pytest

from deployer import cli
from deployer.settings import Settings

README = Path(__file__).resolve().parent.parent / "README.md"
MAX_LINES = 390  # a user page: the security table (issue 11) raised it from 250, "Your own domain" (issue 12) to 350,
# "Scaling" and its steps (issue 13) to 390

PARSERS: dict[str, Callable[[], argparse.ArgumentParser]] = {
    "provision.py": cli.provision_parser,
    "teardown.py": cli.teardown_parser,
    "status.py": cli.status_parser,
    "logs.py": cli.logs_parser,
}

OPTION = re.compile(r"`(--?[a-z][a-z0-9-]*)")
CODE = re.compile(r"`([^`]+)`")
COMMAND_LINE = re.compile(r"\bpython3? (provision|teardown|status|logs)\.py\b([^`#\n]*)")
FLAG = re.compile(r"(?<![\w-])(--?[a-z][a-z0-9-]*)")


def readme_text() -> str:
    return README.read_text(encoding="utf-8")


def section(text: str, heading: str, level: int = 2) -> str:
    """The body of the section `heading` (a markdown heading of `level`), up to the next heading of that level."""
    marks = "#" * level
    match = re.search(rf"^{marks} {re.escape(heading)}\s*$(.*?)(?=^{marks} |\Z)", text, re.MULTILINE | re.DOTALL)
    assert match is not None, f"README.md has no '{marks} {heading}' section"
    return match.group(1)


def table_rows(body: str) -> list[list[str]]:
    """The cells of each data row of the first markdown table in `body` (header and rule left out)."""
    lines = [line.strip() for line in body.splitlines()]
    start = next((i for i, line in enumerate(lines) if line.startswith("|")), None)
    assert start is not None, "no table found"
    rows: list[list[str]] = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def command_table(script: str) -> dict[str, tuple[str, str]]:
    """Option string -> (default cell, meaning cell), from the README's table for `script`."""
    body = section(section(readme_text(), "Commands"), script, level=3)
    documented: dict[str, tuple[str, str]] = {}
    for row in table_rows(body):
        assert len(row) == 3, f"{script}: a row is not 'flag | default | meaning': {row}"
        options = OPTION.findall(row[0])
        assert options, f"{script}: a row names no option: {row}"
        for option in options:
            assert option not in documented, f"{script}: {option} has two rows"
            documented[option] = (row[1], row[2])
    return documented


def parser_actions(script: str) -> dict[str, argparse.Action]:
    """Option string -> its argparse action, for every option the script's parser accepts."""
    parser = PARSERS[script]()
    return {option: action for action in parser._actions for option in action.option_strings}


def toml_literal(value: object) -> str:
    """A settings default as deploy.toml would spell it."""
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(toml_literal(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key} = {toml_literal(item)}" for key, item in value.items()) + "}"
    raise TypeError(f"no TOML spelling for {value!r}")


def field_default(item: Field[object]) -> object:
    if item.default is not MISSING:
        return item.default
    assert item.default_factory is not MISSING, f"setting {item.name} has no default"
    return item.default_factory()


def test_readme_stays_a_page() -> None:
    lines = readme_text().splitlines()
    assert len(lines) <= MAX_LINES, f"README.md has {len(lines)} lines; keep it to {MAX_LINES}"


@pytest.mark.parametrize("script", sorted(PARSERS))
def test_every_option_of_the_parser_is_in_the_readme(script: str) -> None:
    missing = sorted(set(parser_actions(script)) - set(command_table(script)))
    assert not missing, f"README.md's {script} table leaves out {missing}"


@pytest.mark.parametrize("script", sorted(PARSERS))
def test_every_option_in_the_readme_table_exists(script: str) -> None:
    unknown = sorted(set(command_table(script)) - set(parser_actions(script)))
    assert not unknown, f"README.md's {script} table names options {script} does not accept: {unknown}"


@pytest.mark.parametrize("script", sorted(PARSERS))
def test_stated_defaults_match_the_parser(script: str) -> None:
    actions = parser_actions(script)
    for option, (cell, _meaning) in command_table(script).items():
        action = actions[option]
        default = action.default
        if isinstance(action, argparse._HelpAction | argparse._StoreTrueAction):
            assert cell == "off", f"{script} {option}: a switch's default is 'off', README says {cell!r}"
        elif default == [] and isinstance(action, argparse._AppendAction):
            assert cell == "none", f"{script} {option}: starts empty, README says {cell!r}"
        elif default is not None:
            assert cell == f"`{default}`", f"{script} {option}: parser default {default!r}, README says {cell!r}"
        else:
            # The default comes from elsewhere (settings, state file, another flag): every value the README
            # quotes for it must be one the flag's own help text names.
            help_text = action.help or ""
            for value in CODE.findall(cell):
                assert value in help_text, (
                    f"{script} {option}: README's default {value!r} is not in the flag's help {help_text!r}"
                )


@pytest.mark.parametrize("script", sorted(PARSERS))
def test_a_choice_flag_lists_its_choices(script: str) -> None:
    rows = section(section(readme_text(), "Commands"), script, level=3)
    for option, action in parser_actions(script).items():
        if action.choices is not None and option.startswith("--"):
            spelled = f"`{option} {{{','.join(map(str, action.choices))}}}`"
            assert spelled in rows, f"{script}: README should spell {option} as {spelled}"


def test_every_flag_on_a_command_line_in_the_readme_exists() -> None:
    """`python provision.py --local` and the like, anywhere in the README (code blocks and prose)."""
    text = readme_text()
    seen = 0
    for match in COMMAND_LINE.finditer(text):
        script = f"{match.group(1)}.py"
        accepted = set(parser_actions(script))
        for flag in FLAG.findall(match.group(2)):
            seen += 1
            assert flag in accepted, f"README.md runs '{match.group(0).strip()}', but {script} has no {flag}"
    assert seen, "the README shows no command line with a flag: is the pattern still right?"


def test_every_setting_is_documented_with_its_default() -> None:
    rows = table_rows(section(readme_text(), "Settings"))
    documented: dict[str, str] = {}
    for row in rows:
        keys = CODE.findall(row[0])
        assert len(keys) == 1, f"Settings table: one key per row, got {row[0]!r}"
        documented[keys[0]] = row[1]
    known = {item.name: item for item in fields(Settings)}
    assert sorted(set(known) - set(documented)) == [], "settings missing from README.md's Settings table"
    assert sorted(set(documented) - set(known)) == [], "README.md documents settings that do not exist"
    for name, cell in documented.items():
        default = field_default(known[name])
        if default is None:
            assert cell.startswith("none"), f"setting {name}: no default, README says {cell!r}"
        else:
            assert cell == f"`{toml_literal(default)}`", f"setting {name}: default {default!r}, README says {cell!r}"


def test_readme_names_every_script() -> None:
    text = readme_text()
    for script in PARSERS:
        assert f"python {script}" in text, f"README.md never shows how to run {script}"
