"""`samq`: admin commands (keys, credits, models) and `samq run`."""

from __future__ import annotations

import argparse
import sys

import redis
import requests

from shared.keys import KeyStore, hash_key
from shared.redis_client import connect
from shared.settings import Settings
from shared.weights import PRESET_NAMES, download, get_preset, missing_files, verify


def _store(settings: Settings) -> KeyStore:
    return KeyStore(connect(settings))


def cmd_keys(args: argparse.Namespace, settings: Settings) -> int:
    """keys create | show | add-credits | disable."""
    store = _store(settings)
    if args.action == "create":
        raw = store.create(args.credits, args.name)
        print(f"created key {args.name or '(unnamed)'} with {args.credits} credits; it is shown only once:")
        print(raw)
        return 0
    key_id = hash_key(args.key)
    if args.action == "add-credits":
        balance = store.credits.add(key_id, args.amount)
        if balance is None:
            print("unknown key", file=sys.stderr)
            return 1
        print(balance)
        return 0
    if args.action == "disable":
        if not store.disable(key_id):
            print("unknown key", file=sys.stderr)
            return 1
        print("disabled")
        return 0
    key = store.get(key_id)
    if key is None:
        print("unknown key", file=sys.stderr)
        return 1
    print(f"name: {key.name or '-'}\ndisabled: {str(key.disabled).lower()}\ncredits: {key.credits}")
    return 0


def cmd_models(args: argparse.Namespace, settings: Settings) -> int:
    """models download | check for a preset."""
    preset = get_preset(args.preset or settings.models, settings.detector)
    if preset.random:
        print(f"{preset.name} is built at worker start with random weights; nothing to download")
        return 0
    if args.action == "download":
        try:
            download(preset, settings.model_dir, token=settings.hf_token)
        except (requests.RequestException, OSError) as exc:
            print(f"samq: download failed ({exc.__class__.__name__}): {exc}", file=sys.stderr)
            return 1
    problems = verify(preset, settings.model_dir) if args.action != "status" else [
        f"{p}: missing" for p in missing_files(preset, settings.model_dir)]
    for line in problems:
        print(line, file=sys.stderr)
    if not problems:
        print(f"preset {preset.name}: all {len(preset.files)} files present and verified in {settings.model_dir}")
    return 1 if problems else 0


def parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(prog="samq", description="samq administration")
    sub = p.add_subparsers(dest="command", required=True)
    keys = sub.add_parser("keys", help="manage API keys").add_subparsers(dest="action", required=True)
    create = keys.add_parser("create", help="create a key; prints it on the last line")
    create.add_argument("--credits", type=int, default=0)
    create.add_argument("--name", default="")
    keys.add_parser("show", help="print a key's credits").add_argument("key")
    add = keys.add_parser("add-credits", help="add N credits (negative removes)")
    add.add_argument("key")
    add.add_argument("amount", type=int)
    keys.add_parser("disable", help="disable a key").add_argument("key")
    models = sub.add_parser("models", help="download or verify model weights")
    models.add_argument("action", choices=["download", "check", "status"])
    models.add_argument("--preset", choices=PRESET_NAMES)
    sub.add_parser("run", help="start Redis if needed, the gateway and one worker")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `samq` command."""
    args = parser().parse_args(argv)
    settings = Settings()
    try:
        if args.command == "keys":
            return cmd_keys(args, settings)
        if args.command == "models":
            return cmd_models(args, settings)
        from gateway.supervisor import run

        return run(settings)
    except redis.ConnectionError as exc:
        print(f"samq: cannot reach Redis at {settings.redis_url}: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"samq: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
