"""The CPU benchmark suite (`make bench`): each benchmark in turn, then the plots.

Run: `python bench/run.py [--redis-url redis://127.0.0.1:6379] [--baseline REV] [--only p2,p4]`
Each script records bench/results/<name>.json (date, machine, revision, command); bench/plot.py draws
bench/results/*.png from them. bench/RESULTS.md is the commented record.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
SUITE = {  # name: (script, arguments)
    "p1": ("accept.py", ["--gateways", "1,2"]),
    "p2": ("overhead.py", []),
    "p3": ("cache.py", []),
    "p4": ("scaleout.py", []),
    "p6": ("scale.py", []),
    "p7": ("sync_concurrency.py", []),
    "fidelity": ("fidelity.py", []),
}
WITH_BASELINE = ("p1", "p2")


def main() -> None:
    """Run the chosen benchmarks, stop at the first failure, then plot."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379")
    parser.add_argument("--baseline", help="git revision to compare with in P1 and P2 (A/B in one run)")
    parser.add_argument("--only", help="comma-separated subset of " + ",".join(SUITE))
    args = parser.parse_args()
    chosen = args.only.split(",") if args.only else list(SUITE)
    for name in chosen:
        script, extra = SUITE[name]
        cmd = [sys.executable, str(HERE / script), *extra]
        if script not in ("cache.py", "fidelity.py"):
            cmd += ["--redis-url", args.redis_url]
        if args.baseline and name in WITH_BASELINE:
            cmd += ["--baseline", args.baseline]
        print("$", " ".join(cmd[1:]), flush=True)
        subprocess.run(cmd, check=True)
    subprocess.run([sys.executable, str(HERE / "plot.py")], check=True)


if __name__ == "__main__":
    main()
