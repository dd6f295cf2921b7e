"""One frozen settings object, parsed once from `SAMQ_*` environment variables and passed in."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of samq; units are in the names (`_s` seconds, `_bytes`, `_mb`)."""

    model_config = SettingsConfigDict(env_prefix="SAMQ_", frozen=True, extra="ignore")

    # Network
    host: str = Field("127.0.0.1", description="Gateway bind address")
    port: int = Field(8000, ge=1, le=65535, description="Gateway port")
    gateway_workers: int = Field(2, ge=1, description="gunicorn worker processes")
    gateway_threads: int = Field(64, ge=1, description="threads per gunicorn worker (a waiting drop-in call holds one)")

    # Redis and the broker
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis for keys, credits and jobs")
    broker_url: str | None = Field(None, description="Celery broker; defaults to redis_url (through the Sentinels "
                                   "when redis_sentinels is set)")
    redis_sentinels: str = Field(
        "", description="host:port,host:port,... of Redis Sentinels: every client (gateway, workers, webhook sender, "
        "broker, CLI) then finds the primary through them and follows it across failovers; redis_url still gives "
        "the database number and password; empty = connect to redis_url itself"
    )
    redis_sentinel_master: str = Field("", description="the name the Sentinels monitor the primary under (required "
                                                       "with redis_sentinels)")
    redis_min_replicas: int = Field(
        0, ge=0, description="replicas that must acknowledge ACCEPT and FINISH (Redis WAIT) before the gateway answers "
        "or the worker settles; 0 = off (asynchronous replication)"
    )
    redis_wait_timeout_ms: int = Field(
        1000, ge=1, description="how long ACCEPT and FINISH wait for redis_min_replicas acknowledgements; past it the "
        "gateway answers 503 unavailable and undoes the job"
    )

    # Storage
    storage_url: str | None = Field(
        None, description="s3://BUCKET or file://DIR; default: S3 when s3_endpoint_url is set, else file://var/storage"
    )
    s3_endpoint_url: str | None = Field(None, description="S3-compatible endpoint (MinIO, moto)")
    s3_bucket: str = Field("samq", description="bucket used when storage_url is not given")
    s3_access_key_id: str | None = Field(None, description="S3 access key id (default: boto3's usual chain)")
    s3_secret_access_key: str | None = Field(None, description="S3 secret access key (default: boto3's usual chain)")
    s3_region: str = Field("us-east-1", description="S3 region")
    s3_public_endpoint_url: str | None = Field(
        None, description="endpoint clients reach, for presigned URLs (default: s3_endpoint_url)"
    )
    presign_expires_s: int = Field(3600, gt=0, description="lifetime of presigned output URLs")
    storage_max_attempts: int = Field(
        10, ge=1, description="tries of one S3 call in a worker (exponential backoff, up to 20 s apart); the "
        "gateway tries 3 times and answers 503"
    )

    # Models
    models: str = Field("large", description="model preset: tiny, small, base-plus, large, sam3, tiny-random, "
                                                 "tiny-random-sam3, random-<preset>")
    detector: str = Field("tiny", description="Grounding DINO size: tiny or base")
    model_dir: Path = Field(Path("models"), description="folder holding checkpoints")
    hf_token: str | None = Field(None, validation_alias=AliasChoices("SAMQ_HF_TOKEN", "HF_TOKEN"),
                                 description="Hugging Face token for gated weights (sam3); HF_TOKEN is read too")
    device: str = Field("auto", description="auto, cuda or cpu")
    dtype: str = Field("auto", description="auto (bf16 on CUDA, fp32 on CPU), bf16, fp16 or fp32")
    compile: bool = Field(False, description="torch.compile the SAM 2 image encoder (GPU; slow first call)")
    embed_cache_mb: int = Field(1024, ge=0, description="SAM 2 embedding cache per worker, MiB; 0 = off")
    encoder_batch: int = Field(
        0, ge=0, le=64, validation_alias=AliasChoices("SAMQ_ENCODER_BATCH", "SAMQ_MAX_BATCH"),
        description="images of the jobs in flight a worker may encode in one image-encoder call; 0 = auto (all "
        "those waiting on CUDA, 1 on CPU); SAMQ_MAX_BATCH, its former name, is read too")
    worker_slots: int = Field(
        0, ge=0, le=64, description="jobs one GPU worker carries at once (Celery threads): while one job's models "
        "run, the others fetch, decode, render and upload; 0 = auto (8 on CUDA, 4 on CPU)"
    )
    box_threshold: float = Field(0.35, ge=0, le=1, description="Grounding DINO box score threshold")
    text_threshold: float = Field(0.25, ge=0, le=1, description="Grounding DINO text score threshold")

    # Limits and money
    sync_timeout_s: float = Field(60.0, gt=0, description="how long the drop-in call waits before 202")
    max_image_bytes: int = Field(20 * 1024 * 1024, gt=0, description="largest encoded image, bytes")
    max_image_pixels: int = Field(50_000_000, gt=0, description="largest image, width*height")
    max_points: int = Field(64, ge=1, description="most points (positive+negative) per request")
    max_boxes: int = Field(64, ge=1, description="most boxes per request")
    max_objects: int = Field(100, ge=1, description="most objects a text prompt may return")
    cost_per_job: int = Field(1, ge=0, description="credits charged per job")
    cost_everything: int = Field(
        4, ge=0, description="credits charged per segment-everything job (many decoder calls: a grid of points)"
    )
    everything_max_points_per_side: int = Field(
        64, ge=4, le=64, description="largest points_per_side a segment-everything job may ask (4..64)"
    )
    everything_max_objects: int = Field(
        256, ge=1, le=1000, description="most objects a segment-everything job returns (and its default)"
    )
    rate_limit_per_min: int = Field(600, ge=0, description="requests per key per minute; 0 = unlimited")
    retention_s: int = Field(
        7 * 24 * 3600, gt=0, description="how long job and batch records, inputs and outputs are kept, s"
    )
    max_queued: int = Field(
        200_000, ge=0, description="most jobs waiting in all queues (past it, 503 queue_full); 0 = no bound"
    )
    max_unfinished_per_key: int = Field(
        0, ge=0, description="most unfinished jobs of one key (past it, 429 too_many_jobs); 0 = no bound"
    )
    max_batch_items: int = Field(1000, ge=1, description="most jobs in one POST /v1/batches")
    public_url: str | None = Field(
        None, description="the gateway's URL as clients see it, for links in webhooks (default http://host:port)"
    )

    # Worker behaviour
    max_attempts: int = Field(3, ge=1, description="attempts before a job ends failed and refunded")
    task_time_limit_s: int = Field(600, gt=0, description="hard limit for one inference task")
    visibility_timeout_s: int = Field(
        300, gt=0, description="broker redelivery of a message taken but never started (leases bring back jobs that "
        "started); > the longest retry countdown (30 s)"
    )
    resend_after_s: float = Field(30.0, gt=0, description="re-enqueue jobs recorded but never sent after this long")
    worker_heartbeat_s: float = Field(
        5.0, gt=0, description="how often workers announce themselves and renew their jobs' leases"
    )
    lease_s: float = Field(
        15.0, ge=1, description="a running job's lease: renewed by its worker's heartbeat; once lapsed, any worker "
        "queues the job again (at least 2 heartbeats)"
    )

    # Webhooks
    webhook_retry_schedule_s: str = Field(
        "0,5,300,1800,7200,18000,36000,50400,72000,86400",
        description="seconds before each webhook attempt, comma-separated, first 0 (retries jittered +-10%)",
    )
    webhook_timeout_s: float = Field(15.0, gt=0, description="time budget of one webhook attempt (connect, read)")
    webhook_allow_hosts: str = Field(
        "", description="comma-separated host[:port] webhooks may reach even if private (tests, internal receivers)"
    )

    # Metrics and logs
    metrics_dir: Path = Field(
        Path("var/metrics"), description="folder where gunicorn's processes add up their metrics; emptied at start"
    )
    worker_metrics_port: int = Field(0, ge=0, le=65535, description="port of a worker's /metrics (on host); 0 = off")
    log_format: Literal["text", "json"] = Field("text", description="text, or json: one object per line")

    # Fetching image URLs
    fetch_timeout_s: float = Field(10.0, gt=0, description="connect+read budget for image URLs")
    fetch_allow_hosts: str = Field(
        "", description="comma-separated host[:port] exempt from the private-address rule (tests, internal)"
    )

    @property
    def lifecycle_days(self) -> int:
        """Days after which the bucket's lifecycle rule removes inputs and results the sweep missed."""
        return -(-self.retention_s // 86400) + 1

    @property
    def base_url(self) -> str:
        """The gateway's public base URL, without a trailing slash."""
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def broker(self) -> str:
        """The Celery broker URL, as given (shared.redis_client.broker gives the one with Sentinels)."""
        return self.broker_url or self.redis_url

    @property
    def sentinels(self) -> tuple[tuple[str, int], ...]:
        """The Sentinels' (host, port) pairs; empty without Sentinel."""
        return tuple(_host_port(part) for part in self.redis_sentinels.split(",") if part.strip())

    @property
    def storage(self) -> str:
        """The resolved storage URL."""
        if self.storage_url:
            return self.storage_url
        if self.s3_endpoint_url:
            return f"s3://{self.s3_bucket}"
        return "file://var/storage"

    @property
    def allowed_webhook_hosts(self) -> frozenset[str]:
        """Hosts (host or host:port) webhooks may be sent to even if private."""
        return frozenset(h.strip().lower() for h in self.webhook_allow_hosts.split(",") if h.strip())

    @property
    def allowed_fetch_hosts(self) -> frozenset[str]:
        """Hosts (host or host:port) that may be fetched even if private."""
        return frozenset(h.strip().lower() for h in self.fetch_allow_hosts.split(",") if h.strip())

    @property
    def webhook_schedule(self) -> tuple[float, ...]:
        """Seconds to wait before attempt 1, 2, ... of one webhook event."""
        return tuple(float(part) for part in self.webhook_retry_schedule_s.split(",") if part.strip())

    @model_validator(mode="after")
    def _lease_outlasts_heartbeats(self) -> Settings:
        if self.lease_s < 2 * self.worker_heartbeat_s:
            raise ValueError(f"SAMQ_LEASE_S ({self.lease_s:g}) must be at least 2 x SAMQ_WORKER_HEARTBEAT_S "
                             f"({self.worker_heartbeat_s:g}): a lease must survive a late heartbeat")
        return self

    @field_validator("redis_sentinels")
    @classmethod
    def _sentinels_are_host_ports(cls, value: str) -> str:
        for part in value.split(","):
            if part.strip():
                _host_port(part)  # raises, naming the bad entry
        return value

    @model_validator(mode="after")
    def _sentinel_has_a_master(self) -> Settings:
        if self.redis_sentinels and not self.redis_sentinel_master:
            raise ValueError("SAMQ_REDIS_SENTINEL_MASTER must name the primary the Sentinels monitor when "
                             "SAMQ_REDIS_SENTINELS is set")
        if self.redis_sentinels and not self.redis_url.startswith("redis://"):
            raise ValueError("with SAMQ_REDIS_SENTINELS, SAMQ_REDIS_URL must be a redis:// URL (it gives the database "
                             "number and password; its host is not used; TLS through Sentinel is not supported)")
        return self

    @field_validator("webhook_retry_schedule_s")
    @classmethod
    def _schedule_is_seconds(cls, value: str) -> str:
        try:
            delays = [float(part) for part in value.split(",") if part.strip()]
        except ValueError:
            delays = []
        if not delays or min(delays) < 0 or delays[0] != 0:
            raise ValueError("must be comma-separated non-negative seconds starting with 0 (the first attempt), "
                             "e.g. 0,5,300")
        return value



def _host_port(part: str) -> tuple[str, int]:
    """`host:port` (or `[v6]:port`) as a pair; a ValueError naming the entry when it is not one."""
    host, sep, port = part.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{part.strip()!r} is not host:port; SAMQ_REDIS_SENTINELS is a comma-separated list such "
                         "as sentinel-0:26379,sentinel-1:26379,sentinel-2:26379")
    return host, int(port)
