"""``REDIS_URL``: what it may say, how it is shown, and the one place connections are made.

Everyone that talks to Redis (worker, heartbeat thread, CLI, client, webhook receiver,
dashboard) calls :func:`connect` (asyncio) or :func:`connect_sync` (threads), so a URL form
works everywhere or nowhere. Forms:

- ``redis://[[user]:password@]host[:port][/db]`` and ``rediss://…`` (TLS); query options as
  redis-py reads them (``?ssl_cert_reqs=none``, ``?socket_timeout=5`` ...);
- ``unix:///path/to/redis.sock[?db=N]``;
- ``redis+sentinel://[[user]:password@]host[:port][,host2[:port]…]/service[/db]`` (and
  ``rediss+sentinel://`` for TLS to the master): the sentinels to ask (port 26379 by default),
  the monitored master's name, its DB. The password is the master's; sentinels are asked
  without one. After a failover the connection follows the new master.

:func:`parse` refuses a URL with one line that never contains its password; :func:`mask`
shows one with the password replaced. Loads redis only (no arq): the client imports it.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

import redis
import redis.asyncio
import redis.asyncio.retry
import redis.asyncio.sentinel
import redis.retry
import redis.sentinel
from redis.backoff import ExponentialBackoff

SENTINEL_PORT = 26379
REDIS_PORT = 6379
SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel")
MASK = "***"
FAILOVER_RETRIES = 40
"""Attempts a Sentinel client makes by default (backoff capped at 1 s: about 30 s)."""

AsyncRedisT = TypeVar("AsyncRedisT", bound=redis.asyncio.Redis)
T = TypeVar("T")


class RedisUrlError(ValueError):
    """A ``REDIS_URL`` that cannot be used; the message names the problem, never the password."""


@dataclasses.dataclass(frozen=True)
class RedisTarget:
    """What a valid URL points at."""

    url: str = dataclasses.field(repr=False)
    hosts: tuple[tuple[str, int], ...]
    """The server (one), or the sentinels to ask; empty for a unix socket."""
    db: int
    tls: bool
    service: str | None = None
    """The Sentinel master's name (None: not Sentinel)."""
    unix_path: str | None = None
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)

    @property
    def sentinel(self) -> bool:
        return self.service is not None

    @property
    def where(self) -> str:
        """host:port (or the socket path, or ``sentinel host:port,… master <name>``), no secret."""
        if self.unix_path is not None:
            return self.unix_path
        hosts = ",".join(_host_port(host, port) for host, port in self.hosts)
        return f"sentinel {hosts} master {self.service}" if self.sentinel else hosts


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def mask(url: str) -> str:
    """The URL with its password (and any ``password=`` query value) replaced by ``***``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url if "@" not in url else MASK
    netloc, slash, tail = rest.partition("/")
    if "@" in netloc:
        userinfo, _, hosts = netloc.rpartition("@")
        user, colon, _password = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{hosts}" if colon else f"{userinfo}@{hosts}"
    path, question, query = tail.partition("?")
    if query:
        parts = []
        for item in query.split("&"):
            name, eq, _value = item.partition("=")
            parts.append(f"{name}={MASK}" if eq and "password" in name.lower() else item)
        query = "&".join(parts)
    return f"{scheme}://{netloc}{slash}{path}{question}{query}"


def parse(url: str) -> RedisTarget:
    """The target of a ``REDIS_URL``, or :class:`RedisUrlError` saying what is wrong."""
    shown = mask(url)
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise RedisUrlError(
            f"{shown!r} has no scheme; write it as redis://host:port/db "
            "(or rediss://, unix://, redis+sentinel://)"
        )
    scheme = scheme.lower()
    if scheme not in SCHEMES:
        raise RedisUrlError(
            f"{shown!r}: scheme {scheme}:// is not one of " + ", ".join(f"{s}://" for s in SCHEMES)
        )
    if scheme == "unix":
        return _parse_unix(url, shown)
    netloc, _, tail = rest.partition("/")
    path, _, query = tail.partition("?")
    userinfo, at, hostlist = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    sentinel = scheme.endswith("+sentinel")
    default_port = SENTINEL_PORT if sentinel else REDIS_PORT
    entries = hostlist.split(",") if sentinel else [hostlist]
    hosts = tuple(_host(entry, default_port, shown) for entry in entries)
    segments = [unquote(s) for s in path.split("/")] if path else []
    service = None
    if sentinel:
        if not segments or not segments[0]:
            raise RedisUrlError(
                f"{shown!r}: no master name; write redis+sentinel://host:26379,host2:26379/"
                "<master name>/<db>"
            )
        service, segments = segments[0], segments[1:]
    if len(segments) > 1:
        form = "/<master name>/<db>" if sentinel else "/<db>"
        raise RedisUrlError(f"{shown!r}: the path must be {form} only, got /{path}")
    db = _db(segments[0] if segments and segments[0] else None, query, shown)
    return RedisTarget(
        url=url,
        hosts=hosts,
        db=db,
        tls=scheme.startswith("rediss"),
        service=service,
        username=username,
        password=password,
    )


def _parse_unix(url: str, shown: str) -> RedisTarget:
    parts = urlsplit(url)
    if not parts.path:
        raise RedisUrlError(f"{shown!r}: no socket path; write unix:///path/to/redis.sock")
    return RedisTarget(
        url=url,
        hosts=(),
        db=_db(None, parts.query, shown),
        tls=False,
        unix_path=parts.path,
        username=parts.username,
        password=parts.password,
    )


def _host(entry: str, default_port: int, shown: str) -> tuple[str, int]:
    if not entry:
        raise RedisUrlError(f"{shown!r}: no host")
    if entry.startswith("["):
        host, bracket, port_text = entry[1:].partition("]")
        if not bracket or (port_text and not port_text.startswith(":")):
            raise RedisUrlError(f"{shown!r}: {entry!r} is not [IPv6 address]:port")
        port_text = port_text[1:]
    else:
        host, _, port_text = entry.partition(":")
    if not host:
        raise RedisUrlError(f"{shown!r}: no host before :{port_text}")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise RedisUrlError(f"{shown!r}: port {port_text!r} is not a number from 1 to 65535")
    return host, int(port_text)


def _db(text: str | None, query: str, shown: str) -> int:
    from_query = parse_qs(query).get("db")
    if from_query:
        text = from_query[0]
    if text is None:
        return 0
    if not text.isdigit():
        raise RedisUrlError(f"{shown!r}: DB {text!r} is not a number (0, 1, 2 ...)")
    return int(text)


def _options(url: str) -> dict[str, Any]:
    """The query options of a Sentinel URL, as redis-py's from_url would read them."""
    kwargs: dict[str, Any] = redis.connection.parse_url(  # type: ignore[no-untyped-call]
        "redis://h/?" + urlsplit(url).query
    )
    for taken in ("host", "port", "db", "path", "connection_class"):
        kwargs.pop(taken, None)
    return kwargs


