"""Named exceptions, one per API error code, so callers can catch what they mean."""

from __future__ import annotations


class SamqError(Exception):
    """An error answered by the API (or a failure to reach it): a stable code, an HTTP status, a message."""

    code = "error"

    def __init__(self, message: str, status: int | None = None, code: str | None = None,
                 request_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.request_id = request_id
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return f"{self.code}: {self.message}" + (f" (HTTP {self.status})" if self.status else "")


class InvalidRequest(SamqError):
    code = "invalid_request"


class UrlNotAllowed(InvalidRequest):
    code = "url_not_allowed"


class Unauthorized(SamqError):
    code = "unauthorized"


class NotFound(SamqError):
    code = "not_found"


class MethodNotAllowed(SamqError):
    """The route exists but not with this HTTP method (405; the answer's Allow header lists those it takes)."""

    code = "method_not_allowed"


class UnsupportedMediaType(SamqError):
    code = "unsupported_media_type"


class InsufficientCredits(SamqError):
    code = "insufficient_credits"


class Conflict(SamqError):
    """The job is in a state that does not allow this (409)."""

    code = "conflict"


class NotFinished(Conflict):
    code = "not_finished"


class NoResult(Conflict):
    code = "no_result"


class WebhookDisabled(Conflict):
    """A redelivery to a webhook URL that was disabled after it answered 410 (enable it again first)."""

    code = "webhook_disabled"


class TooLarge(SamqError):
    code = "too_large"


class UndecodableImage(SamqError):
    code = "undecodable_image"


class UnsupportedImage(InvalidRequest):
    """A whole image the service does not take: animated, or one side over 100 times the other (422)."""

    code = "unsupported_image"


class FetchFailed(SamqError):
    code = "fetch_failed"


class RateLimited(SamqError):
    code = "rate_limited"


class NoCapacity(SamqError):
    code = "no_capacity"


class QueueFull(NoCapacity):
    code = "queue_full"


class Unavailable(NoCapacity):
    """The service's store (Redis) is briefly unreachable, as during a restart: retried like any 503."""

    code = "unavailable"


class ModelsMissing(NoCapacity):
    """The worker lacks model files (an operator's problem: `samq models check` names them)."""

    code = "models_missing"


class TooManyJobs(RateLimited):
    """Too many of the key's jobs are waiting: back-pressure, retried like a 429."""

    code = "too_many_jobs"


class IdempotencyMismatch(SamqError):
    """An Idempotency-Key was reused with a different body."""

    code = "idempotency_mismatch"


class Expired(NotFound):
    """The job or batch is older than the server's retention."""

    code = "expired"


class NotCancelable(Conflict):
    code = "not_cancelable"


class ServerError(SamqError):
    code = "internal_error"


class ConnectionFailed(SamqError):
    """The API could not be reached, even after retries."""

    code = "connection_failed"


class JobFailed(SamqError):
    """A job ended failed or canceled; `job` holds its record."""

    code = "job_failed"

    def __init__(self, job) -> None:  # noqa: ANN001 (a samq_client.records.Job; avoids an import cycle)
        error = job.error or {}
        super().__init__(error.get("message") or f"job {job.id} is {job.status}", code=error.get("code") or job.status)
        self.job = job


class WaitTimeout(SamqError):
    """A job or batch was still running when the wait ran out."""

    code = "wait_timeout"


class WebhookVerificationError(SamqError):
    """A webhook's signature, timestamp or headers do not check out."""

    code = "webhook_verification_failed"


_BY_CODE: dict[str, type[SamqError]] = {
    cls.code: cls
    for cls in (InvalidRequest, UrlNotAllowed, Unauthorized, NotFound, MethodNotAllowed, UnsupportedMediaType,
                InsufficientCredits, NotFinished, NoResult, WebhookDisabled, TooLarge, UndecodableImage,
                UnsupportedImage, FetchFailed, RateLimited, NoCapacity, QueueFull, Unavailable, ModelsMissing,
                TooManyJobs, IdempotencyMismatch, Expired, NotCancelable, ServerError)
}
_BY_STATUS: dict[int, type[SamqError]] = {
    400: InvalidRequest, 401: Unauthorized, 403: Unauthorized, 404: NotFound, 406: InsufficientCredits,
    409: Conflict, 413: TooLarge, 422: InvalidRequest, 429: RateLimited, 503: NoCapacity,
}


def error_for(status: int, code: str | None, message: str, request_id: str | None = None) -> SamqError:
    """The named exception for an API error: by its code, else by its HTTP status."""
    cls = _BY_CODE.get(code or "") or _BY_STATUS.get(status) or (ServerError if status >= 500 else SamqError)
    return cls(message, status=status, code=code or None, request_id=request_id)
