"""``runpoller dashboard``: an aiohttp app serving the pages (static files) and a JSON API.

The pages are plain HTML and JavaScript modules under ``static/`` (no build step); the one
library, Chart.js, is vendored as a pinned file (``static/vendor/``, see ``vendor/``). The
API is a thin layer over the reads the CLI makes (:mod:`runpoller.client`,
:mod:`runpoller.cli.stats`) and the dashboard's own (:mod:`.overview`, :mod:`.runs`,
:mod:`.census`). Every JSON answer goes through :func:`shown` (secrets blanked as the logs
blank them); every error is one line, ``{"error": ...}``, never a traceback.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, get_args
from urllib.parse import urlsplit

from aiohttp import web
from pydantic import BaseModel, ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from runpoller.cli.runs import Exit, duration_ms, since_ms
from runpoller.client import (
    MAX_PAGE,
    DeadLetterNotFound,
    RequeueRefused,
    RunpollerClient,
    RunStatus,
)
from runpoller.config import Settings
from runpoller.dashboard.auth import COOKIE, Guard
from runpoller.dashboard.census import CensusCache
from runpoller.dashboard.overview import collect_overview
from runpoller.dashboard.runs import Filters, list_runs, run_detail
from runpoller.redis.url import connect
from runpoller.redis.url import mask as mask_url
from runpoller.secrets import MASK, is_secret_name, scrub

STATIC = Path(__file__).parent / "static"
CANCEL_REASON = "cancelled from the dashboard"
_SHOWN_KEY_STATES = frozenset({"encrypted", "plaintext (hidden)", "none"})
_FAILED_SIGN_IN_DELAY_S = 0.5
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

GUARD: web.AppKey[Guard] = web.AppKey("guard", Guard)
CLIENT: web.AppKey[RunpollerClient] = web.AppKey("client", RunpollerClient)
CENSUS: web.AppKey[CensusCache] = web.AppKey("census", CensusCache)
SETTINGS: web.AppKey[Settings] = web.AppKey("settings", Settings)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Problem(Exception):
    """An answer of one line with an HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def shown(value: Any) -> Any:
    """A JSON value with secrets blanked: secret-named fields whole (an ``api_key`` already
    shown as ``encrypted`` / ``none`` stays), keys and tokens inside any text."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {
            k: v
            if k == "api_key" and v in _SHOWN_KEY_STATES
            else (MASK if is_secret_name(k) else shown(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [shown(v) for v in value]
    return value


def _json(data: BaseModel | dict[str, Any], status: int = 200) -> web.Response:
    doc = data.model_dump(mode="json") if isinstance(data, BaseModel) else data
    return web.json_response(shown(doc), status=status)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except Problem as exc:
        response = web.json_response({"error": exc.message}, status=exc.status)
    except (RedisError, OSError) as exc:
        url = mask_url(request.app[SETTINGS].redis_url)
        what = type(exc).__name__
        response = web.json_response(
            {"error": f"Redis unreachable or failing at {url}: {what}: {scrub(str(exc))}"},
            status=503,
        )
    response.headers.update(_SECURITY_HEADERS)
    return response


# ---------------------------------------------------------------------------- session


def _session(request: web.Request) -> str | None:
    return request.app[GUARD].session(request.cookies.get(COOKIE))


def _same_origin(request: web.Request) -> bool:
    """No ``Origin``, or one naming this host (as the browser reached it: ``Host``, or a TLS
    proxy's ``X-Forwarded-Host``; the scheme may differ behind such a proxy)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    hosts = {request.host, request.headers.get("X-Forwarded-Host")}
    return urlsplit(origin).netloc in hosts - {None, ""}


def _https(request: web.Request) -> bool:
    """Whether the browser speaks HTTPS to us (directly, or to a TLS proxy that says so): the
    session cookie is then ``Secure``. A forged header only makes the cookie stricter."""
    return request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"


def _authorised(request: web.Request) -> None:
    """Raise unless the request may act: actions on, signed in, CSRF token and origin right."""
    guard = request.app[GUARD]
    if not guard.actions:
        raise Problem(
            403,
            "read-only dashboard: actions need RUNPOLLER_DASHBOARD_TOKEN set where it starts",
        )
    if not _same_origin(request):
        raise Problem(403, "cross-origin request refused")
    session = _session(request)
    if session is None:
        raise Problem(401, "sign in with the operator token first")
    if not guard.check_csrf(session, request.headers.get("X-CSRF-Token")):
        raise Problem(403, "missing or wrong X-CSRF-Token: reload the page")


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        value = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise Problem(400, "the request body is not JSON") from None
    if not isinstance(value, dict):
        raise Problem(400, "the request body must be a JSON object")
    return value


async def get_session(request: web.Request) -> web.Response:
    guard = request.app[GUARD]
    session = _session(request)
    return _json(
        {
            "actions": guard.actions,
            "signed_in": session is not None,
            "csrf": None if session is None else guard.csrf(session),
            "key_prefix": request.app[SETTINGS].key_prefix,
        }
    )


async def post_login(request: web.Request) -> web.Response:
    guard = request.app[GUARD]
    if not guard.actions:
        raise Problem(403, "read-only dashboard: there is nothing to sign in to")
    if not _same_origin(request):
        raise Problem(403, "cross-origin request refused")
    wait = guard.locked_for()
    if wait > 0:
        raise Problem(429, f"too many failed sign-ins: try again in {math.ceil(wait)} s")
    token = (await _body(request)).get("token")
    cookie = guard.sign_in(token if isinstance(token, str) else "")
    if cookie is None:
        await asyncio.sleep(_FAILED_SIGN_IN_DELAY_S)  # slows guessing down
        raise Problem(401, "wrong operator token")
    session = guard.session(cookie)
    assert session is not None
    response = _json({"signed_in": True, "csrf": guard.csrf(session)})
    response.set_cookie(
        COOKIE, cookie, httponly=True, samesite="Strict", path="/", secure=_https(request)
    )
    return response


async def post_logout(request: web.Request) -> web.Response:
    response = _json({"signed_in": False})
    response.del_cookie(COOKIE, path="/")
    return response


# ---------------------------------------------------------------------------- reads


async def get_overview(request: web.Request) -> web.Response:
    app = request.app
    overview = await collect_overview(app[CLIENT].redis, app[SETTINGS], app[CENSUS])
    return _json(overview)


def _query_int(request: web.Request, name: str, default: int, high: int) -> int:
    text = request.query.get(name, "")
    if not text:
        return default
    if not text.isdigit() or not 1 <= int(text) <= high:
        raise Problem(400, f"{name} must be a whole number from 1 to {high}, got {text!r}")
    return int(text)


def _filters(request: web.Request, now_ms: int) -> Filters:
    q = request.query
    status = q.get("status") or None
    if status is not None and status not in get_args(RunStatus):
        raise Problem(400, f"status must be one of {', '.join(get_args(RunStatus))}")
    backend = q.get("backend") or None
    if backend not in (None, "assistants_run", "response", "agent_turn"):
        raise Problem(400, "backend must be assistants_run, response or agent_turn")
    older = q.get("older_than") or None
    older_ms = None if older is None else duration_ms(older)
    if older is not None and older_ms is None:
        raise Problem(400, f"older_than {older!r} is no duration (90s, 10m, 2h, 1d)")
    since = q.get("since") or None
    try:
        since_value = None if since is None else since_ms(since, now_ms)
    except Exit as exc:
        raise Problem(400, exc.message.replace("--since", "since")) from None
    meta = q.get("meta") or None
    key, sep, value = (meta or "").partition("=")
    return Filters(
        status=status,
        backend=backend,
        worker=q.get("worker") or None,
        older_than_ms=older_ms,
        since_ms=since_value,
        meta_key=key.strip() or None,
        meta_value=value.strip() if sep else None,
    )


async def get_runs(request: web.Request) -> web.Response:
    now_ms = int(time.time() * 1000)
    filters = _filters(request, now_ms)
    limit = _query_int(request, "limit", 50, MAX_PAGE)
    try:
        page = await list_runs(
            request.app[CLIENT],
            filters,
            limit=limit,
            cursor=request.query.get("cursor") or None,
            now_ms=now_ms,
        )
    except ValueError as exc:  # a cursor not given by us
        raise Problem(400, str(exc)) from None
    return _json(page)


def _run_id(request: web.Request) -> str:
    return request.match_info["run_id"]


async def get_run(request: web.Request) -> web.Response:
    run_id = _run_id(request)
    try:
        detail = await run_detail(request.app[CLIENT], run_id)
    except ValidationError as exc:  # a ValueError too: first
        where = ".".join(str(p) for p in exc.errors()[0]["loc"]) or "event"
        raise Problem(
            500,
            f"run {run_id}: Redis holds an event this version cannot read ({where}: "
            f"{exc.errors()[0]['msg']}): is a newer worker writing it?",
        ) from None
    except ValueError as exc:
        raise Problem(400, str(exc)) from None
    if detail is None:
        raise Problem(404, f"no run {run_id}: Redis has no record, result or queued job of it")
    return _json(detail)


async def post_cancel(request: web.Request) -> web.Response:
    _authorised(request)
    reason = (await _body(request)).get("reason")
    text = reason if isinstance(reason, str) and reason.strip() else CANCEL_REASON
    try:
        outcome = await request.app[CLIENT].cancel(_run_id(request), text[:500])
    except ValueError as exc:
        raise Problem(400, str(exc)) from None
    return _json(outcome)


async def get_dead_letters(request: web.Request) -> web.Response:
    limit = _query_int(request, "limit", 50, MAX_PAGE)
    client = request.app[CLIENT]
    count = await client.redis.xlen(client.keys.dead_letters)
    try:
        page = await client.dead_letters(limit, request.query.get("after") or None)
    except RedisError as exc:
        if "Invalid stream ID" in str(exc):
            raise Problem(400, "after must be a dead letter's entry id") from None
        raise
    return _json({**page.model_dump(mode="json"), "count": int(count)})


def _entry_id(request: web.Request) -> str:
    entry_id = request.match_info["entry_id"]
    left, sep, right = entry_id.partition("-")
    if not (left.isdigit() and sep and right.isdigit()):
        raise Problem(400, f"invalid entry id {entry_id!r}: it looks like 1764115260000-0")
    return entry_id


async def get_dead_letter(request: web.Request) -> web.Response:
    try:
        entry = await request.app[CLIENT].dead_letter(_entry_id(request))
    except DeadLetterNotFound as exc:
        raise Problem(404, str(exc)) from None
    return _json(entry)


async def post_requeue(request: web.Request) -> web.Response:
    _authorised(request)
    try:
        run_id = await request.app[CLIENT].requeue_dead_letter(_entry_id(request))
    except DeadLetterNotFound as exc:
        raise Problem(404, str(exc)) from None
    except RequeueRefused as exc:
        raise Problem(409, str(exc)) from None
    return _json({"requeued": True, "run_id": run_id})


async def post_purge(request: web.Request) -> web.Response:
    _authorised(request)
    older = (await _body(request)).get("older_than")
    older_ms = None
    if older not in (None, ""):
        older_ms = duration_ms(older) if isinstance(older, str) else None
        if older_ms is None:
            raise Problem(400, f"older_than {older!r} is no duration (90s, 10m, 2h, 1d)")
    removed = await request.app[CLIENT].purge_dead_letters(older_ms)
    return _json({"purged": removed})


async def get_index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


async def get_health(request: web.Request) -> web.Response:
    """The process answers (a Redis outage is no reason to restart it)."""
    return _json({"ok": True})


async def get_ready(request: web.Request) -> web.Response:
    """Redis answers: ``{"ok": bool}``, 200 or 503, as ``runpoller health --ready`` reads."""
    try:
        await request.app[CLIENT].redis.ping()
    except (RedisError, OSError) as exc:
        return _json({"ok": False, "error": f"Redis: {type(exc).__name__}"}, status=503)
    return _json({"ok": True})


async def _not_found(request: web.Request) -> web.Response:
    raise Problem(404, f"no such API path {request.path}")


# ---------------------------------------------------------------------------- app


ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/", get_index),
    ("GET", "/healthz", get_health),
    ("GET", "/readyz", get_ready),
    ("GET", "/api/session", get_session),
    ("POST", "/api/login", post_login),
    ("POST", "/api/logout", post_logout),
    ("GET", "/api/overview", get_overview),
    ("GET", "/api/runs", get_runs),
    ("GET", "/api/runs/{run_id}", get_run),
    ("POST", "/api/runs/{run_id}/cancel", post_cancel),
    ("GET", "/api/dead-letters", get_dead_letters),
    ("POST", "/api/dead-letters/purge", post_purge),
    ("GET", "/api/dead-letters/{entry_id}", get_dead_letter),
    ("POST", "/api/dead-letters/{entry_id}/requeue", post_requeue),
    ("*", "/api/{tail:.*}", _not_found),
]


