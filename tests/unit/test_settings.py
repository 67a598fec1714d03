import dataclasses
import re

import pytest

from queue_svc.settings import QueueSettings
from ticketing_common.settings import BaseSettings, SettingsError, load


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Example(BaseSettings):
    database_url: str
    redis_url: str
    pool_size: int = 10
    debug: bool = False


def test_reads_typed_values_from_prefixed_variables():
    settings = load(
        _Example,
        {
            "TICKETING_DATABASE_URL": "postgresql://db",
            "TICKETING_REDIS_URL": "redis://r",
            "TICKETING_POOL_SIZE": "32",
            "TICKETING_DEBUG": "yes",
            "TICKETING_PEERS": "a.B=127.0.0.1:1, c.D=127.0.0.1:2",
            "TICKETING_PLAINTEXT": "true",
        },
    )
    assert settings.pool_size == 32
    assert settings.debug is True
    assert settings.peers == {"a.B": "127.0.0.1:1", "c.D": "127.0.0.1:2"}
    assert settings.listen == "127.0.0.1:0"


def test_names_every_missing_variable_at_once():
    with pytest.raises(SettingsError) as err:
        load(_Example, {})
    assert "TICKETING_DATABASE_URL is required" in str(err.value)
    assert "TICKETING_REDIS_URL is required" in str(err.value)


def test_rejects_a_malformed_value_with_its_name():
    with pytest.raises(SettingsError, match="TICKETING_POOL_SIZE='many' is invalid"):
        load(
            _Example,
            {
                "TICKETING_DATABASE_URL": "x",
                "TICKETING_REDIS_URL": "y",
                "TICKETING_POOL_SIZE": "many",
            },
        )


def test_rejects_malformed_peer_list():
    with pytest.raises(SettingsError, match="TICKETING_PEERS"):
        load(
            _Example,
            {
                "TICKETING_DATABASE_URL": "x",
                "TICKETING_REDIS_URL": "y",
                "TICKETING_PEERS": "no-equals-sign",
            },
        )


_QUEUE_REQUIRED = {
    "TICKETING_REDIS_URL": "redis://r",
    "TICKETING_ADMISSION_KEY": "k",
    "TICKETING_PEERS": "ticketing.catalog.v1.CatalogService=127.0.0.1:1",
    "TICKETING_PLAINTEXT": "true",
}


def test_the_queue_needs_the_catalog_as_a_peer_and_no_database():
    without = {k: v for k, v in _QUEUE_REQUIRED.items() if k != "TICKETING_PEERS"}
    with pytest.raises(SettingsError, match="TICKETING_PEERS must name"):
        load(QueueSettings, without)
    assert not hasattr(load(QueueSettings, _QUEUE_REQUIRED), "database_url")


def test_the_queue_checks_the_shared_settings_too():
    with pytest.raises(SettingsError, match="TICKETING_WORKERS must be at least 1"):
        load(QueueSettings, _QUEUE_REQUIRED | {"TICKETING_WORKERS": "0"})
    with pytest.raises(SettingsError, match="TICKETING_WORKERS=2 needs a fixed port"):
        load(QueueSettings, _QUEUE_REQUIRED | {"TICKETING_WORKERS": "2"})
    assert load(QueueSettings, _QUEUE_REQUIRED).workers == 1


def test_the_redis_services_read_the_sentinels_and_the_master_name():
    settings = load(
        QueueSettings,
        _QUEUE_REQUIRED
        | {"TICKETING_REDIS_SENTINELS": "10.0.0.1:26379, sentinel-b:26379,[::1]:26380"},
    )
    assert settings.redis_sentinels == ("10.0.0.1:26379", "sentinel-b:26379", "[::1]:26380")
    assert settings.redis_master_name == "ticketing"
    assert load(QueueSettings, _QUEUE_REQUIRED).redis_sentinels == ()


@pytest.mark.parametrize(
    "bad", ["sentinel-b", "sentinel-b:", ":26379", "host:port", "h:0", "h:70000"]
)
def test_a_sentinel_address_that_does_not_parse_is_refused_by_name(bad):
    with pytest.raises(SettingsError, match=f"TICKETING_REDIS_SENTINELS: '{re.escape(bad)}'"):
        load(QueueSettings, _QUEUE_REQUIRED | {"TICKETING_REDIS_SENTINELS": f"h:1,{bad}"})


def test_sentinels_need_a_master_name():
    with pytest.raises(SettingsError, match="TICKETING_REDIS_MASTER_NAME"):
        load(
            QueueSettings,
            _QUEUE_REQUIRED
            | {"TICKETING_REDIS_SENTINELS": "h:1", "TICKETING_REDIS_MASTER_NAME": " "},
        )


def test_mutual_tls_is_the_default_and_plaintext_must_be_asked_for():
    with pytest.raises(SettingsError) as err:
        load(QueueSettings, _QUEUE_REQUIRED | {"TICKETING_PLAINTEXT": "false"})
    for name in ("TICKETING_TLS_CERT", "TICKETING_TLS_KEY", "TICKETING_TLS_CA"):
        assert name in str(err.value)
    assert "TICKETING_PLAINTEXT" in str(err.value)
    files = {
        "TICKETING_TLS_CERT": "/certs/tls.crt",
        "TICKETING_TLS_KEY": "/certs/tls.key",
        "TICKETING_TLS_CA": "/certs/ca.crt",
    }
    settings = load(QueueSettings, _QUEUE_REQUIRED | {"TICKETING_PLAINTEXT": "false"} | files)
    assert settings.tls is not None and str(settings.tls.ca) == "/certs/ca.crt"
    assert settings.tls_gateway_identity == "spiffe://ticketing.dev/gateway"
    assert load(QueueSettings, _QUEUE_REQUIRED).tls is None
