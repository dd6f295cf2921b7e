"""Print an image's requirement set from pyproject.toml: the base dependencies plus the extras named.

    python deploy/requirements.py pyproject.toml            # gateway and webhook sender: no torch
    python deploy/requirements.py pyproject.toml worker     # GPU worker

Used by the Dockerfiles (so an image installs exactly what pyproject.toml declares) and by
tests/unit/test_deploy.py (which checks the gateway's set, followed through its dependencies, has no torch).
Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path


def requirement_set(pyproject: Path, extras: list[str]) -> list[str]:
    """The requirement strings an image built with `extras` installs."""
    project = tomllib.loads(pyproject.read_text())["project"]
    optional = project.get("optional-dependencies", {})
    unknown = [e for e in extras if e not in optional]
    if unknown:
        raise SystemExit(f"unknown extras {unknown}; pyproject.toml has {sorted(optional)}")
    return [*project["dependencies"], *(req for extra in extras for req in optional[extra])]


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    print("\n".join(requirement_set(Path(sys.argv[1]), sys.argv[2:])))
