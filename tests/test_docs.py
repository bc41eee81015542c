"""Docs that must stay true: the README's config table matches the settings."""

from __future__ import annotations

from pathlib import Path

from deskml.settings_doc import END, START, config_table

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_config_table_is_current() -> None:
    text = README.read_text("utf-8")
    table = text.split(START, 1)[1].split(END, 1)[0].strip()
    assert table == config_table(), "run `python -m deskml.settings_doc` to refresh the README table"


def test_readme_has_the_two_commands() -> None:
    text = README.read_text("utf-8")
    assert "make serve" in text and "make test" in text
