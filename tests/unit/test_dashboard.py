"""deploy/grafana/samq.json charts the metrics the code exports and docs/OPERATIONS.md documents: no more, no fewer."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NAME = re.compile(r"\bsamq_[a-z_]+")


def base(name: str) -> str:
    """A metric's family name: without the suffixes Prometheus adds to counters and histograms."""
    return re.sub(r"_(total|bucket|sum|count)$", "", name)


def test_dashboard_docs_and_code_name_the_same_metrics():
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "samq.json").read_text())
    charted = {base(n) for p in dashboard["panels"] for t in p.get("targets", []) for n in NAME.findall(t["expr"])}
    section = (ROOT / "docs" / "OPERATIONS.md").read_text().split("\n## Metrics\n")[1].split("\n## ")[0]
    documented = {base(n) for n in re.findall(r"`(samq_[a-z_]+)`", section)}
    code = {n for f in ("gateway/metrics.py", "worker/metrics.py")
            for n in re.findall(r'"(samq_[a-z_]+)"', (ROOT / f).read_text())}
    assert documented == code
    assert charted == code


def test_dashboard_is_importable():
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "samq.json").read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)) and dashboard["uid"] == "samq"
    assert [v["name"] for v in dashboard["templating"]["list"]] == ["datasource"]
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}" and target["expr"].count("(") == \
                target["expr"].count(")")
