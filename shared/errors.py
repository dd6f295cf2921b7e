"""Small named errors; the gateway maps them to JSON responses in one place."""

from __future__ import annotations


class SamqError(Exception):
    """Base error: a stable machine code, an HTTP status and a message for people."""

    code = "internal_error"
    status = 500

    def __init__(self, message: str = "internal error", retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s  # sent as Retry-After: when trying again makes sense

    def to_dict(self) -> dict:
        """The JSON error body."""
        return {"error": {"code": self.code, "message": self.message}}


class InvalidRequest(SamqError):
    code, status = "invalid_request", 400


class UrlNotAllowed(SamqError):
    code, status = "url_not_allowed", 400


class Unauthorized(SamqError):
    code, status = "unauthorized", 401


class NotFound(SamqError):
    code, status = "not_found", 404


class InsufficientCredits(SamqError):
    code, status = "insufficient_credits", 406


class NotFinished(SamqError):
    code, status = "not_finished", 409


class NoResult(SamqError):
    code, status = "no_result", 409


class WebhookDisabled(SamqError):
    code, status = "webhook_disabled", 409


class TooLarge(SamqError):
    code, status = "too_large", 413


class UndecodableImage(SamqError):
    code, status = "undecodable_image", 422


class UnsupportedImage(SamqError):
    code, status = "unsupported_image", 422


class FetchFailed(SamqError):
    code, status = "fetch_failed", 422


class RateLimited(SamqError):
    code, status = "rate_limited", 429


class NoCapacity(SamqError):
    code, status = "no_capacity", 503


class QueueFull(SamqError):
    code, status = "queue_full", 503


class TooManyJobs(SamqError):
    code, status = "too_many_jobs", 429


class IdempotencyMismatch(SamqError):
    code, status = "idempotency_mismatch", 422


class Expired(SamqError):
    code, status = "expired", 404


class NotCancelable(SamqError):
    code, status = "not_cancelable", 409


class ModelsMissing(SamqError):
    code, status = "models_missing", 503


def error_from_record(code: str, message: str, status: int) -> SamqError:
    """Rebuild an error stored on a job record."""
    err = SamqError(message)
    err.code, err.status = code, status
    return err
