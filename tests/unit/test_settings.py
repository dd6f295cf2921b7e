"""Settings are parsed once from SAMQ_* and frozen."""

from pathlib import Path

import pydantic
import pytest

from shared.settings import Settings


def test_defaults(monkeypatch):
    for name in list(__import__("os").environ):
        if name.startswith("SAMQ_"):
            monkeypatch.delenv(name)
    s = Settings()
    assert s.redis_url == "redis://127.0.0.1:6379/0" and s.broker == s.redis_url
    assert (s.host, s.port) == ("127.0.0.1", 8000)
    assert s.storage == "file://var/storage"
    assert s.model_dir == Path("models") and s.models == "large"


def test_environment_and_resolution(monkeypatch):
    monkeypatch.setenv("SAMQ_PORT", "9001")
    monkeypatch.setenv("SAMQ_S3_ENDPOINT_URL", "http://minio:9000")
    monkeypatch.setenv("SAMQ_FETCH_ALLOW_HOSTS", "127.0.0.1:8080, Images.Local")
    monkeypatch.setenv("SAMQ_BROKER_URL", "redis://broker:6379/1")
    s = Settings()
    assert s.port == 9001
    assert s.storage == "s3://samq"
    assert s.allowed_fetch_hosts == {"127.0.0.1:8080", "images.local"}
    assert s.broker == "redis://broker:6379/1"


def test_explicit_storage_url_wins(monkeypatch):
    monkeypatch.setenv("SAMQ_S3_ENDPOINT_URL", "http://minio:9000")
    monkeypatch.setenv("SAMQ_STORAGE_URL", "file:///tmp/x")
    assert Settings().storage == "file:///tmp/x"


def test_frozen_and_validated(monkeypatch):
    s = Settings()
    with pytest.raises(pydantic.ValidationError):
        s.port = 1
    monkeypatch.setenv("SAMQ_PORT", "not-a-port")
    with pytest.raises(pydantic.ValidationError):
        Settings()
    monkeypatch.setenv("SAMQ_PORT", "70000")
    with pytest.raises(pydantic.ValidationError):
        Settings()


def test_renamed_settings_read_their_former_names_and_the_new_one_wins(monkeypatch):
    monkeypatch.setenv("SAMQ_MAX_BATCH", "3")  # SAMQ_ENCODER_BATCH's name before issue 19
    monkeypatch.setenv("HF_TOKEN", "hf_theirs")  # the name Hugging Face's own tools read
    assert Settings().encoder_batch == 3 and Settings().hf_token == "hf_theirs"
    monkeypatch.setenv("SAMQ_ENCODER_BATCH", "5")
    monkeypatch.setenv("SAMQ_HF_TOKEN", "hf_ours")
    assert Settings().encoder_batch == 5 and Settings().hf_token == "hf_ours"
    monkeypatch.setenv("SAMQ_ENCODER_BATCH", "65")
    with pytest.raises(pydantic.ValidationError):
        Settings()
