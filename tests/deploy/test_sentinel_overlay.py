"""The sentinel overlay as `kubectl kustomize` renders it (a subprocess, like the rest of tests/deploy): the pods get
Settings that reach Redis through the Sentinels, and KEDA reads the same queues through them."""

from __future__ import annotations

import re

import pytest

from shared import names
from shared.redis_client import broker_transport_options, broker_url
from shared.settings import Settings
from tests.deploy.test_kubernetes import find, validate
from tests.deploy_files import without_samq_env


@pytest.fixture(scope="module")
def sentinel() -> list[dict]:
    return validate.render("sentinel")


def test_pods_reach_redis_and_the_broker_through_the_sentinels(sentinel, monkeypatch):
    env = without_samq_env(monkeypatch)
    secret = find(sentinel, "Secret", "samq-secrets")["stringData"]
    for key, value in {**find(sentinel, "ConfigMap", "samq-settings")["data"], **secret}.items():
        if key.startswith("SAMQ_"):
            env.setenv(key, value)
    settings = Settings()
    assert len(settings.sentinels) == 3 and settings.redis_min_replicas == 1
    assert broker_url(settings).count("sentinel://") == 3
    assert broker_transport_options(settings)["master_name"] == settings.redis_sentinel_master
    # KEDA asks the same Sentinels, for the same primary.
    assert secret["redis-sentinel-addresses"] == settings.redis_sentinels


def test_keda_reads_the_same_lists_through_the_sentinels(sentinel):
    settings_master = find(sentinel, "ConfigMap", "samq-settings")["data"]["SAMQ_REDIS_SENTINEL_MASTER"]
    scaled = find(sentinel, "ScaledObject", "samq-worker")["spec"]
    triggers = {t["name"]: t for t in scaled["triggers"]}
    assert {t["type"] for t in triggers.values()} == {"redis-sentinel"}
    assert sorted(t["metadata"]["listName"] for t in triggers.values()) == sorted([*names.INFER_QUEUES, "unacked"])
    assert {t["metadata"]["sentinelMaster"] for t in triggers.values()} == {settings_master}
    assert sorted(re.findall(r"[a-z_]+", scaled["advanced"]["scalingModifiers"]["formula"])) == sorted(triggers)
    refs = {r["parameter"]: r["key"] for r in find(sentinel, "TriggerAuthentication", "samq-redis")["spec"]
            ["secretTargetRef"]}
    assert refs == {"addresses": "redis-sentinel-addresses", "password": "redis-password"}
    assert set(refs.values()) <= set(find(sentinel, "Secret", "samq-secrets")["stringData"])
