"""Seeing and steering runs from the shell: ``runs show|list``, ``follow``, ``reply``,
``cancel`` and ``dead-letters list|requeue|purge``.

Each is a thin layer over :class:`runpoller.client.RunpollerClient` (what an app would call),
reading the settings every ``runpoller`` command reads (``REDIS_URL``, ``RUNPOLLER_*``).
``--json`` prints one JSON document on stdout. Errors are one line on stderr: exit code 2 for
bad input (or Redis unreachable, as ``runpoller stats``), 1 for a run or entry not found.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runpoller.cli.common import redis_problem
from runpoller.cli.common import settings as _settings
from runpoller.config import Settings

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from runpoller.client import RunpollerClient, RunView

# redis and runpoller.client are imported where used: `runpoller <anything else>` stays quick.

_STATUSES = ("queued", "in_flight", "requires_action", "ended")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


class Exit(Exception):
    """Ends a command with ``code`` and one line on stderr."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


Body = Callable[["RunpollerClient", argparse.Namespace], Awaitable[int]]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``runs``, ``follow``, ``reply``, ``cancel`` and ``dead-letters``."""
    runs = subparsers.add_parser("runs", help="see runs: show one, list them by status")
    runs_sub = runs.add_subparsers(dest="runs_command", required=True)
    p = runs_sub.add_parser("show", help="everything Redis knows of one run (no secrets)")
    p.add_argument("run_id", help="the run's id (as enqueue printed it)")
    _json_flag(p)
    p.set_defaults(func=_command("runs show", _show))
    p = runs_sub.add_parser(
        "list",
        help="runs by status, oldest first, a page at a time",
        description="queued: jobs no worker has taken yet (by when they are due); in_flight "
        "and requires_action: by when a worker accepted them; ended: by when they ended.",
    )
    p.add_argument("--status", choices=_STATUSES, help="only runs in this status (default: all)")
    p.add_argument(
        "--since", metavar="WHEN", help="from this time on: a duration ago (90s, 10m, 2h, 1d) "
        "or an ISO time (2025-11-26T09:00:00Z; UTC when no offset is given)"
    )  # fmt: skip
    p.add_argument("--limit", default="50", metavar="N", help="runs per page, 1-1000 (50)")
    p.add_argument("--cursor", metavar="C", help="the next page: the cursor the last one gave")
    _json_flag(p)
    p.set_defaults(func=_command("runs list", _list))

    p = subparsers.add_parser(
        "follow", help="show a run's events live until it ends (as enqueue --wait)"
    )
    p.add_argument("run_id", help="the run's id (as enqueue printed it)")
    p.add_argument(
        "--wait-for-start",
        action="store_true",
        help="wait for a run Redis knows nothing of yet (not enqueued yet)",
    )
    p.add_argument("--json", action="store_true", help="print the final result as one JSON object")
    p.set_defaults(func=_command("follow", _follow, blocking=True))

    p = subparsers.add_parser(
        "reply",
        help="answer a run's tool calls: call_id=output ... or --json FILE; prints the entry id",
    )
    p.add_argument("run_id", help="the run's id (as enqueue printed it)")
    p.add_argument(
        "outputs", nargs="*", metavar="call_id=output", help="one tool output per pending call"
    )
    # The outputs may follow --round (`reply ID --round 1 call_1=sunny`): argparse would take
    # them for unknown arguments after an option, so --round collects them too.
    p.add_argument(
        "--round",
        required=True,
        nargs="+",
        metavar=("N", "call_id=output"),
        help="the round answered (the requires_action event's round), then the outputs",
    )
    p.add_argument(
        "--json",
        metavar="FILE",
        dest="json_file",
        help='the outputs from a JSON file ("-": stdin): {"call_id": "output", ...} or '
        '[{"tool_call_id": ..., "output": ...}, ...]',
    )
    p.set_defaults(func=_command("reply", _reply))

    p = subparsers.add_parser("cancel", help="ask the workers to cancel a run")
    p.add_argument("run_id", help="the run's id (as enqueue printed it)")
    p.add_argument("--reason", metavar="TEXT", help="why (shown in the run's final event)")
    p.add_argument(
        "--wait", action="store_true", help="follow the run until it ends (exit 0 once it has)"
    )
    _json_flag(p)
    p.set_defaults(func=_command("cancel", _cancel, blocking=True))

    dead = subparsers.add_parser("dead-letters", help="jobs no run could be tied to")
    dead_sub = dead.add_subparsers(dest="dead_letters_command", required=True)
    p = dead_sub.add_parser("list", help="dead letters, oldest first")
    p.add_argument("--limit", default="50", metavar="N", help="entries per page, 1-1000 (50)")
    p.add_argument("--after", metavar="ENTRY_ID", help="the next page: after this entry")
    _json_flag(p)
    p.set_defaults(func=_command("dead-letters list", _dead_list))
    p = dead_sub.add_parser("requeue", help="enqueue a dead letter's job again, then delete it")
    p.add_argument("entry_id", help="the dead letter's entry id (from dead-letters list)")
    _json_flag(p)
    p.set_defaults(func=_command("dead-letters requeue", _dead_requeue))
    p = dead_sub.add_parser("purge", help="delete dead letters (all, or the older ones)")
    p.add_argument("--older-than", metavar="DURATION", help="only those older (10m, 2h, 7d)")
    p.add_argument("--yes", action="store_true", help="really delete them")
    _json_flag(p)
    p.set_defaults(func=_command("dead-letters purge", _dead_purge))


def _json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON document")


# ---------------------------------------------------------------------------- plumbing


def _command(name: str, body: Body, *, blocking: bool = False) -> Callable[..., int]:
    """An argparse ``func`` running ``body`` with a client on the configured Redis; every
    error it can meet ends in one line on stderr."""

    def run(args: argparse.Namespace) -> int:
        from redis.exceptions import RedisError

        settings = _settings()
        try:
            return asyncio.run(_with_client(settings, args, body, blocking=blocking))
        except Exit as exc:
            print(f"runpoller {name}: {exc.message}", file=sys.stderr)
            return exc.code
        except (RedisError, OSError) as exc:
            print(_redis_problem(name, settings, exc), file=sys.stderr)
            return 2

    return run


async def _with_client(
    settings: Settings, args: argparse.Namespace, body: Body, *, blocking: bool
) -> int:
    from pydantic import ValidationError

    from runpoller.client import RunpollerClient
    from runpoller.redis.url import connect

    # A follow blocks on XREAD for seconds at a time: no socket timeout for it.
    redis: Redis = connect(
        settings.redis_url, socket_connect_timeout=3, socket_timeout=None if blocking else 5
    )
    secret_keys = settings.secret_keys.get_secret_value() if settings.secret_keys else None
    try:
        client = RunpollerClient(
            redis,
            queue_name=settings.queue_name,
            key_prefix=settings.key_prefix,
            secret_keys=secret_keys,
        )
        try:
            return await body(client, args)
        except LookupError as exc:
            raise Exit(1, str(exc)) from None
        except ValidationError:
            raise  # data in Redis we cannot read: a bug or a version skew, with its traceback
        except ValueError as exc:  # the client's refusals of bad input
            raise Exit(2, (str(exc).splitlines() or [type(exc).__name__])[0]) from None
    finally:
        await redis.aclose()


def _redis_problem(name: str, settings: Settings, exc: BaseException) -> str:
    """The line ``runpoller stats`` prints when Redis does not answer, for this command."""
    return redis_problem(name, exc, settings.redis_url)


def _emit(document: Any) -> None:
    """One JSON document on stdout (a pydantic model or plain data)."""
    if hasattr(document, "model_dump_json"):
        print(document.model_dump_json(indent=2))
    else:
        print(json.dumps(document, indent=2))


def _limit(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 1000:
        raise Exit(2, f"--limit must be a whole number from 1 to 1000, got {text!r}")
    return int(text)


def duration_ms(text: str) -> int | None:
    """``90s``, ``10m``, ``2h``, ``1d``, ``500ms`` in ms; None when it is no duration."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        return None
    return int(float(match[1]) * _UNIT_MS[match[2]])


