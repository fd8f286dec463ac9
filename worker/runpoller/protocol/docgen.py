"""Generate ``docs/protocol.md`` from the protocol models (``python -m runpoller.protocol.docgen``).

The document is the contract for apps in any language. Its schemas, key names and function
names come from ``runpoller.protocol``; ``tests/unit/protocol/test_docgen.py`` fails when the
committed file differs from what this renders.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter

from runpoller.engine.codes import MEANINGS
from runpoller.protocol import (
    FN_RUN,
    PROTOCOL_VERSION,
    AcceptedEvent,
    DeadLetter,
    FinalEvent,
    Job,
    Keys,
    ProgressEvent,
    ReplyRejectedEvent,
    RequiresActionEvent,
    StatusEvent,
    ToolOutput,
    ToolOutputsReply,
)

DOC_PATH = Path(__file__).resolve().parents[3] / "docs" / "protocol.md"
K = Keys("runpoller")
QUEUE = "runpoller:queue"


def _schema(model: type[BaseModel] | Any) -> str:
    if isinstance(model, type) and issubclass(model, BaseModel):
        schema = model.model_json_schema()
    else:
        schema = TypeAdapter(model).json_schema()
    return "```json\n" + json.dumps(schema, indent=2, sort_keys=True) + "\n```"


def _codes_table() -> str:
    rows = ["| `error.code` | final `status` | what it means to the app |", "|---|---|---|"]
    for code, (statuses, meaning) in MEANINGS.items():
        shown = ", ".join(f"`{status}`" for status in statuses)
        rows.append(f"| `{code.value}` | {shown} | {meaning} |")
    return "\n".join(rows)


# ---------------------------------------------------------------- issue 21: doc gaps

_ARQ_BODY_FIELDS = """\
The job body's five fields, all required (arq reads them; a body without one, or not JSON,
is recorded on the dead letters, never run):

| field | value |
|---|---|
| `f` | the function: always `runpoller.run` for an app's job |
| `a` | the arguments: an array holding exactly one job object (below) |
| `k` | keyword arguments: always `{}` |
| `t` | arq's try count given at enqueue: send `null` (JSON null: "the first try"). A worker \
only logs it: a run is bounded by its deadline, never by a number of tries |
| `et` | enqueue time, epoch ms (integer): the run's deadline is `et` plus its timeout |

The key `arq:job:run:<id>` expires after a day (`PX 86400000`); the queue member is `run:<id>`
with the enqueue time as its score (due now)."""

# A test vector: key bytes 0x00..0x1f, nonce bytes 0xa0..0xab (a real value takes a random
# nonce); tests/unit/protocol/test_docgen.py decrypts it with runpoller.secrets, the Node
# client's tests with their own code.
KEY_RING_VECTOR = {
    "ring": "k2026:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
    "ring_padded_standard": "k2026:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    "nonce_hex": "a0a1a2a3a4a5a6a7a8a9aaab",
    "plaintext": "sk-test-0123456789",
    "api_key": "enc:v1:k2026:oKGio6SlpqeoqaqrlXNRWSC4dpJSVLXgM0_26UiVUz0ElTS5-jIYLYq8zgLDgA",
}

_KEY_RING = f"""#### Key ring grammar

`RUNPOLLER_SECRET_KEYS` is read exactly so (the Python and Node clients parse it the same way):

```
ring  = entry *( "," entry )        ; entries trimmed of surrounding whitespace; empty ones skipped
entry = key-id ":" key
key-id = 1*( any character but "," and ":" )   ; kept as written: use [A-Za-z0-9_.-]
key   = base64 of exactly 32 bytes  ; standard (+/) or URL-safe (-_) alphabet, "=" padding optional
```

The first entry is the current key (what clients encrypt with); a key id may appear once.
`runpoller.secrets.new_key()` and the Node client's `newKey()` write keys URL-safe without
padding (43 characters); the standard alphabet with padding (44 characters, as `openssl rand
-base64 32` prints) is accepted too: the two spellings of the test key below are one key.
The value's body is always written URL-safe without padding (`base64url_nopad`); that is
what any client must produce.

