"""The README's configuration table, generated from the Settings fields so the two never drift."""

from __future__ import annotations

import re
from pathlib import Path

from deskml.settings import Settings

START, END = "<!-- config-table:start -->", "<!-- config-table:end -->"


def config_table() -> str:
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        if field.default_factory is not None:
            default = "computed" if name == "num_parallel" else repr(field.get_default(call_default_factory=True))
        else:
            default = str(field.default)
        rows.append(f"| `DESKML_{name.upper()}` | `{default}` | {field.description} |")
    return "\n".join(rows)


def update_readme(path: Path) -> bool:
    """Rewrite the table in place; returns True when the file changed."""
    text = path.read_text("utf-8")
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.S)
    new = pattern.sub(f"{START}\n{config_table()}\n{END}", text)
    if new != text:
        path.write_text(new, "utf-8")
    return new != text


if __name__ == "__main__":  # pragma: no cover - `python -m deskml.settings_doc` after adding a setting
    update_readme(Path(__file__).resolve().parent.parent / "README.md")
