"""Waiting for jobs to finish: one pub/sub connection per gateway process, shared by every waiting call.

A connection per waiting call costs a connect, a SUBSCRIBE and an UNSUBSCRIBE each time, and closing it
leaves the pooled connection disconnected, so the next command reconnects. One listener thread instead
pattern-subscribes to every job's completion channel and wakes the calls waiting on those jobs.
"""

from __future__ import annotations

import logging
import threading
import time

import redis

from shared import names
from shared.jobs import JobStore
from shared.records import JobRecord

log = logging.getLogger(__name__)
RECHECK_S = 1.0  # a lost message (listener reconnecting) delays an answer by at most this long


class CompletionWaiter:
    """Blocks callers until their job is terminal, woken by the job's completion message."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._waiting: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._listening = threading.Event()
        self._thread: threading.Thread | None = None

    def wait(self, store: JobStore, job_id: str, timeout_s: float) -> JobRecord | None:
        """The job's record once it is terminal, or its latest record when the timeout passes."""
        self._start()
        deadline = time.monotonic() + timeout_s
        event = threading.Event()
        with self._lock:
            self._waiting[job_id] = event
        try:
            while True:
                # Read after registering, so a completion published before we listened is not missed.
                job = store.get(job_id)
                left = deadline - time.monotonic()
                if job is None or job.status.terminal or left <= 0:
                    return job
                event.wait(min(left, RECHECK_S))
                event.clear()
        finally:
            with self._lock:
                self._waiting.pop(job_id, None)

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._listen, name="samq-waiter", daemon=True)
                self._thread.start()
        self._listening.wait(RECHECK_S)  # if Redis is slow to answer, callers fall back to re-reading

    def _listen(self) -> None:
        prefix = names.job_done("")
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.psubscribe(prefix + "*")
                while True:
                    message = pubsub.get_message(timeout=RECHECK_S)
                    self._listening.set()  # subscribed: the first get_message read the confirmation
                    if message is None:
                        continue
                    with self._lock:
                        event = self._waiting.get(message["channel"].decode().removeprefix(prefix))
                    if event is not None:
                        event.set()
            except Exception:  # whatever happens, keep listening: waiters re-read their job meanwhile
                log.warning("completion listener lost Redis; reconnecting", exc_info=True)
                time.sleep(RECHECK_S)
            finally:
                pubsub.close()