Test vector (the nonce is fixed here only to make it reproducible: never reuse a nonce):

```
RUNPOLLER_SECRET_KEYS = {KEY_RING_VECTOR["ring"]}
               (same) = {KEY_RING_VECTOR["ring_padded_standard"]}
key (hex)             = 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
nonce (hex)           = {KEY_RING_VECTOR["nonce_hex"]}
plaintext             = {KEY_RING_VECTOR["plaintext"]}
api_key               = {KEY_RING_VECTOR["api_key"]}
```"""

_DEAD_LETTER_LAYOUT = f"""\
Each entry of `{K.dead_letters}` (capped at about 10,000 entries, `XADD … MAXLEN ~ 10000`)
has one field, `data`: the JSON object below (`ts`: when it was written, epoch ms). `raw` is
what the worker received, API keys and other secrets blanked, cut to 4 KiB: the job object
as JSON for an invalid job or a conflicting re-enqueue; a JSON `{{"f", "a", "k"}}` call when
`runpoller.run` got other than one argument; the body's text when it was no arq body at all
(not JSON, a field missing, an unknown function). `reason` is one line; a conflicting
re-enqueue's starts with `conflicting_job:`. The entry id (`XADD`'s `<ms>-<seq>`) names the
letter for `runpoller dead-letters requeue ID`."""


def render() -> str:
    job_example = {
        "kind": "assistants_run",
        "thread_id": "thread_abc",
        "run_id": "run_abc",
        "timeout_ms": 120000,
        "metadata": {"conversation": "c-42"},
    }
    arq_body: dict[str, Any] = {
        "f": FN_RUN,
        "a": [job_example],
        "k": {},
        "t": None,
        "et": 1764115200000,
    }
    reply_outputs = json.dumps([{"tool_call_id": "call_1", "output": '{"temp_c": 21}'}])
    sections = [
        f"""# runpoller protocol, version {PROTOCOL_VERSION}

<!-- Generated by `python -m runpoller.protocol.docgen` from runpoller.protocol. Do not edit:
     tests/unit/protocol/test_docgen.py fails when this file and the code disagree. -->

This is the contract between a calling app (any language) and runpoller workers. Everything
is JSON in plain Redis structures: an app needs nothing but a Redis client.

1. The app creates a run (Assistants API), a background response (Responses API) or an agent
   session turn (Agents API, beta) itself, or lets the worker create the response or turn.
2. It **enqueues a job** naming that run on the queue (an arq job with a JSON body).
3. A worker polls the API, and appends **events** to the run's stream: `accepted`, every
   `status` change, `requires_action` when the model calls functions, and one `final` event.
4. For function calls the app **replies** with the outputs on the replies stream.
5. The final event is also stored as the run's **result**.

Key names below use the default prefix `runpoller` (setting `RUNPOLLER_KEY_PREFIX`) and the
default queue `{QUEUE}` (setting `RUNPOLLER_QUEUE_NAME`). `<id>` is the logical run id: the
job's `id`, or else its `run_id` / `response_id` / `turn_id`.

## Keys

