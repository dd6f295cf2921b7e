"""Small named errors; the gateway maps them to JSON responses in one place."""

from __future__ import annotations

from typing import Any


class SamqError(Exception):
    """Base error: a stable machine code, an HTTP status and a message for people."""

    code = "internal_error"
    status = 500

    def __init__(self, message: str = "internal error", retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s  # sent as Retry-After: when trying again makes sense


class InvalidRequest(SamqError):
    """Malformed JSON or fields: the message names the field and the rule (nothing charged, no job)."""

    code, status = "invalid_request", 400


class UrlNotAllowed(SamqError):
    """An image or webhook URL that reaches a loopback, private, link-local or other non-public address."""

    code, status = "url_not_allowed", 400


class Unauthorized(SamqError):
    """The API key is missing, unknown or disabled."""

    code, status = "unauthorized", 401


class NotFound(SamqError):
    """Unknown route, job or batch; another key's job or batch answers the same."""

    code, status = "not_found", 404


class InsufficientCredits(SamqError):
    """Not enough credits for the job (or the batch): nothing enqueued, nothing charged."""

    code, status = "insufficient_credits", 406


class NotFinished(SamqError):
    """A result or export asked for before the job (or every job of the batch) has ended."""

    code, status = "not_finished", 409


class NoResult(SamqError):
    """A result asked for of a job that failed or was canceled."""

    code, status = "no_result", 409


class WebhookDisabled(SamqError):
    """Redelivery to a webhook URL that is disabled (it answered 410 Gone)."""

    code, status = "webhook_disabled", 409


class TooLarge(SamqError):
    """The body, the image's bytes or its pixels are over the limits."""

    code, status = "too_large", 413


class UndecodableImage(SamqError):
    """The image is not a whole JPEG, PNG or WebP."""

    code, status = "undecodable_image", 422


class UnsupportedImage(SamqError):
    """An animated image, or one side over 100 times the other."""

    code, status = "unsupported_image", 422


class FetchFailed(SamqError):
    """The image URL could not be fetched: its host does not resolve, the connection fails, or it answers an error."""

    code, status = "fetch_failed", 422


class RateLimited(SamqError):
    """Over `SAMQ_RATE_LIMIT_PER_MIN` requests this minute for the key; `Retry-After` says when to retry."""

    code, status = "rate_limited", 429


class NoCapacity(SamqError):
    """No worker alive (the drop-in call), or the job could not be queued or its input stored; `Retry-After`."""

    code, status = "no_capacity", 503


class QueueFull(SamqError):
    """Over `SAMQ_MAX_QUEUED` jobs waiting in all queues; `Retry-After`, nothing charged."""

    code, status = "queue_full", 503


class TooManyJobs(SamqError):
    """Over `SAMQ_MAX_UNFINISHED_PER_KEY` unfinished jobs for the key; `Retry-After`."""

    code, status = "too_many_jobs", 429


class IdempotencyMismatch(SamqError):
    """An `Idempotency-Key` reused with another body."""

    code, status = "idempotency_mismatch", 422


class Expired(SamqError):
    """The job, batch or output has passed its retention (`SAMQ_RETENTION_S`)."""

    code, status = "expired", 404


class NotCancelable(SamqError):
    """Cancel of a job that has already ended."""

    code, status = "not_cancelable", 409


class ModelsMissing(SamqError):
    """A worker without its model files (a job's error, not an HTTP answer of the gateway)."""

    code, status = "models_missing", 503


class MethodNotAllowed(SamqError):
    """The route exists but not with this method; `Allow` names the methods it takes."""

    code, status = "method_not_allowed", 405


class UnsupportedMediaType(SamqError):
    """A body of a media type the route cannot read."""

    code, status = "unsupported_media_type", 415


class Unavailable(SamqError):
    """Redis is briefly unreachable (a restart); `Retry-After`, nothing charged."""

    code, status = "unavailable", 503


class NotReplicated(Unavailable):
    """Fewer replicas than SAMQ_REDIS_MIN_REPLICAS confirmed a write in time (Redis WAIT): the gateway undoes the job
    it was accepting and answers 503 `unavailable` with `Retry-After`; `result` is what the write's script returned."""

    def __init__(self, message: str, retry_after_s: int | None = None, result: Any = None, acked: int = 0) -> None:
        super().__init__(message, retry_after_s)
        self.result = result  # any Redis reply (ACCEPT's and FINISH's: a list, its code first)
        self.acked = acked  # how many replicas did confirm it


def error_from_record(code: str, message: str, status: int) -> SamqError:
    """Rebuild an error stored on a job record."""
    err = SamqError(message)
    err.code, err.status = code, status
    return err
