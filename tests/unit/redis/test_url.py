"""REDIS_URL: the forms it may take, one line for each mistake, passwords never shown."""

from __future__ import annotations

import pytest
import redis
import redis.asyncio
import redis.asyncio.sentinel

from runpoller.redis.url import RedisUrlError, connect, connect_sync, mask, parse


def test_mask_hides_passwords_only() -> None:
    assert mask("redis://:pw@h:6379/0") == "redis://:***@h:6379/0"
    assert mask("rediss://user:pw@h/1") == "rediss://user:***@h/1"
    assert mask("redis://h:6379/0") == "redis://h:6379/0"
    assert mask("redis://user@h/0") == "redis://user@h/0"
    assert mask("redis+sentinel://:pw@a:26379,b/m/0") == "redis+sentinel://:***@a:26379,b/m/0"
    assert mask("redis://h/0?password=pw&db=1") == "redis://h/0?password=***&db=1"
    assert mask("redis://:p@ss@h/0") == "redis://:***@h/0"  # the last @ ends the userinfo


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("localhost:6379", "has no scheme; write it as redis://host:port/db"),
        ("http://cache:6379/0", "scheme http:// is not one of redis://, rediss://"),
        ("redis://:secretpw@h:notaport/0", "port 'notaport' is not a number from 1 to 65535"),
        ("redis://h:99999/0", "port '99999' is not a number from 1 to 65535"),
        ("redis://h:6379/first", "DB 'first' is not a number"),
        ("redis://h:6379/0/1", "the path must be /<db> only"),
        ("redis://:6379/0", "no host before :6379"),
        ("redis+sentinel://a:26379,b:26379", "no master name"),
        ("redis+sentinel://a:26379,,b/m/0", "no host"),
        ("redis+sentinel://a/m/0/1", "the path must be /<master name>/<db> only"),
        ("unix://", "no socket path"),
    ],
)
def test_each_mistake_is_one_line_without_the_password(url: str, message: str) -> None:
    with pytest.raises(RedisUrlError) as info:
        parse(url)
    text = str(info.value)
    assert message in text
    assert "\n" not in text
    assert "secretpw" not in text


def test_the_forms() -> None:
    plain = parse("redis://user:pw@cache:6380/3")
    assert (plain.hosts, plain.db) == ((("cache", 6380),), 3)
    assert not plain.tls and not plain.sentinel
    assert (plain.username, plain.password, plain.where) == ("user", "pw", "cache:6380")
    assert "pw" not in repr(plain)
    assert parse("rediss://cache").tls and parse("rediss://cache").hosts == (("cache", 6379),)
    assert parse("redis://cache/?db=5").db == 5
    assert parse("unix:///run/redis.sock?db=2").unix_path == "/run/redis.sock"
    assert parse("redis://[::1]:7000/0").where == "[::1]:7000"
    ha = parse("redis+sentinel://:pw@s1:26379,s2,[::1]:26380/mymaster/2")
    assert ha.hosts == (("s1", 26379), ("s2", 26379), ("::1", 26380))
    assert (ha.service, ha.db, ha.password, ha.tls) == ("mymaster", 2, "pw", False)
    assert ha.where == "sentinel s1:26379,s2:26379,[::1]:26380 master mymaster"
    assert parse("rediss+sentinel://s1/m").tls


async def test_connect_builds_a_client_per_form_without_connecting() -> None:
    plain = connect("rediss://:pw@cache:6380/3?ssl_cert_reqs=none", socket_timeout=2)
    kwargs = plain.connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"], kwargs["password"]) == (
        "cache",
        6380,
        3,
        "pw",
    )
    assert kwargs["ssl_cert_reqs"] == "none" and kwargs["socket_timeout"] == 2
    await plain.aclose()
    ha = connect("redis+sentinel://:pw@s1:26379,s2/mymaster/2", socket_timeout=2)
    pool = ha.connection_pool
    assert isinstance(pool, redis.asyncio.sentinel.SentinelConnectionPool)
    assert pool.service_name == "mymaster"
    assert pool.connection_kwargs["db"] == 2 and pool.connection_kwargs["password"] == "pw"
    sentinels = pool.sentinel_manager.sentinels
    assert [s.connection_pool.connection_kwargs["host"] for s in sentinels] == ["s1", "s2"]
    # The sentinels are asked without the master's password, with the same timeouts.
    assert all(s.connection_pool.connection_kwargs.get("password") is None for s in sentinels)
    assert all(s.connection_pool.connection_kwargs["socket_timeout"] == 2 for s in sentinels)
    await ha.aclose()


def test_connect_sync_follows_the_same_forms() -> None:
    plain = connect_sync("redis://cache:6380/1")
    assert plain.connection_pool.connection_kwargs["db"] == 1
    ha = connect_sync("redis+sentinel://s1/mymaster/4")
    assert isinstance(ha.connection_pool, redis.sentinel.SentinelConnectionPool)
    assert ha.connection_pool.connection_kwargs["db"] == 4
    with pytest.raises(RedisUrlError):
        connect_sync("localhost:6379")


async def test_only_the_outermost_retry_keeps_trying() -> None:
    """A connect nested in a command gives up soon, so the outer retry asks the sentinels
    again instead of dialling a dead master for ever (the hang this fixed)."""
    from redis.backoff import NoBackoff

    from runpoller.redis.url import NESTED_RETRIES, FailoverRetry

    retry = FailoverRetry(NoBackoff(), -1, (redis.ConnectionError,))
    inner_attempts: list[int] = []
    outer_attempts = 0

    async def nothing(error: Exception) -> None:
        return None

    async def inner() -> str:
        inner_attempts[-1] += 1
        raise redis.ConnectionError("refused")

    async def outer() -> str:
        nonlocal outer_attempts
        outer_attempts += 1
        if outer_attempts == 3:
            return "asked again, connected"
        inner_attempts.append(0)
        return await retry.call_with_retry(inner, nothing)

    assert await retry.call_with_retry(outer, nothing) == "asked again, connected"
    assert inner_attempts == [NESTED_RETRIES + 1, NESTED_RETRIES + 1]


async def test_the_client_connects_through_the_same_factory() -> None:
    from runpoller.client import RunpollerClient

    client = RunpollerClient.from_url("redis+sentinel://s1/mymaster/3", key_prefix="rp-x")
    assert isinstance(client.redis.connection_pool, redis.asyncio.sentinel.SentinelConnectionPool)
    assert client.keys.prefix == "rp-x"
    await client.redis.aclose()
