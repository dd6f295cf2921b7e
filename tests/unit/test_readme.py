"""The README documents every setting and the two set-up commands."""

from pathlib import Path

from shared.settings import Settings

README = (Path(__file__).parents[2] / "README.md").read_text()


def test_every_setting_is_in_the_readme_table():
    missing = [f"SAMQ_{name.upper()}" for name in Settings.model_fields if f"`SAMQ_{name.upper()}`" not in README]
    assert missing == []


def test_set_up_commands_are_documented():
    assert "make run" in README and "make test" in README