def build_app(settings: Settings, redis: Redis, *, token: str | None) -> web.Application:
    """The app on ``redis`` (the caller closes it); ``token``: the operator token, or None."""
    app = web.Application(middlewares=[_errors], client_max_size=64 * 1024)
    secret_keys = settings.secret_keys.get_secret_value() if settings.secret_keys else None
    app[SETTINGS] = settings
    app[GUARD] = Guard(token)
    app[CLIENT] = RunpollerClient(
        redis, queue_name=settings.queue_name, key_prefix=settings.key_prefix,
        secret_keys=secret_keys,
    )  # fmt: skip
    app[CENSUS] = CensusCache(redis, app[CLIENT].keys)

    async def close_census(app: web.Application) -> None:
        await app[CENSUS].close()

    app.on_cleanup.append(close_census)
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
    app.router.add_static("/static", STATIC)
    return app


async def start(
    settings: Settings, *, host: str, port: int, token: str | None
) -> tuple[web.AppRunner, Redis, str]:
    """Serve the dashboard: (runner, its Redis, its URL). Stop with :func:`stop`."""
    redis: Redis = connect(settings.redis_url, socket_connect_timeout=3, socket_timeout=5)
    runner = web.AppRunner(build_app(settings, redis, token=token), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError:
        await stop(runner, redis)
        raise
    bound = runner.addresses[0][1] if runner.addresses else port
    shown_host = f"[{host}]" if ":" in host else host
    return runner, redis, f"http://{shown_host}:{bound}/"


async def stop(runner: web.AppRunner, redis: Redis) -> None:
    await runner.cleanup()
    await redis.aclose()


async def serve(settings: Settings, *, host: str, port: int, token: str | None) -> None:
    """Run until cancelled (Ctrl-C), printing the URL once it listens."""
    runner, redis, url = await start(settings, host=host, port=port, token=token)
    mode = "actions enabled (operator token set)" if token else "read-only"
    print(f"runpoller dashboard: {url} · {mode} · prefix {settings.key_prefix}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await stop(runner, redis)


__all__ = ["build_app", "serve", "shown", "start", "stop"]