| key | type | written by | what |
|---|---|---|---|
| `{QUEUE}` | sorted set | app | arq queue: member = arq job id, score = run-at epoch ms |
| `arq:job:<job id>` | string | app | the arq job body (JSON, below) |
| `{K.events("<id>")}` | stream | worker | the run's events, fields `type` and `data` (JSON) |
| `{K.result("<id>")}` | string | worker | the final event (JSON), once the run has ended |
| `{K.replies}` | stream | app | tool outputs answering `requires_action` events |
| `{K.reply_status("<entry id>")}` | string | worker | why a reply no run could use was not \
applied (JSON; kept 1 day) |
| `{K.cancels}` | stream | app | cancel requests (fields `run_id`, `reason`) |
| `{K.cancel("<id>")}` | hash | app, worker | the run's durable cancel request (`reason`, \
`requested_at`; the worker adds `outcome`, `final_status` when the run had already ended) |
| `{K.runs_active}`, `{K.runs_ended}` | sorted set | worker | index of runs in flight (score: \
accepted, epoch ms) and ended (score: end, epoch ms), for listing without a scan |
| `{K.wakes}` | stream | webhook receiver | a background response ended (fields `object_id`, \
`type`, `webhook_id`): the run following it polls now (docs/operations.md, Webhooks) |
| `{K.prefix}:webhook:<webhook-id>` | string | webhook receiver | a delivery already recorded \
(kept 24 h): OpenAI's retries of it write nothing |
| `{K.run("<id>")}` | hash | worker | the run's durable state (internal; do not write) |
| `{K.dead_letters}` | stream | worker | jobs that could not be tied to any run, with the reason |
| `{K.worker_events}` | stream | worker | dead workers detected, hand-offs (for operators) |
| `{K.control}`, `{K.prefix}:ratelimit:<key hash>:<window>` | internal | worker | 429 pauses \
shared between workers; the per-key request budget |
| `{K.outcomes(0).rsplit(":", 1)[0]}:<minute>` | hash | worker | final statuses per minute \
(minute = epoch s // 60; kept 2 h) |
| `{K.workers}`, `{K.heartbeat("<worker>")}`, `{K.owned("<worker>")}`, `{K.orphans}` \
| internal | worker | liveness (heartbeat value: JSON `ts`, `in_flight`, `version`), ownership, \
recovery |
| `<queue>:taken:<worker>` | internal | worker | intake jobs a worker took and has not \
settled yet (given back when the worker is found dead) |

Streams and results expire (setting `RUNPOLLER_RECORD_TTL_S`, default 7 days); streams are
capped at `RUNPOLLER_EVENT_STREAM_MAXLEN` entries (default 1000).

`arq:job:<job id>` keys are named by arq, not under `RUNPOLLER_KEY_PREFIX`: two deployments
sharing one Redis database share them, so the same run id enqueued by both is one job (the
second `SET … NX` is a no-op), whatever their prefixes and queue names. Give each deployment
its own Redis database (`REDIS_URL=redis://host:6379/<n>`).

## 1. Enqueue a job

An arq job whose function is `{FN_RUN}` and whose single argument is the job object. Use
the arq job id `run:<id>` so that enqueuing the same run twice is a no-op (`SET … NX`), and
give the key an expiry. Enqueue time `et` (epoch ms) anchors the run's deadline.

```
MULTI
SET arq:job:run:run_abc '{json.dumps(arq_body, separators=(",", ":"))}' PX 86400000 NX
ZADD {QUEUE} NX 1764115200000 run:run_abc
EXEC
```

{_ARQ_BODY_FIELDS}

Guarantees: one poller per run id, whatever the number of enqueues; one `final` event per
run; the deadline (`timeout_ms` after the first enqueue) never moves, across tool rounds
and worker restarts. A job that is not valid never crashes a worker and is never retried:
if it names a run id, that run gets a `final` event with `status: "error"` and
`error.code: "invalid_job"`; otherwise it is recorded on `{K.dead_letters}`.

A run id names one run for good: the job that created its record is the run's job. A later
job for the same run id (a re-enqueue: while the run is polled, after it ended, or while it
is orphaned because its worker just stopped) is compared with it on the run's identity:
`kind`, `thread_id`, `run_id`, `response_id`, `request`, `continuation`, `session_id`,
`turn_id` and `input`. Equal, it is the
same run and changes nothing (an orphaned run is resumed, as its first job asked). Any field
different, the job is refused and recorded on `{K.dead_letters}`, the reason naming the run
and the fields, e.g. `conflicting_job: a second job for run <id> was refused: thread_id
differs from the run's first job, which the run keeps`; the run's events and final are not
touched and the run carries on with its first job. Either way nothing of the later job is
applied, neither its `api_key` (a credential, not identity: encrypted with a fresh nonce
each time, one key never looks the same twice) nor its `poll_interval_ms`, `timeout_ms` or
`metadata`. To run something else, use a new run id.

### Job object

{_schema(Job)}

### Agent turns (`agent_turn`, Agents API beta)

A job of kind `agent_turn` follows one turn of an Agents-API session (the Assistants API's
successor: agents, sessions, turns), through the same deadline, events, replies and cancel
as the other kinds. Name the turn the app started (`session_id` + `turn_id`), or give
`input` (and an `id`): the worker posts it as an `agent.session.input.message` event and
follows the turn it starts (the session's newest turn; a message whose turn does not show up
ends `create_outcome_unknown`, never posted twice). The worker sends `OpenAI-Beta: agents=v1`.

- Statuses: the turn's `queued`, `in_progress`, `waiting` are polled (`status` events carry
  them as the API says them); `completed`, `failed`, `cancelled` end the run with that
  status. A session that `failed` ends the run `failed` (`error.api_code: "session_failed"`,
  the session's error as `message`). A poll of an unfinished turn reads the turn and its
  session (two GETs).
- Required actions of the turn become one `requires_action` event (`requires_action` is its
  `status` event): every `tool_calls[]` entry has the `turn_id`. `type: "function"` is a
  `function_call` (answer with the output: one `agent.session.input.tool_result` event per
  call, `success: true`). `type: "mcp_approval"` (an `mcp_approval_request`; `name` is the
  MCP tool, `arguments` its arguments, `request` the API's request) and
  `type: "computer_use_approval"` (a `computer_use_approval_request` for
  `browser_origin_access`; `arguments` holds `origin` and `reason`) are answered with exactly
  `"approve"` or `"deny"` (anything else is a `reply_rejected`); the worker sends the
  matching `agent.session.input.*_approval_request_result` event.
- Not handed to apps: a `computer_use_approval_request` for `browser_authentication` (its
  answer is sign-in credentials, which must not travel through Redis) and
  `environment_connection` (no session event answers it). The worker cancels the turn at
  once; the run ends `refused`, `error.code: "action_unsupported"`, `cancel.reason:
  "unsupported_action"`, the message naming the action.
- Cancel (deadline, app): an `agent.session.input.cancel` event, confirmed by the turn's
  `cancelled` status.
- `supportedIds` / `excludedIds` apply to the session's agent id, `ASSISTANTS_MODELS` to the
  agent's model (a refused turn is cancelled).
- The `final` event: `output_text` (the turn's assistant messages), `usage` (the turn's),
  `model` (the agent's), and `detail`: `session_id`, `turn_id`, `agent_id`, `items` (the
  turn's items as the API lists them).

### Per-job API keys

`api_key` is never sent in plaintext: workers refuse it (`error.code: "plaintext_api_key"`)
unless `RUNPOLLER_ALLOW_PLAINTEXT_KEYS=true`. Encrypt it with a key the workers hold in
`RUNPOLLER_SECRET_KEYS` (`<key id>:<base64 32-byte key>,...`; the first is current, the others
still decrypt, for rotation):

```
api_key = "enc:v1:" + key_id + ":" + base64url_nopad(nonce || ciphertext || tag)
```

AES-256-GCM, a fresh random 12-byte `nonce` per value, the 16-byte `tag` appended (as Node's
`cipher.getAuthTag()` gives it), associated data = the ASCII bytes `runpoller-api-key-v1`.
The Python client (`RunpollerClient(secret_keys=...)`) and the Node client
(`clients/node`, `secretKeys`) do this for you. A key that does not decrypt ends the run with
`error.code: "undecryptable_api_key"`.

{_KEY_RING}

## 2. Read events

Read the run's stream from the start (`0-0`) or from the last id you saw; a reconnecting
app misses nothing. Stop at the `final` event.

```
XREAD BLOCK 5000 STREAMS {K.events("run_abc")} 0-0
```

Each entry has two fields: `type` (one of `accepted`, `status`, `requires_action`,
`reply_rejected`, `progress`, `final`) and `data`, the event as JSON. Ignore a `type` you do
not know: a later version may add one.

### `accepted`

{_schema(AcceptedEvent)}

### `status`

{_schema(StatusEvent)}

### `requires_action`

{_schema(RequiresActionEvent)}

### `reply_rejected`

{_schema(ReplyRejectedEvent)}

### `progress`

Only for a `response` job with `"stream": true`. The worker creates the response (and every
continuation after a function-call round) as a background stream and relays its text as it
is written, coalesced (the first text at once, then at most one event per 100 ms or 1 KiB).
Joined in order, the `delta`s of one `object_id` are exactly its text: a broken stream is
resumed at once after the last `sequence_number` taken, and a worker taking the run over
resumes after the last one written. A stream that cannot be opened gives way to polling at the
run's interval, the next poll trying the stream again; after three streams in a row that
delivered nothing the run is only polled (as it is when the worker holds
`RUNPOLLER_MAX_STREAMS` streams already). A streamed run needs no webhook and, while its
stream stays open, no poll: a whole response is one request. Nothing else changes: `status`,
`requires_action` and `final` events come as for any run, and `final` has the whole
`output_text`. Progress events count against the stream's cap
(`RUNPOLLER_EVENT_STREAM_MAXLEN`) like any other.

{_schema(ProgressEvent)}

### `final`

`status` is one of: `completed`, `failed`, `incomplete`, `expired` (as the API reported
them), `cancelled` (the API reports it cancelled: at the app's request through runpoller, or
directly on the API), `timed_out` (runpoller cancelled the run at its deadline), `refused`
(assistant or model not allowed; the run was cancelled), `error` (the job was invalid, or
the API refused our requests, e.g. 401/404, or answered in a way that cannot be trusted).

Every final event whose `status` is not `completed` carries `error`; switch on
`error.code`, never on `reason` (prose, for people). When runpoller started cancelling the
run (deadline, tool-output timeout, refusal, the app's request), `cancel` says why and
whether the API confirmed it: `cancel.outcome: "unconfirmed"` (with `error.code:
"cancel_unconfirmed"`) means the run may still be running on the API side.

#### Error codes

{_codes_table()}

A status the API reports that runpoller does not know (one added since) is not an end: the
run keeps polling, its `status` events carry the status as the API gave it, and the
deadline cancels it (`timed_out`, `api_status` the unknown status).

{_schema(FinalEvent)}

## 3. Answer function calls

When a `requires_action` event arrives, call the functions and add **one** entry to
`{K.replies}` answering every `tool_calls[].id` of that round exactly once:

```
XADD {K.replies} MAXLEN ~ 100000 * run_id run_abc round 1 outputs '{reply_outputs}'
```

The worker that owns the run wakes at once, checks the reply (every pending id answered
exactly once, no unknown ids, outputs are strings) and submits all outputs in one request.
An entry has exactly the fields `run_id`, `round` and `outputs`, and each item of `outputs`
exactly `tool_call_id` and `output`: anything else is rejected, naming it. A call the app
could not run is answered with `error` (its message) instead of `output`: an agent turn gets
`success: false` with that error; Assistants and Responses runs, whose APIs take outputs
only, get the output `{{"error": "<message>"}}`. An approval (`type` `mcp_approval` /
`computer_use_approval`) is answered with `output` `"approve"` or `"deny"`, never `error`.

Every reply that cannot be used is answered, never dropped in silence:

- for a run in flight (a failed check, a round not asked yet, a round already answered, a
  run no longer waiting), a `reply_rejected` event on the run's stream names each problem;
  for a round still open, send a corrected reply before the deadline in the
  `requires_action` event;
- for a run that does not exist, or that had ended before the reply was written, there is
  no stream to tell: the worker writes `{K.reply_status("<entry id>")}` (the id `XADD`
  returned), JSON `{{"status": "rejected", "run_id", "round", "problem"}}`, kept one day.

A reply whose entry names no `run_id` or `round` at all reaches no run; it is logged only.

{_schema(ToolOutputsReply)}

Each element of `outputs`:

{_schema(ToolOutput)}

## 4. Read the result

```
GET {K.result("run_abc")}
```

The `final` event's JSON, or nil while the run is in flight.

## 5. Cancel a run

Ask the workers to cancel run `<id>` with one transaction: a durable request on the run, and
an entry on `{K.cancels}` that wakes its owner.

```
MULTI
HSET {K.cancel("run_abc")} reason "user pressed stop" requested_at 1764115260000
EXPIRE {K.cancel("run_abc")} 604800
XADD {K.cancels} MAXLEN ~ 100000 * run_id run_abc reason "user pressed stop"
EXEC
```

The worker that owns the run cancels it through the API at once (every backend), waits for
the API to confirm, and ends the run with `status: "cancelled"`, `error.code:
"cancelled_by_app"` and `cancel: {{"reason": "app", "outcome": "confirmed", "app_reason":
"user pressed stop"}}`. The request is durable, so it takes effect whenever it is sent: while
the run is polled or waits for tool outputs, before any worker took the job (the run is
cancelled as soon as it is accepted; a response runpoller would create is never created),
and while no worker owns the run (its next owner reads the request). The deadline still
bounds everything: a cancel the API does not confirm within the grace period ends
`cancel_unconfirmed`. Sending it again changes nothing. A run that reaches another end
first (it completed before the cancel took effect) reports that end, with `cancel.outcome:
"overtaken"`. If the run had already ended, nothing is sent; a worker answers in the
request: `outcome` `already_ended` and the run's `final_status` (the Python client, and
`runpoller cancel`, check the result first and say so without writing anything).

## 6. See runs

A run's record is `{K.run("<id>")}` (read it, never write it): `job` (the job as stored, its
`api_key` encrypted), `state` (the engine's JSON: `phase`, `deadline`, `object_ids`, `round`,
`pending_calls`, …; fields may be added), `owner` (the worker driving it, or empty), `final`.
Two sorted sets index the runs, kept by the workers' scripts (never a `KEYS` scan):
`{K.runs_active}` (run id → when a worker accepted it, epoch ms; removed when the run ends)
and `{K.runs_ended}` (run id → when it ended; trimmed at `RUNPOLLER_RECORD_TTL_S`). Page
them with `ZRANGEBYSCORE` by (score, member); an active entry whose record no longer exists
belongs to a run whose record expired unfinished: skip it. Queued runs are the `run:<id>`
members of `{QUEUE}` with no record yet. Scores come from the workers' clocks.

The same reads from the shell, each with `--json` (docs/operations.md): `runpoller runs show
ID`, `runpoller runs list [--status queued|in_flight|requires_action|ended] [--since]
[--limit N] [--cursor C]`, `runpoller follow ID`, `runpoller reply ID --round N
call_id=output …` (section 3's entry), `runpoller cancel ID [--reason TEXT] [--wait]`
(section 5's transaction), `runpoller dead-letters list|requeue ID|purge`. The Python client
has them as `status`, `list_runs`, `cancel`, `dead_letters`, `requeue_dead_letter` and
`purge_dead_letters`.

## Dead letters

Jobs no run could be tied to (and re-enqueues that conflict with a run's first job) are
kept on `{K.dead_letters}`, never retried: `runpoller dead-letters list`, `requeue` and
`purge` manage them (docs/operations.md).

{_DEAD_LETTER_LAYOUT}

{_schema(DeadLetter)}
"""
    ]
    return "\n".join(sections)


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m runpoller.protocol.docgen",
        description=f"Write {DOC_PATH.name} from the protocol models (or check it is current).",
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 when the file is out of date"
    )
    args = parser.parse_args(argv)  # --help prints this and exits: it never writes the docs
    text = render()
    if args.check:
        current = DOC_PATH.read_text(encoding="utf-8") if DOC_PATH.exists() else ""
        if current != text:
            print(
                f"{DOC_PATH} is out of date: run python -m runpoller.protocol.docgen",
                file=sys.stderr,
            )
            return 1
        return 0
    DOC_PATH.parent.mkdir(parents=True, exist_ok=True)
    DOC_PATH.write_text(text, encoding="utf-8")
    print(f"wrote {DOC_PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