_DEPTH: contextvars.ContextVar[int] = contextvars.ContextVar("runpoller_redis_retry", default=0)
NESTED_RETRIES = 2
"""Attempts a retry nested in another makes (a connect inside a command, or the address's
connect inside Sentinel's "ask, then connect") before it lets the outer one decide."""


class FailoverRetry(redis.asyncio.retry.Retry):
    """redis-py's retry, made to follow a failover: redis-py retries a connect with the same
    Retry at every level (the command, Sentinel's "ask where the master is, connect", the
    socket's connect). Retrying forever at the innermost level would dial a dead master for
    ever; here only the outermost level has the full count, nested ones give up after
    :data:`NESTED_RETRIES`, so the outer one asks the sentinels again."""

    async def call_with_retry(
        self, do: Callable[[], Awaitable[T]], fail: Callable[[Any], Any]
    ) -> T:
        depth = _DEPTH.get()
        token = _DEPTH.set(depth + 1)
        limit = self._retries if depth == 0 else NESTED_RETRIES
        self._backoff.reset()  # type: ignore[no-untyped-call]
        failures = 0
        try:
            while True:
                try:
                    return await do()
                except self._supported_errors as error:
                    failures += 1
                    self.noted(error)
                    await fail(error)
                    if 0 <= limit < failures:
                        raise
                    await asyncio.sleep(self._backoff.compute(failures))
        finally:
            _DEPTH.reset(token)

    def noted(self, error: BaseException) -> None:
        """Called with each failed attempt (a subclass may count them)."""


def _sentinel_kwargs(
    target: RedisTarget, kwargs: dict[str, Any], retry: Callable[[], Any]
) -> dict[str, Any]:
    merged = {**_options(target.url), **kwargs, "db": target.db}
    if "retry" not in merged:
        # A failover is expected with Sentinel: for a few seconds no master is known, then
        # the old one refuses writes. Ride it out (about 30 s) unless the caller retries.
        merged["retry"] = retry()
        merged.setdefault("retry_on_error", [redis.ConnectionError, redis.TimeoutError])
    if target.username is not None:
        merged["username"] = target.username
    if target.password is not None:
        merged["password"] = target.password
    if target.tls:
        merged["ssl"] = True
    return merged


def _sentinel_side(kwargs: dict[str, Any]) -> dict[str, Any]:
    """What the connections to the sentinels themselves get: timeouts and TLS, no password."""
    return {k: v for k, v in kwargs.items() if k.startswith(("socket_", "ssl"))}


def connect(
    url: str,
    *,
    redis_class: type[AsyncRedisT] = redis.asyncio.Redis,  # type: ignore[assignment]
    **kwargs: Any,
) -> AsyncRedisT:
    """An asyncio client for ``url`` (any form above); connects lazily, on the first command.

    ``kwargs`` go to redis-py's client (timeouts, retry, ``decode_responses`` ...).
    """
    target = parse(url)
    if not target.sentinel:
        client: AsyncRedisT = redis_class.from_url(url, **kwargs)
        return client
    options = _sentinel_kwargs(
        target,
        kwargs,
        lambda: FailoverRetry(ExponentialBackoff(cap=1.0, base=0.05), FAILOVER_RETRIES),
    )
    manager = redis.asyncio.sentinel.Sentinel(  # type: ignore[no-untyped-call]
        list(target.hosts), sentinel_kwargs=_sentinel_side(options), **options
    )
    assert target.service is not None
    master: AsyncRedisT = manager.master_for(target.service, redis_class=redis_class)
    return master


def connect_sync(url: str, **kwargs: Any) -> redis.Redis:
    """A blocking client for ``url`` (for threads), like :func:`connect`."""
    target = parse(url)
    if not target.sentinel:
        return redis.Redis.from_url(url, **kwargs)
    options = _sentinel_kwargs(
        target,
        kwargs,
        lambda: redis.retry.Retry(ExponentialBackoff(cap=1.0, base=0.05), FAILOVER_RETRIES),
    )
    manager = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
        list(target.hosts), sentinel_kwargs=_sentinel_side(options), **options
    )
    assert target.service is not None
    master: redis.Redis = manager.master_for(target.service)  # type: ignore[no-untyped-call]
    return master
