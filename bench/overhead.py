"""P2: what the queue adds. The drop-in call end to end vs the same pipeline in-process, same models.

Run: `python bench/overhead.py [--n 60] [--redis-url redis://127.0.0.1:6379] [--profile DIR]`
One gateway process, one worker, local-file storage, tiny-random models, rocket.jpg (640x427), two clicks.
Calls alternate between the two paths so that machine noise hits both alike. With --profile, py-spy
samples the gateway and the worker during the end-to-end calls and prints where their time goes.
"""

from __future__ import annotations

import argparse
import base64
import collections
import contextlib
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import requests
from common import PHOTO, add_redis_arg, baseline_checkout, bench_stack, record, summary_ms, timed

from shared import names  # noqa: I001  (after common, which puts this checkout first)

# Frames worth reporting: ours, and the clients and codecs the request path calls.
WATCHED = ("gateway/", "shared/", "worker/", "redis/client", "kombu/messaging", "celery/app/base", "PIL/",
           "base64", "json/", "werkzeug/formparser", "gunicorn/http/wsgi")
BODY = {"coordinates": [[320, 200], [330, 150]], "overlay_mask": True}


def in_process(settings, data: bytes, params: dict, threads: int):
    """The worker's own steps without the queue: decode, segment, render."""
    import torch

    from shared.images import load_rgb
    from worker import pipeline
    from worker.models.registry import get_models

    models = get_models(settings)
    torch.set_num_threads(threads)
    limits = pipeline.Thresholds(settings.box_threshold, settings.text_threshold, settings.max_objects)

    def call() -> bytes:
        image = load_rgb(data, settings.max_image_bytes, settings.max_image_pixels)
        return pipeline.run(models.embedder, models.dino, image, params, limits).files["overlay_jpeg"][0]

    return call


def drop_in(url: str, key: str, data: bytes, multipart: bool, calls: list | None = None):
    """One drop-in call through HTTP, as a client sends it; (sent, received, job id) appended to `calls`."""
    session = requests.Session()
    body = {**BODY, "image": base64.b64encode(data).decode()}
    headers = {"x-api-key": key}

    def call() -> bytes:
        sent = time.time()
        if multipart:
            fields = {k: (None, str(v)) for k, v in BODY.items()}
            r = session.post(url, files={"image": ("rocket.jpg", data, "image/jpeg"), **fields}, headers=headers)
        else:
            r = session.post(url, json=body, headers=headers, timeout=60)
        r.raise_for_status()
        if calls is not None:
            calls.append((sent, time.time(), r.headers["x-job-id"]))
        return r.content

    return call


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def breakdown(client, calls: list) -> dict[str, dict[str, float]]:
    """Where each call's time went, from the job's own timestamps (one clock: everything is on this machine)."""
    stages: dict[str, list[float]] = {"client -> job created (HTTP, auth, parse)": [],
                                      "created -> worker started (accept, publish, consume)": [],
                                      "started -> finished (worker: load, model, render, store)": [],
                                      "finished -> client has the JPEG (wake, read, send)": []}
    for sent, received, job_id in calls:
        job = {k.decode(): v.decode() for k, v in client.hgetall(names.job(job_id)).items()}
        points = [sent, _epoch(job["created_at"]), _epoch(job["started_at"]), _epoch(job["finished_at"]), received]
        for stage, a, b in zip(stages, points, points[1:], strict=False):
            stages[stage].append(b - a)
    return {stage: summary_ms(values) for stage, values in stages.items()}


