"""Settings from the environment: safe defaults, the production switches, loud failures."""

import json
import os
import subprocess
import sys

import pytest
from django.conf import settings

PROBE = (
    "import django, json; django.setup(); from django.conf import settings as s; "
    "db = s.DATABASES['default']; layer = s.CHANNEL_LAYERS['default']; "
    "print(json.dumps({'engine': db['ENGINE'], 'name': str(db['NAME']), 'options': db.get('OPTIONS', {}), "
    "'layer': layer['BACKEND'], "
    "'config': layer.get('CONFIG', {}), 'cache': s.CACHES['default']['BACKEND'], 'debug': s.DEBUG}, default=str))"
)
CONFIG_VARS = ("DATABASE_URL", "REDIS_URL", "DEBUG", "SECRET_KEY", "DB_POOL_MAX", "DB_POOL_MIN", "ALLOWED_HOSTS")


def run_settings(**env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in CONFIG_VARS}
    clean.update(DJANGO_SETTINGS_MODULE="dashboard.settings", **env)
    return subprocess.run(
        [sys.executable, "-c", PROBE], env=clean, cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=60
    )


def loaded(**env: str) -> dict:
    result = run_settings(**env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DEBUG", "maybe"),
        ("DB_POOL_MAX", "abc"),
        ("DATABASE_URL", "ftp://x"),
        ("REDIS_URL", "nonsense"),
        ("SECRET_KEY", "short"),
    ],
)
def test_a_bad_value_stops_start_up_naming_the_variable(name, value):
    env = {name: value}
    if name == "DB_POOL_MAX":
        env["DATABASE_URL"] = "postgres://postgres@127.0.0.1:5432/postgres"  # the pool is read only for PostgreSQL
    result = run_settings(**env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert name in result.stderr.strip().splitlines()[-1]


def test_debug_off_needs_a_secret_key():
    result = run_settings(DEBUG="false")
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_defaults_give_sqlite_and_the_in_memory_layer():
    config = loaded()
    assert config["engine"] == "django.db.backends.sqlite3"
    assert config["layer"] == "channels.layers.InMemoryChannelLayer"
    assert config["cache"].endswith("LocMemCache")
    assert config["debug"] is True


def test_database_url_gives_pooled_postgresql():
    config = loaded(DATABASE_URL="postgres://u@db.example:5432/taskdesk", DB_POOL_MAX="7")
    assert config["engine"] == "django.db.backends.postgresql"
    assert config["options"]["pool"]["max_size"] == 7


def test_redis_url_gives_the_redis_layer_with_finite_timeouts():
    # Finite so a hung Redis fails the hub's listener instead of hanging it;
    # longer than channels_redis' 5 s BZPOPMIN so an idle receive is not cut off.
    config = loaded(REDIS_URL="redis://127.0.0.1:6379/3")
    assert config["layer"] == "channels_redis.core.RedisChannelLayer"
    host = config["config"]["hosts"][0]
    assert host["address"] == "redis://127.0.0.1:6379/3"
    assert 5 < host["socket_timeout"] < 60
    assert host["socket_connect_timeout"] <= 2
    assert config["config"]["capacity"] >= 1000
    assert config["cache"].endswith("RedisCache")


def test_production_values_load():
    config = loaded(DEBUG="off", SECRET_KEY="x" * 50, ALLOWED_HOSTS="taskdesk.example")
    assert config["debug"] is False


@pytest.mark.parametrize(
    ("url", "name"),
    [("sqlite:////tmp/taskdesk-abs.sqlite3", "/tmp/taskdesk-abs.sqlite3"), ("sqlite:///rel.sqlite3", "rel.sqlite3")],
)
def test_a_sqlite_database_url_keeps_its_path(url, name):
    probe = loaded(DATABASE_URL=url)
    assert probe["engine"].endswith("sqlite3") and probe["name"] == name
