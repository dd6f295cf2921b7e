"""The README is a front page, every link in the docs stays inside the repository and lands, and every `make`
command the docs show is a target of the Makefile. (The settings table is checked in test_docs.py.)"""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_the_readme_is_a_front_page():
    assert len(README.splitlines()) <= 200, "move detail to docs/ (API.md, OPERATIONS.md, ARCHITECTURE.md)"
    for doc in ("docs/API.md", "docs/OPERATIONS.md", "docs/ARCHITECTURE.md", "docs/DEPLOY.md", "docs/RELIABILITY.md"):
        assert f"]({doc}" in README, f"the README links {doc}"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(doc: Path) -> set[str]:
    text = re.sub(r"^```[^\n]*\n.*?^```", "", doc.read_text(), flags=re.M | re.S)
    return {_slug(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}


def test_every_link_stays_in_the_repository_and_lands():
    broken = []
    for doc in DOCS:
        text = re.sub(r"^```[^\n]*\n.*?^```", "", doc.read_text(), flags=re.M | re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # https://..., mailto:
            path, _, anchor = target.partition("#")
            file = (doc.parent / path).resolve() if path else doc
            if not file.is_relative_to(ROOT) or not file.exists():
                broken.append(f"{doc.name}: {target} (no such file in the repository)")
            elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
                broken.append(f"{doc.name}: {target} (no such heading)")
    assert broken == []


def _code(markdown: str) -> str:
    """The text of a Markdown document's fenced blocks and inline code spans (where commands are shown)."""
    fenced = re.findall(r"^```[^\n]*\n(.*?)^```", markdown, flags=re.M | re.S)
    prose = re.sub(r"^```[^\n]*\n.*?^```", "", markdown, flags=re.M | re.S)
    return "\n".join(fenced + re.findall(r"`([^`\n]+)`", prose))


def test_every_make_command_the_docs_show_is_a_makefile_target():
    targets = set(re.findall(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", (ROOT / "Makefile").read_text(), flags=re.M))
    shown = {}
    for doc in DOCS:
        for target in re.findall(r"(?:^|[\s;&|(])make\s+([A-Za-z0-9_.-]+)", _code(doc.read_text()), flags=re.M):
            if "=" not in target:
                shown.setdefault(target, doc.name)
    assert {"run", "test"} <= set(shown)  # the quick start's two commands are shown
    assert {t: doc for t, doc in shown.items() if t not in targets} == {}
