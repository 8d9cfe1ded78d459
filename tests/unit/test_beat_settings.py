"""Where beat keeps its schedule and lock (BEAT_REDIS_URL, CONTRACT section 5)."""
from __future__ import annotations

import pytest

from config.celery import celery_config
from config.settings import ConfigurationError, Settings

AMQP = "amqp://guest:guest@rabbit:5672//"


def beat_redis(**env: str) -> str:
    return Settings.from_env({"CONVERSATION_VAR_DIR": "/nonexistent", **env}).beat_redis()


def test_the_broker_s_redis_by_default_never_the_active_store() -> None:
    assert beat_redis(REDIS_URL="redis://store:6379/0",
                      CELERY_BROKER_URL="redis://broker:6379/1") == "redis://broker:6379/1"


def test_beat_redis_url_wins() -> None:
    assert beat_redis(CELERY_BROKER_URL="redis://broker:6379/1",
                      BEAT_REDIS_URL="redis://beat:6379/3") == "redis://beat:6379/3"


def test_with_rabbitmq_the_result_backend_s_redis() -> None:
    assert beat_redis(CELERY_BROKER_URL=AMQP,
                      CELERY_RESULT_BACKEND="redis://results:6379/2") == "redis://results:6379/2"


@pytest.mark.parametrize("env", [
    {"CELERY_BROKER_URL": AMQP, "CELERY_RESULT_BACKEND": "rpc://"},
    # The result backend defaults to REDIS_URL: a node of the cluster, not for beat.
    {"CELERY_BROKER_URL": AMQP, "REDIS_URL": "redis://node-1:7000/0", "REDIS_CLUSTER": "true"},
])
def test_no_plain_redis_is_refused_clearly(env: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError, match="set BEAT_REDIS_URL"):
        beat_redis(**env)
    # Workers and producers still get a configuration; beat itself refuses.
    settings = Settings.from_env({"CONVERSATION_VAR_DIR": "/nonexistent", **env})
    assert celery_config(settings)["redbeat_redis_url"] is None


@pytest.mark.parametrize("env, variable", [
    ({"REDIS_URL": "redis://node-1:7000/0", "REDIS_CLUSTER": "true"}, "CELERY_BROKER_URL"),
    ({"REDIS_URL": "redis://node-1:7000/0", "REDIS_CLUSTER": "true",
      "CELERY_BROKER_URL": AMQP}, "CELERY_RESULT_BACKEND"),
])
def test_celery_is_refused_a_cluster_node_it_defaulted_to(env: dict[str, str],
                                                           variable: str) -> None:
    settings = Settings.from_env({"CONVERSATION_VAR_DIR": "/nonexistent", **env})
    with pytest.raises(ConfigurationError, match=variable):
        settings.check_celery_urls()


@pytest.mark.parametrize("env", [
    {"REDIS_URL": "redis://node-1:7000/0", "REDIS_CLUSTER": "true", "CELERY_BROKER_URL": AMQP,
     "CELERY_RESULT_BACKEND": "redis://results:6379/2"},
    {"REDIS_URL": "redis://store:6379/0"},  # one plain Redis for everything is fine
])
def test_plain_servers_for_celery_pass(env: dict[str, str]) -> None:
    Settings.from_env({"CONVERSATION_VAR_DIR": "/nonexistent", **env}).check_celery_urls()
