"""The error codes of final events: every way a run can end other than ``completed``.

Every final event whose status is not ``completed`` carries ``error.code``, one of
:class:`ErrorCode`; :data:`MEANINGS` says which final statuses carry it and what it means to
an app (``docs/protocol.md`` renders that table, and a test checks that the rules and the
admission produce no code outside it). Codes are runpoller's own, so an app can switch on
them; what the API itself said (its error code, the HTTP status) travels beside them in the
final event's ``error.api_code`` and ``error.http_status``.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class ErrorCode(StrEnum):
    # The API ended the run.
    RUN_FAILED = "run_failed"
    RUN_INCOMPLETE = "run_incomplete"
    RUN_EXPIRED = "run_expired"
    CANCELLED_OUTSIDE = "cancelled_outside"
    # runpoller cancelled the run.
    DEADLINE_EXCEEDED = "deadline_exceeded"
    TOOL_OUTPUTS_TIMEOUT = "tool_outputs_timeout"
    CANCELLED_BY_APP = "cancelled_by_app"
    REFUSED_ASSISTANT = "refused_assistant"
    REFUSED_MODEL = "refused_model"
    ACTION_UNSUPPORTED = "action_unsupported"
    CANCEL_UNCONFIRMED = "cancel_unconfirmed"
    # The API refused a request, or answered one in a way that cannot be trusted.
    INVALID_REQUEST = "invalid_request"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    API_ERROR = "api_error"
    OBJECT_MISMATCH = "object_mismatch"
    CREATE_OUTCOME_UNKNOWN = "create_outcome_unknown"
    REQUEST_UNCONFIRMED = "request_unconfirmed"
    # The job was refused before any request was made.
    INVALID_JOB = "invalid_job"
    MISSING_API_KEY = "missing_api_key"
    PLAINTEXT_API_KEY = "plaintext_api_key"
    UNDECRYPTABLE_API_KEY = "undecryptable_api_key"
    # A bug in the worker.
    INTERNAL_ERROR = "internal_error"


MEANINGS: Mapping[ErrorCode, tuple[tuple[str, ...], str]] = {
    ErrorCode.RUN_FAILED: (
        ("failed",),
        "The API reports the run failed. `error.api_code` and `message` are the API's own "
        "(`server_error`, `rate_limit_exceeded`, `invalid_prompt`, ...) when it gave them.",
    ),
    ErrorCode.RUN_INCOMPLETE: (
        ("incomplete",),
        "The API ended the run incomplete; `incomplete_details.reason` says why "
        "(`max_output_tokens`, `content_filter`, ...). Its partial output is in the event.",
    ),
    ErrorCode.RUN_EXPIRED: (
        ("expired",),
        "The API expired the run: tool outputs did not reach it before its own expiry.",
    ),
    ErrorCode.CANCELLED_OUTSIDE: (
        ("cancelled",),
        "The API reports the run cancelled, and nobody asked runpoller to: it was cancelled "
        "directly on the API (by the app, a person, or the provider).",
    ),
    ErrorCode.DEADLINE_EXCEEDED: (
        ("timed_out",),
        "The run passed its deadline (`timeout_ms` after its first enqueue); runpoller "
        "cancelled it and the API confirmed the cancel.",
    ),
    ErrorCode.TOOL_OUTPUTS_TIMEOUT: (
        ("timed_out",),
        "The deadline passed while the run waited for the app's tool outputs; runpoller "
        "cancelled it (confirmed). `message` names the unanswered call ids.",
    ),
    ErrorCode.CANCELLED_BY_APP: (
        ("cancelled",),
        "The app asked runpoller to cancel the run (`cancel.app_reason` is the reason it "
        "gave) and the API confirmed the cancel, or nothing had been created to cancel yet.",
    ),
    ErrorCode.REFUSED_ASSISTANT: (
        ("refused",),
        "The run's assistant is not allowed (`supportedIds` / `excludedIds`): runpoller "
        "cancelled the run, or it had already ended.",
    ),
    ErrorCode.REFUSED_MODEL: (
        ("refused",),
        "The run's model is not in `ASSISTANTS_MODELS`: runpoller cancelled the run, or it "
        "had already ended.",
    ),
    ErrorCode.ACTION_UNSUPPORTED: (
        ("refused",),
        "An agent turn waits for an action runpoller does not hand to apps (a browser "
        "sign-in form, whose credentials must not travel through Redis, or an environment "
        "reconnection, which no session event answers): runpoller cancelled the turn. "
        "`message` names the action.",
    ),
    ErrorCode.CANCEL_UNCONFIRMED: (
        ("timed_out", "cancelled", "refused"),
        "runpoller sent a cancel (`cancel.reason` says why) but the API did not confirm it "
        "before the grace period ended: the run may still be running, and billing, on the "
        "API side.",
    ),
    ErrorCode.INVALID_REQUEST: (
        ("error",),
        "The API answered HTTP 400 to a request runpoller had to make (the job names a run "
        "the API cannot act on).",
    ),
    ErrorCode.UNAUTHORIZED: (
        ("error",),
        "The API answered HTTP 401: the API key is wrong or revoked (`error.api_code` is the "
        "API's, e.g. `invalid_api_key`).",
    ),
    ErrorCode.FORBIDDEN: (
        ("error",),
        "The API answered HTTP 403: the key may not use this run, model or project.",
    ),
    ErrorCode.NOT_FOUND: (
        ("error",),
        "The API answered HTTP 404: no such thread, run or response for this key.",
    ),
    ErrorCode.API_ERROR: (
        ("error",),
        "The API refused a request with another status, answered with a body runpoller "
        "cannot read, or the run ended before any status could be read.",
    ),
    ErrorCode.OBJECT_MISMATCH: (
        ("error",),
        "The API's answer carried another object's id (a proxy or compatible server mixed "
        "up objects): that object's status and output were not taken for this run's.",
    ),
    ErrorCode.CREATE_OUTCOME_UNKNOWN: (
        ("error",),
        "The worker's `POST /v1/responses` for the job's `request` may have reached the API "
        "but no answer came (a timeout, a dropped connection, a worker that died sending it): "
        "a response may exist, and bill, under an id nobody knows. It is not sent again "
        "(that could bill twice). Put your own id in the request's `metadata` to find it "
        "in the API's logs or dashboard, and cancel it there if needed.",
    ),
    ErrorCode.REQUEST_UNCONFIRMED: (
        ("error",),
        "A continuation (the tool outputs of a Responses run, which create a new response) "
        "may have reached the API but its answer never came: it is not sent again, which "
        "could bill twice. `detail.object_ids` holds the responses known so far.",
    ),
    ErrorCode.INVALID_JOB: (
        ("error",),
        "The job is not valid (schema, bounds, metadata size); `message` names the field.",
    ),
    ErrorCode.MISSING_API_KEY: (
        ("error",),
        "No API key: the workers have none, or `ASSISTANTS_API_KEY` is `user_provided` and "
        "the job carries none.",
    ),
    ErrorCode.PLAINTEXT_API_KEY: (
        ("error",),
        "The job's `api_key` is not encrypted (see Per-job API keys).",
    ),
    ErrorCode.UNDECRYPTABLE_API_KEY: (
        ("error",),
        "The job's `api_key` does not decrypt with the workers' `RUNPOLLER_SECRET_KEYS`.",
    ),
    ErrorCode.INTERNAL_ERROR: (
        ("error",),
        "A bug in the worker ended the run rather than strand it (the worker log has it).",
    ),
}

HTTP_CODES: Mapping[int, ErrorCode] = {
    400: ErrorCode.INVALID_REQUEST,
    401: ErrorCode.UNAUTHORIZED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
}
