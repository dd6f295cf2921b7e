"""samq-client: the samq segmentation API from Python and the command line."""

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
from samq_client.models import Batch, BatchCounts, Credits, Job, JobRef, Segmentation, SegmentObject
from samq_client.webhooks import verify_webhook

__all__ = [
    "Batch", "BatchCounts", "Client", "Conflict", "ConnectionFailed", "Credits", "Expired", "FetchFailed",
    "IdempotencyMismatch", "InsufficientCredits", "InvalidRequest", "Job", "JobFailed", "JobRef",
    "MethodNotAllowed", "ModelsMissing", "NoCapacity", "NoResult", "NotCancelable", "NotFinished", "NotFound",
    "QueueFull", "RateLimited", "SamqError", "SegmentObject", "Segmentation", "ServerError", "TooLarge",
    "TooManyJobs", "Unauthorized", "Unavailable", "UndecodableImage", "UnsupportedImage", "UnsupportedMediaType",
    "UrlNotAllowed", "WaitTimeout", "WebhookDisabled", "WebhookVerificationError",
    "encode_image", "job_body", "verify_webhook",
]
