"""samq-client: the samq segmentation API from Python and the command line."""

from typing import TYPE_CHECKING, Any

from samq_client.client import Client, encode_image, job_body
from samq_client.errors import (
    Conflict,
    ConnectionFailed,
    Expired,
    FetchFailed,
    IdempotencyMismatch,
    InsufficientCredits,
    InvalidRequest,
    JobFailed,
    MethodNotAllowed,
    ModelsMissing,
    NoCapacity,
    NoResult,
    NotCancelable,
    NotFinished,
    NotFound,
    QueueFull,
    RateLimited,
    SamqError,
    ServerError,
    TooLarge,
    TooManyJobs,
    Unauthorized,
    Unavailable,
    UndecodableImage,
    UnsupportedImage,
    UnsupportedMediaType,
    UrlNotAllowed,
    WaitTimeout,
    WebhookDisabled,
    WebhookVerificationError,
)
from samq_client.records import Batch, BatchCounts, Credits, Job, JobRef, Segmentation, SegmentObject
from samq_client.webhooks import verify_webhook

if TYPE_CHECKING:
    from samq_client.async_client import AsyncClient


def __getattr__(name: str) -> Any:
    """`AsyncClient` on first use: importing httpx costs the sync client and the CLI a quarter second otherwise."""
    if name == "AsyncClient":
        from samq_client.async_client import AsyncClient

        return AsyncClient
    raise AttributeError(f"module 'samq_client' has no attribute {name!r}")

__all__ = [
    "AsyncClient", "Batch", "BatchCounts", "Client", "Conflict", "ConnectionFailed", "Credits", "Expired",
    "FetchFailed",
    "IdempotencyMismatch", "InsufficientCredits", "InvalidRequest", "Job", "JobFailed", "JobRef",
    "MethodNotAllowed", "ModelsMissing", "NoCapacity", "NoResult", "NotCancelable", "NotFinished", "NotFound",
    "QueueFull", "RateLimited", "SamqError", "SegmentObject", "Segmentation", "ServerError", "TooLarge",
    "TooManyJobs", "Unauthorized", "Unavailable", "UndecodableImage", "UnsupportedImage", "UnsupportedMediaType",
    "UrlNotAllowed", "WaitTimeout", "WebhookDisabled", "WebhookVerificationError",
    "encode_image", "job_body", "verify_webhook",
]