def profile(pids: dict[str, int], out: Path) -> list[subprocess.Popen]:
    """Start py-spy (raw collapsed stacks, idle threads left out) on each process and its children."""
    out.mkdir(parents=True, exist_ok=True)
    spy = str(Path(sys.executable).parent / "py-spy")
    return [subprocess.Popen([spy, "record", "--pid", str(pid), "--subprocesses", "--rate", "250", "--format",
                              "raw", "--output", str(out / f"{name}.txt"), "--nonblocking"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for name, pid in pids.items()]


def top_frames(collapsed: Path, n: int = 30, watched: tuple[str, ...] = WATCHED) -> list[tuple[str, float]]:
    """Functions by share of samples they appear in (inclusive), from py-spy's collapsed stacks."""
    totals: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        samples += int(count)
        for frame in {f.split(" (")[0] + " " + f.split("(")[-1].split(":")[0] for f in stack.split(";")}:
            if frame.split(" ")[-1].startswith(watched):
                totals[frame] += int(count)
    return [(f, round(100 * c / samples, 1)) for f, c in totals.most_common(n)] if samples else []


def main() -> None:
    """Alternate the paths and report p50/p95 of each and of what the service adds."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=60)
    parser.add_argument("--multipart", action="store_true", help="send the image as a multipart file")
    parser.add_argument("--baseline", help="also run this git revision's gateway+worker (A/B in one run), e.g. main")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for this checkout's stack")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads in the worker and in-process (1: steadier on a busy machine)")
    parser.add_argument("--profile", type=Path, help="py-spy the gateway and worker; collapsed stacks here")
    add_redis_arg(parser)
    args = parser.parse_args()
    data = PHOTO.read_bytes()
    env = {"SAMQ_GATEWAY_WORKERS": "1", "SAMQ_GATEWAY_THREADS": "8", "OMP_NUM_THREADS": str(args.threads)}
    with contextlib.ExitStack() as stacks:
        stack = stacks.enter_context(bench_stack(args.redis_url, 2, {"w1": {}}, **env,
                                                 **dict(e.split("=", 1) for e in args.env)))
        calls: list = []
        paths = {"this": drop_in(stack.url + "/v1/sam-v2-image", stack.new_key(10**6), data, args.multipart, calls)}
        if args.baseline:
            code = baseline_checkout(args.baseline, Path(stacks.enter_context(tempfile.TemporaryDirectory())))
            base = stacks.enter_context(bench_stack(args.redis_url, 3, {"w1": {}}, code=code, **env))
            paths["baseline"] = drop_in(base.url + "/v1/sam-v2-image", base.new_key(10**6), data, args.multipart)
        from shared.schemas import SegmentRequest, parse_body

        params = parse_body(SegmentRequest, {**BODY, "image": "x"}).params()
        paths["in_process"] = in_process(stack.settings, data, params, args.threads)
        for _ in range(5):  # warm-up: models, connections, the embedding cache on every side
            for call in paths.values():
                call()
        spies = profile({"gateway": stack.procs["gateway"].pid, "worker": stack.procs["w1"].pid},
                        args.profile) if args.profile else []
        times: dict[str, list[float]] = {name: [] for name in paths}
        server = stack.redis  # every stack shares this server: count the connections each path opens
        connects = dict.fromkeys(paths, 0)
        for _ in range(args.n):
            for name, call in paths.items():
                before = server.info("stats")["total_connections_received"]
                times[name].append(timed(call))
                connects[name] += server.info("stats")["total_connections_received"] - before
        for spy in spies:
            spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            spy.wait(timeout=30)
        stages = breakdown(stack.redis, calls[-args.n:])
    stats = {name: summary_ms(t) for name, t in times.items()}
    local = stats["in_process"]
    added = {name: {k: round(s[k] - local[k], 2) for k in ("p50_ms", "p95_ms")} for name, s in stats.items()
             if name != "in_process"}
    print(f"P2 drop-in ({'multipart' if args.multipart else 'JSON base64'}), {args.n} calls each, interleaved")
    for name, s in stats.items():
        a = added.get(name)
        extra = f"   adds p50 {a['p50_ms']:6.1f} ms  p95 {a['p95_ms']:6.1f} ms" if a else ""
        print(f"  {name:<11} p50 {s['p50_ms']:7.1f} ms  p95 {s['p95_ms']:7.1f} ms{extra}")
    print("  new Redis connections per call: " + ", ".join(f"{k} {v / args.n:.2f}" for k, v in connects.items()))
    print("  where the end-to-end time goes (this checkout, from the job's timestamps):")
    for stage, st in stages.items():
        print(f"    {stage:<58} p50 {st['p50_ms']:6.1f} ms  p95 {st['p95_ms']:6.1f} ms")
    profiles = {}
    for name in ("gateway", "worker"):
        path = args.profile / f"{name}.txt" if args.profile else None
        if path and path.is_file():
            profiles[name] = top_frames(path)
            print(f"  {name} profile (share of samples, inclusive, our code and clients):")
            for frame, share in profiles[name]:
                print(f"    {share:5.1f}%  {frame}")
    name = "p2-overhead" + ("-multipart" if args.multipart else "") + ("-" + "-".join(args.env) if args.env else "") \
        + (f"-vs-{args.baseline}" if args.baseline else "")
    record(name.lower(), {"n": args.n, "body": "multipart" if args.multipart else "json", "baseline": args.baseline,
                          "env": args.env, "latency": stats, "added": added, "stages": stages,
                          "redis_connections_per_call": {k: round(v / args.n, 2) for k, v in connects.items()},
                          "profiles": profiles})


if __name__ == "__main__":
    main()