def since_ms(text: str, now_ms: int) -> int:
    """A ``--since``: a duration before ``now_ms``, or an ISO time; epoch ms."""
    ago = duration_ms(text)
    if ago is not None:
        return now_ms - ago
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise Exit(
            2,
            f"--since {text!r} is neither a duration (90s, 10m, 2h, 1d) nor an ISO time "
            "(2025-11-26T09:00:00Z)",
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def format_time(ms: int | None, now_ms: int) -> str:
    """``2025-11-26 00:00:30.500Z (12s ago)``, or ``-``."""
    from runpoller.cli.stats import format_age

    if ms is None:
        return "-"
    stamp = datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    delta = (ms - now_ms) / 1000
    relative = f"in {format_age(delta)}" if delta > 0 else f"{format_age(-delta)} ago"
    return f"{stamp}Z ({relative})"


def _now_ms() -> int:
    return int(time.time() * 1000)


async def _known(client: RunpollerClient, run_id: str) -> RunView:
    view = await client.status(run_id)
    if view is None:
        raise Exit(1, f"no run {run_id}: no record, no result and no queued job")
    return view


# ---------------------------------------------------------------------------- runs


async def _show(client: RunpollerClient, args: argparse.Namespace) -> int:
    from runpoller.cli.follow import describe

    view = await _known(client, args.run_id)
    history = await client.history(args.run_id)
    if args.json:
        document = json.loads(view.model_dump_json())
        document["history"] = [
            {"id": item.id, **json.loads(item.event.model_dump_json())} for item in history
        ]
        _emit(document)
    else:
        print(render_view(view, _now_ms()))
        for item in history:
            when = datetime.fromtimestamp(item.event.ts / 1000, UTC).strftime("%H:%M:%S.%f")
            print(f"    {when[:-3]}  {describe(item.event)}")
    return 0


def render_view(view: RunView, now_ms: int) -> str:
    """A run's view for a person: one labelled line per thing known."""
    rows: list[tuple[str, str]] = []
    if view.job is not None:
        rows.append(("job", json.dumps(view.job, separators=(", ", ": "))))
    if view.phase is not None:
        phase = view.phase
        if view.round:
            phase += f" · round {view.round}"
        if view.pending_calls and view.phase == "awaiting_outputs":
            due = format_time(view.outputs_deadline_ms, now_ms)
            phase += f" · waiting for {', '.join(view.pending_calls)} until {due}"
        rows.append(("phase", phase))
    if view.owner is not None:
        rows.append(("owner", f"{view.owner} ({'alive' if view.owner_alive else 'dead'})"))
    elif view.status in ("in_flight", "requires_action"):
        rows.append(("owner", "none (released; a worker resumes it)"))
    if view.deadline_ms is not None and view.status != "ended":
        rows.append(("deadline", format_time(view.deadline_ms, now_ms)))
    if view.object_ids:
        rows.append(("objects", ", ".join(view.object_ids)))
    if view.last_status:
        rows.append(("api status", view.last_status))
    if view.cancelling:
        rows.append(("cancelling", view.cancelling))
    if view.cancel_request is not None:
        request = view.cancel_request
        text = f"requested {format_time(request.requested_at, now_ms)}"
        if request.reason:
            text += f" · reason: {request.reason}"
        if request.outcome:
            text += f" · {request.outcome}"
            if request.final_status:
                text += f" ({request.final_status})"
        rows.append(("cancel", text))
    for label, ms in (
        ("queued", view.queued_at),
        ("accepted", view.accepted_at),
        ("ended", view.ended_at),
    ):
        if ms is not None:
            rows.append((label, format_time(ms, now_ms)))
    rows.append(("events", str(view.events)))
    if view.result is not None:
        rows.append(("result", f"{view.final_status}: {view.result.get('reason', '')}"))
        error = view.result.get("error")
        if isinstance(error, dict):
            rows.append(("error", f"{error.get('code')}: {error.get('message')}"))
        if view.result.get("output_text"):
            rows.append(("output", str(view.result["output_text"])))
    width = max(len(label) for label, _ in rows)
    lines = [f"run {view.run_id}: {view.status}"]
    lines += [f"  {label:<{width}}  {value}" for label, value in rows]
    return "\n".join(lines)


async def _list(client: RunpollerClient, args: argparse.Namespace) -> int:
    now_ms = _now_ms()
    limit = _limit(args.limit)
    since = None if args.since is None else since_ms(args.since, now_ms)
    page = await client.list_runs(args.status, since_ms=since, limit=limit, cursor=args.cursor)
    if args.json:
        _emit(page)
        return 0
    if not page.items:
        print("no runs" + (" on this page" if page.next_cursor else ""))
    else:
        header = ("RUN", "STATUS", "SINCE", "DETAIL")
        rows = [header] + [
            (
                item.run_id,
                item.status,
                format_time(item.ts, now_ms),
                item.final_status or _detail(item.phase, item.round, item.owner),
            )
            for item in page.items
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        for row in rows:
            cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
            print("  ".join([*cells, row[3]]).rstrip())
    if page.next_cursor:
        again = ["runpoller", "runs", "list"]
        if args.status:
            again += ["--status", args.status]
        again += ["--limit", str(limit), "--cursor", page.next_cursor]
        print(f"more: {' '.join(again)}")
    return 0


def _detail(phase: str | None, round_: int | None, owner: str | None) -> str:
    parts = [phase or ""]
    if round_:
        parts.append(f"round {round_}")
    if owner:
        parts.append(f"owner {owner}")
    return " · ".join(p for p in parts if p)


# ---------------------------------------------------------------------------- follow


async def _follow(client: RunpollerClient, args: argparse.Namespace) -> int:
    from runpoller.cli.follow import ProgressLine, follow_run, print_final

    view = await client.status(args.run_id)
    progress = ProgressLine()
    if view is None:
        if not args.wait_for_start:
            raise Exit(
                1,
                f"no run {args.run_id}: no record, no events and no queued job "
                "(--wait-for-start waits for it)",
            )
        progress.show(args.run_id, "not known yet: waiting for its job and a worker")
    elif view.status == "queued":
        progress.show(args.run_id, "queued: no worker has taken it yet")
    final = await follow_run(client, args.run_id, progress=progress)
    return print_final(final, as_json=args.json)


# ---------------------------------------------------------------------------- reply


async def _reply(client: RunpollerClient, args: argparse.Namespace) -> int:
    number, *pairs = args.round
    if not number.isdigit() or int(number) < 1:
        raise Exit(2, f"--round must be a whole number from 1, got {number!r}")
    round_ = int(number)
    outputs = reply_outputs([*args.outputs, *pairs], args.json_file)
    view = await _known(client, args.run_id)
    if view.status != "requires_action":
        what = f"ended ({view.final_status})" if view.status == "ended" else view.status
        raise Exit(2, f"run {args.run_id} is not waiting for tool outputs: it is {what}")
    if view.round != round_:
        raise Exit(2, f"run {args.run_id} waits for round {view.round}, not {round_}")
    missing = [c for c in view.pending_calls if c not in outputs]
    unknown = [c for c in outputs if c not in view.pending_calls]
    if missing or unknown:
        problems = []
        if missing:
            problems.append(f"no output for {', '.join(missing)}")
        if unknown:
            problems.append(f"round {round_} has no call {', '.join(unknown)}")
        raise Exit(2, f"run {args.run_id}: {'; '.join(problems)} (answer every call once)")
    print(await client.submit_tool_outputs(args.run_id, round_, outputs))
    return 0


def reply_outputs(pairs: Sequence[str], json_file: str | None) -> dict[str, str]:
    """``call_id=output`` arguments, or a JSON file's outputs: {call id: output}."""
    if pairs and json_file:
        raise Exit(2, "give call_id=output arguments or --json FILE, not both")
    if json_file:
        return _outputs_from_json(json_file)
    if not pairs:
        raise Exit(2, "no outputs: give call_id=output arguments or --json FILE")
    outputs: dict[str, str] = {}
    for pair in pairs:
        call_id, sep, output = pair.partition("=")
        if not sep or not call_id:
            raise Exit(2, f"{pair!r} is not call_id=output")
        if call_id in outputs:
            raise Exit(2, f"{call_id} is answered twice")
        outputs[call_id] = output
    return outputs


def _outputs_from_json(path: str) -> dict[str, str]:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise Exit(2, f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise Exit(2, f"{path} is not JSON: {exc}") from None
    if isinstance(data, list):
        pairs: list[tuple[Any, Any]] = []
        for n, item in enumerate(data):
            if not isinstance(item, dict) or "tool_call_id" not in item or "output" not in item:
                raise Exit(2, f"{path}: item {n} needs tool_call_id and output")
            pairs.append((item["tool_call_id"], item["output"]))
    elif isinstance(data, dict):
        pairs = list(data.items())
    else:
        raise Exit(2, f"{path}: give an object {{call_id: output}} or a list of outputs")
    outputs: dict[str, str] = {}
    for call_id, output in pairs:
        if not isinstance(call_id, str) or not call_id:
            raise Exit(2, f"{path}: a tool_call_id must be a non-empty string")
        if not isinstance(output, str):
            kind = type(output).__name__
            raise Exit(2, f"{path}: the output for {call_id} must be a string, not {kind}")
        if call_id in outputs:
            raise Exit(2, f"{path}: {call_id} is answered twice")
        outputs[call_id] = output
    return outputs


# ---------------------------------------------------------------------------- cancel


async def _cancel(client: RunpollerClient, args: argparse.Namespace) -> int:
    from runpoller.cli.follow import follow_run, format_final

    await _known(client, args.run_id)
    outcome = await client.cancel(args.run_id, args.reason)
    ended = outcome.outcome == "already_ended"
    if args.json and (ended or not args.wait):
        _emit(outcome)
    elif ended:
        print(f"run {args.run_id} already ended ({outcome.final_status}): nothing requested")
    elif not args.json:
        print(f"cancel requested for run {args.run_id} (cancels entry {outcome.entry_id})")
    if ended or not args.wait:
        return 0
    final = await follow_run(client, args.run_id)
    if args.json:
        _emit({**outcome.model_dump(mode="json"), "final": final.model_dump(mode="json")})
    else:
        print(format_final(final))
    return 0


# ---------------------------------------------------------------------------- dead letters


async def _dead_list(client: RunpollerClient, args: argparse.Namespace) -> int:
    page = await client.dead_letters(_limit(args.limit), args.after)
    if args.json:
        _emit(page)
        return 0
    now_ms = _now_ms()
    if not page.items:
        print("no dead letters")
    for entry in page.items:
        if entry.letter is None:
            print(f"{entry.id}  unreadable: {entry.problem}")
            continue
        print(f"{entry.id}  {format_time(entry.letter.ts, now_ms)}  {entry.letter.reason}")
        raw = entry.letter.raw
        print(f"    raw: {raw if len(raw) <= 160 else raw[:157] + '...'}")
    if page.next_after:
        print(f"more: runpoller dead-letters list --limit {args.limit} --after {page.next_after}")
    return 0


async def _dead_requeue(client: RunpollerClient, args: argparse.Namespace) -> int:
    run_id = await client.requeue_dead_letter(args.entry_id)
    if args.json:
        _emit({"entry_id": args.entry_id, "run_id": run_id})
    else:
        print(f"run {run_id} enqueued again; dead letter {args.entry_id} deleted")
    return 0


async def _dead_purge(client: RunpollerClient, args: argparse.Namespace) -> int:
    older = None
    if args.older_than is not None:
        older = duration_ms(args.older_than)
        if older is None:
            raise Exit(2, f"--older-than {args.older_than!r} is no duration (10m, 2h, 7d)")
    if not args.yes:
        which = f"older than {args.older_than}" if older is not None else "all of them"
        raise Exit(2, f"deletes dead letters ({which}): add --yes to do it")
    removed = await client.purge_dead_letters(older)
    if args.json:
        _emit({"purged": removed})
    else:
        print(f"purged {removed} dead letter{'' if removed == 1 else 's'}")
    return 0
