"""The README documents every setting, and every `make` command the docs show is a target of the Makefile."""

import re
from pathlib import Path

from shared.settings import Settings

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text()


def test_every_setting_is_in_the_readme_table():
    missing = [f"SAMQ_{name.upper()}" for name in Settings.model_fields if f"`SAMQ_{name.upper()}`" not in README]
    assert missing == []


def _code(markdown: str) -> str:
    """The text of a Markdown document's fenced blocks and inline code spans (where commands are shown)."""
    fenced = re.findall(r"^```[^\n]*\n(.*?)^```", markdown, flags=re.M | re.S)
    prose = re.sub(r"^```[^\n]*\n.*?^```", "", markdown, flags=re.M | re.S)
    return "\n".join(fenced + re.findall(r"`([^`\n]+)`", prose))


def test_every_make_command_the_docs_show_is_a_makefile_target():
    targets = set(re.findall(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", (ROOT / "Makefile").read_text(), flags=re.M))
    shown = {}
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"(?:^|[\s;&|(])make\s+([A-Za-z0-9_.-]+)", _code(doc.read_text()), flags=re.M):
            if "=" not in target:
                shown.setdefault(target, doc.name)
    assert {"run", "test"} <= set(shown)  # the quick start's two commands are shown
    assert {t: doc for t, doc in shown.items() if t not in targets} == {}
