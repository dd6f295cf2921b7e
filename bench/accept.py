"""P1: gateway accept throughput, `POST /v1/jobs` vs `GET /healthz` on the same server, with wrk on loopback.

Run: `python bench/accept.py [--seconds 8] [--rounds 2] [--gateways 1,2] [--baseline REV] [--redis-url URL]`
No worker runs (jobs stay queued), the rate limit is off, the key has credits for every request. The body is
rocket.jpg (640x427 JPEG) as base64 JSON with two clicks. Rounds alternate healthz and jobs so that
machine noise hits both; the ratio jobs/healthz is the figure (goal >= 0.5). With --baseline, the same is
measured on that git revision's gateway in the same run. --gateways gives gunicorn processes to try
(the 1 vs 2 gateway processes part of P4).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from common import PHOTO, add_redis_arg, baseline_checkout, bench_stack, record

POST_LUA = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["x-api-key"] = "{key}"
local f = io.open("{body}", "rb")
wrk.body = f:read("*a")
f:close()
"""


def wrk(url: str, seconds: int, connections: int, script: Path | None = None) -> dict:
    """Requests/s and non-2xx count from one wrk run."""
    cmd = [shutil.which("wrk") or "wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency"]
    cmd += ["-s", str(script)] if script else []
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1, "s": 1000}
    return {"rps": rate, "non_2xx": int(bad.group(1)) if bad else 0,
            "p50_ms": round(float(p50.group(1)) * scale[p50.group(2)], 2) if p50 else None}


def measure(stack, body_file: Path, tmp: Path, seconds: int, rounds: int, connections: int) -> dict:
    """Alternate healthz and jobs rounds; sum the rates of each."""
    script = tmp / f"post-{stack.env['SAMQ_PORT']}.lua"
    script.write_text(POST_LUA.format(key=stack.new_key(10**9), body=body_file))
    wrk(stack.url + "/healthz", 2, connections)  # warm-up
    wrk(stack.url + "/v1/jobs", 2, connections, script)
    health, jobs = [], []
    for _ in range(rounds):
        health.append(wrk(stack.url + "/healthz", seconds, connections))
        jobs.append(wrk(stack.url + "/v1/jobs", seconds, connections, script))
    h = sum(r["rps"] for r in health) / rounds
    j = sum(r["rps"] for r in jobs) / rounds
    return {"healthz_rps": round(h, 1), "jobs_rps": round(j, 1), "ratio": round(j / h, 3),
            "jobs_non_2xx": sum(r["non_2xx"] for r in jobs), "jobs_p50_ms": jobs[-1]["p50_ms"],
            "healthz_p50_ms": health[-1]["p50_ms"]}


def profile_jobs(stack, body_file: Path, tmp: Path, seconds: int, connections: int, out: Path) -> None:
    """Where the gateway's time goes while wrk posts jobs (printed, and collapsed stacks in `out`)."""
    from overhead import profile, top_frames

    script = tmp / "profile.lua"
    script.write_text(POST_LUA.format(key=stack.new_key(10**9), body=body_file))
    spies = profile({"gateway-accept": stack.procs["gateway"].pid}, out)
    wrk(stack.url + "/v1/jobs", seconds, connections, script)
    for spy in spies:
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=30)
    print("  gateway profile under POST /v1/jobs (share of samples, inclusive):")
    for frame, share in top_frames(out / "gateway-accept.txt"):
        print(f"    {share:5.1f}%  {frame}")


def main() -> None:
    """Measure each gateway count (and the baseline revision) and record the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--gateways", default="2", help="comma-separated gunicorn process counts")
    parser.add_argument("--baseline", help="also measure this git revision (e.g. the commit before a change)")
    parser.add_argument("--profile", type=Path, help="py-spy this checkout's gateway during one jobs round")
    add_redis_arg(parser)
    args = parser.parse_args()
    body = {"image": base64.b64encode(PHOTO.read_bytes()).decode(), "coordinates": [[320, 200], [330, 150]]}
    results = []
    with tempfile.TemporaryDirectory(prefix="samq-p1-") as tmp_name:
        tmp = Path(tmp_name)
        body_file = tmp / "body.json"
        body_file.write_text(json.dumps(body))
        code = {"this": None}
        if args.baseline:
            code["baseline"] = baseline_checkout(args.baseline, tmp / "baseline")
        for gateways in (int(g) for g in args.gateways.split(",")):
            env = {"SAMQ_GATEWAY_WORKERS": str(gateways), "SAMQ_GATEWAY_THREADS": "16"}
            with contextlib.ExitStack() as stacks:
                started = {name: stacks.enter_context(bench_stack(args.redis_url, 4 + i, None, code=path, **env))
                           for i, (name, path) in enumerate(code.items())}
                if args.profile:
                    profile_jobs(started["this"], body_file, tmp, args.seconds, args.connections, args.profile)
                for name, stack in started.items():
                    row = {"code": name, "gateways": gateways,
                           **measure(stack, body_file, tmp, args.seconds, args.rounds, args.connections)}
                    results.append(row)
                    print(f"P1 {name:<8} {gateways} gateway process(es): healthz {row['healthz_rps']:7.1f} req/s, "
                          f"POST /v1/jobs {row['jobs_rps']:7.1f} req/s -> ratio {row['ratio']:.3f} "
                          f"(non-2xx {row['jobs_non_2xx']})")
    record("p1-accept" + (f"-vs-{args.baseline}" if args.baseline else ""),
           {"baseline": args.baseline, "connections": args.connections, "seconds": args.seconds,
            "rounds": args.rounds, "results": results})


if __name__ == "__main__":
    main()
