"""Draw bench/results/*.png from the recorded JSON (P1 accept, P2 overhead, P4 scale-out).

Run: `python bench/plot.py` (after the benchmarks; `make bench` does both).
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def _load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _footer(fig, data: dict) -> None:
    fig.subplots_adjust(bottom=0.2)  # room for two-line tick labels above the footer
    fig.text(0.01, 0.01, f"{data['date']}  rev {data['revision']}  {data['machine']} (shared, noisy)", fontsize=7)


def plot_p2() -> None:
    """End-to-end vs in-process latency, p50 and p95."""
    data = _load("p2-overhead-vs-2d8ae9e") or _load("p2-overhead")
    if not data:
        return
    names = list(data["latency"])
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, q in enumerate(("p50_ms", "p95_ms")):
        ax.bar([x + i * 0.4 for x in range(len(names))], [data["latency"][n][q] for n in names], 0.4, label=q[:3])
    ax.set_xticks([x + 0.2 for x in range(len(names))], names)
    ax.set_ylabel("ms per drop-in call")
    ax.set_title("P2: drop-in end to end vs the same pipeline in-process")
    ax.legend()
    _footer(fig, data)
    fig.savefig(RESULTS / "p2-overhead.png", dpi=110)


def plot_p1() -> None:
    """Requests/s of healthz and POST /v1/jobs per code revision and gateway count."""
    data = _load("p1-accept-vs-2d8ae9e") or _load("p1-accept")
    if not data:
        return
    rows = data["results"]
    labels = [f"{r['code']}\n{r['gateways']} proc" for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    xs = range(len(rows))
    ax.bar([x - 0.2 for x in xs], [r["healthz_rps"] for r in rows], 0.4, label="GET /healthz")
    ax.bar([x + 0.2 for x in xs], [r["jobs_rps"] for r in rows], 0.4, label="POST /v1/jobs")
    for x, r in zip(xs, rows, strict=True):
        ax.text(x + 0.2, r["jobs_rps"], f"{r['ratio']:.2f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(list(xs), labels)
    ax.set_ylabel("requests/s (wrk, loopback)")
    ax.set_title("P1: accept throughput (ratio jobs/healthz above the bars)")
    ax.legend()
    _footer(fig, data)
    fig.savefig(RESULTS / "p1-accept.png", dpi=110)


def plot_p4() -> None:
    """Jobs/s per round with 1 and 2 workers."""
    data = _load("p4-scaleout")
    if not data:
        return
    fig, ax = plt.subplots(figsize=(5, 4))
    for n, rates in data["rounds_jobs_per_s"].items():
        workers, threads = data["configs"][n]["workers"], data["configs"][n]["torch_threads"]
        ax.plot(range(1, len(rates) + 1), rates, "o-", label=f"{workers} worker(s) x {threads} thread(s)")
    ax.set_xlabel("round")
    ax.set_ylabel("jobs/s")
    ax.set_title(f"P4: 2 workers vs 1 -> {data['ratio']:.2f}x")
    ax.legend()
    _footer(fig, data)
    fig.savefig(RESULTS / "p4-scaleout.png", dpi=110)


if __name__ == "__main__":
    for plot in (plot_p1, plot_p2, plot_p4):
        plot()
