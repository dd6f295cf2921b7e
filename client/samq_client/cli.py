"""`samq-client`: segment one image, run a folder as a resumable batch, look at a job, read your credits."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from samq_client.batch import BatchRun, Wakeup, export
from samq_client.client import Client
from samq_client.errors import JobFailed, SamqError
from samq_client.records import OUTPUT_SUFFIX

OUTPUTS = tuple(OUTPUT_SUFFIX)
err = Console(stderr=True)


def _pair(text: str, n: int) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != n:
        raise argparse.ArgumentTypeError(f"expected {n} comma-separated numbers, got {text!r}")
    return values


def _outputs(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in OUTPUTS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"outputs are any of {', '.join(OUTPUTS)}")
    return names


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return int(text)


def _options(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object of options, got {text!r}")
    return value


def _everything(args: argparse.Namespace) -> dict | None:
    """The `everything` field: the options given, {} for the defaults, None when not asked."""
    if args.everything_options is not None:
        return args.everything_options
    return {} if args.everything else None


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(prog="samq-client", description=__doc__)
    p.add_argument("--url", help="API base URL (default: $SAMQ_URL, else http://127.0.0.1:8000)")
    p.add_argument("--api-key", help="API key (default: $SAMQ_API_KEY)")
    sub = p.add_subparsers(dest="command", required=True)

    seg = sub.add_parser("segment", help="segment one image and save one output")
    seg.add_argument("image", help="a file or an http(s) URL")
    seg.add_argument("--prompt", help="text prompt (objects to find)")
    seg.add_argument("--point", action="append", type=lambda t: _pair(t, 2), default=[], metavar="X,Y",
                     help="a positive click (repeat for more)")
    seg.add_argument("--negative", action="append", type=lambda t: _pair(t, 2), default=[], metavar="X,Y",
                     help="a negative click (repeat for more)")
    seg.add_argument("--box", action="append", type=lambda t: _pair(t, 4), default=[], metavar="X0,Y0,X1,Y1")
    _everything_args(seg)
    seg.add_argument("--output", choices=OUTPUTS,
                     help="default: from -o's suffix (.png mask_png, .json json), else overlay_jpeg")
    seg.add_argument("--drop-in", action="store_true",
                     help="use POST /v1/sam-v2-image (the hosted API's endpoint); overlay_jpeg or mask_jpeg only")
    seg.add_argument("-o", "--out", type=Path, help="where to write (default: IMAGE's name + the output's suffix)")

    bat = sub.add_parser("batch", help="segment every image of a folder; rerun to resume after Ctrl-C")
    bat.add_argument("folder", type=Path)
    bat.add_argument("--prompt", help="text prompt (objects to find); or --everything")
    _everything_args(bat)
    bat.add_argument("--export", choices=("coco", "yolo"),
                     help="once done, write the dataset: OUT/annotations.json (coco) or OUT/yolo/ (yolo)")
    bat.add_argument("-o", "--out", type=Path, required=True, help="output folder (holds the resume state)")
    bat.add_argument("--outputs", type=_outputs, help="comma-separated (default overlay_jpeg,json)")
    bat.add_argument("--priority", choices=("high", "normal", "low"), default="normal")
    bat.add_argument("--chunk-size", type=_positive, default=100,
                     help="images per POST /v1/batches (at most the server's SAMQ_MAX_BATCH_ITEMS)")
    bat.add_argument("--poll", type=float, help="seconds between status reads (default 1; 15 with --listen)")
    bat.add_argument("--webhook-url", help="the API also calls this URL as jobs finish")
    bat.add_argument("--listen", type=_address, metavar="HOST:PORT",
                     help="receive the API's webhooks here and read the batch as soon as one arrives (the API "
                          "must be able to reach it; --webhook-url if it knows this machine by another name)")

    jobs = sub.add_parser("jobs", help="jobs").add_subparsers(dest="jobs_command", required=True)
    show = jobs.add_parser("show", help="print a job as JSON")
    show.add_argument("id")
    sub.add_parser("credits", help="print your balance as JSON")
    return p


def _everything_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--everything", action="store_true", help="segment everything (SAM 2's automatic masks)")
    p.add_argument("--everything-options", type=_options, metavar="JSON",
                   help='segment everything with these options, e.g. \'{"points_per_side": 16, "min_area": 100}\'')


def _output_for(out: Path | None) -> str:
    suffix = out.suffix.lower() if out else ""
    return {".png": "mask_png", ".json": "json"}.get(suffix, "overlay_jpeg")


def cmd_segment(client: Client, args: argparse.Namespace) -> int:
    """One image, one output file."""
    everything = _everything(args)
    if not args.prompt and not args.point and not args.box and everything is None:
        raise SamqError("give --prompt, --point, --box or --everything", code="usage")
    args.output = args.output or _output_for(args.out)
    out = args.out or Path(Path(args.image).stem + OUTPUT_SUFFIX[args.output])
    if everything is not None:
        if args.drop_in or args.prompt or args.point or args.box:
            raise SamqError("--everything takes no --prompt, --point, --box or --drop-in", code="usage")
        job = client.wait(client.submit(args.image, outputs=[args.output], everything=everything))
        if not job.succeeded:
            raise JobFailed(job)
        out.write_bytes(client.result(job, args.output))
        err.print(f"job {job.id}: {job.objects_found} object(s); wrote {out}", markup=False)
        return 0
    if args.drop_in:
        if args.output not in ("overlay_jpeg", "mask_jpeg") or args.box:
            raise SamqError("--drop-in gives overlay_jpeg or mask_jpeg, from --prompt or --point", code="usage")
        data = client.sam_v2_image(args.image, args.prompt, args.point, args.negative,
                                   overlay_mask=args.output == "overlay_jpeg")
        out.write_bytes(data)
        err.print(f"wrote {out}", markup=False)
        return 0
    job = client.wait(client.submit(args.image, args.prompt, args.point, args.negative, args.box, [args.output]))
    if not job.succeeded:
        raise JobFailed(job)
    out.write_bytes(client.result(job, args.output))
    err.print(f"job {job.id}: {job.objects_found} object(s); wrote {out}", markup=False)
    return 0


class RateColumn(ProgressColumn):
    """Images (or chunks) per second, as rich measures it over the last moments."""

    def render(self, task) -> Text:  # noqa: ANN001 (rich's Task)
        return Text(f"{task.speed or 0:.2f} {task.fields['unit']}/s", style="cyan")


def cmd_batch(client: Client, args: argparse.Namespace) -> int:
    """A folder through POST /v1/batches, with a progress bar, downloads and a summary table."""
    everything = _everything(args)
    if bool(args.prompt) == (everything is not None):
        raise SamqError("give --prompt or --everything (one of them)", code="usage")
    settings = {"prompt": args.prompt, "outputs": args.outputs, "priority": args.priority}
    if everything is not None:
        settings["everything"] = everything
    wakeup = Wakeup(args.listen)
    try:
        poll_s = args.poll or (15.0 if args.listen else 1.0)
        run = BatchRun(client, args.folder, args.out, settings, args.chunk_size, poll_s, args.webhook_url, wakeup)
        code = _run_batch(run, client)
        if args.export:
            path = export(client, run, args.export)
            Console().print(f"{args.export} dataset: {path}", markup=False)
        return code
    finally:
        wakeup.close()


def _run_batch(run: BatchRun, client: Client) -> int:
    run.plan()
    start = run.progress
    if run.resumed:
        err.print(f"resuming: {start.finished} of {start.total} already done")
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("failed [red]{task.fields[failed]}"), TimeRemainingColumn(), RateColumn())
    chunks, sent = len(run.state.chunks), sum(1 for c in run.state.chunks if c.batch_id)
    with Progress(*columns, console=err) as bar:
        sending = bar.add_task("submitting", total=chunks, completed=sent, failed=0, unit="chunks",
                               visible=sent < chunks)
        done = bar.add_task("segmenting", total=start.total, completed=start.finished, failed=start.failed,
                            unit="img")

        def submitted(_chunk: object) -> None:
            bar.advance(sending)
            if all(c.batch_id for c in run.state.chunks):
                bar.update(sending, visible=False)

        run.run(on_chunk=submitted, on_progress=lambda p: bar.update(done, completed=p.finished, failed=p.failed))
    _summary(run, client)
    counts = run.summary()
    return 0 if counts["succeeded"] == sum(counts.values()) else 1


def _summary(run: BatchRun, client: Client) -> None:
    out = Console()
    table = Table(title="samq batch")
    table.add_column("status")
    table.add_column("images", justify="right")
    for status, n in run.summary().items():
        if n or status == "succeeded":
            table.add_row(status, str(n), style="red" if status != "succeeded" else None)
    out.print(table)
    if run.state.errors:
        failures = Table(title="failures")
        for col in ("image", "code", "message"):
            failures.add_column(col)
        for name, error in sorted(run.state.errors.items())[:50]:
            failures.add_row(*(Text(v) for v in (name, error["code"], error["message"])))  # never markup
        out.print(failures)
    out.print(f"results in {run.outdir}; credits left: {client.credits().credits}", markup=False)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `samq-client`."""
    args = parser().parse_args(argv)
    client = Client(args.url, args.api_key)
    try:
        if args.command == "segment":
            return cmd_segment(client, args)
        if args.command == "batch":
            return cmd_batch(client, args)
        if args.command == "jobs":
            print(json.dumps(client.get(args.id).raw, indent=2))
        elif args.command == "credits":
            credits = client.credits()
            print(json.dumps({"credits": credits.credits, "name": credits.name}))
        return 0
    except SamqError as exc:
        err.print(Text.assemble(("error ", "red"), str(exc)))  # messages may hold [brackets]
        return 2 if exc.code in ("usage", "state_mismatch") else 1
    except KeyboardInterrupt:
        err.print("interrupted: run the same command again to resume (nothing is submitted or charged twice)")
        return 130


if __name__ == "__main__":
    sys.exit(main())
