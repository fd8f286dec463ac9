"""Configuration: one typed settings class, layered env > librechat.yaml > defaults.

Mirrors LibreChat's ``assistants`` endpoint (``ASSISTANTS_API_KEY`` incl. ``user_provided``,
``ASSISTANTS_BASE_URL``, ``ASSISTANTS_MODELS``; ``endpoints.assistants`` in ``librechat.yaml``
for ``pollIntervalMs``, ``timeoutMs``, ``supportedIds``, ``excludedIds``, ``privateAssistants``).
runpoller's own settings share the ``RUNPOLLER_`` prefix. Unlike LibreChat, nonsense values are
refused: the rules live on :class:`Settings` (so ``Settings(...)`` built in code is checked too,
once, with messages in field names), and :func:`load_settings` turns the first problem into one
:class:`ConfigError` line naming the variable and where its value came from.
"""

from __future__ import annotations

import base64
import dataclasses
import difflib
import os
import re
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails, PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from runpoller.redis.url import RedisUrlError
from runpoller.redis.url import mask as mask_url
from runpoller.redis.url import parse as parse_redis_url

USER_PROVIDED = "user_provided"
ENV_PREFIX = "RUNPOLLER_"
LIBRECHAT_CONFIG_ENV = "RUNPOLLER_LIBRECHAT_CONFIG"
STRICT_ENV = "RUNPOLLER_STRICT_CONFIG"
LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")

# RUNPOLLER_* names read by the project's tooling (tests, chaos, images), not by Settings:
# not reported as unknown.
TOOLING_ENV = frozenset(
    {
        "RUNPOLLER_CHAOS_RUNS",
        "RUNPOLLER_SCALING_RUNS",
        "RUNPOLLER_INTAKE_RUNS",
        "RUNPOLLER_TEST_REDIS_DB",
        "RUNPOLLER_EMBEDDED_REDIS",
        "RUNPOLLER_EXTRAS",
        "RUNPOLLER_IMAGE",
        "RUNPOLLER_SCREENSHOTS",
        "RUNPOLLER_CHROMIUM",
        # Read by `runpoller dashboard` itself (dashboard/cli.py), never by a worker.
        "RUNPOLLER_DASHBOARD_TOKEN",
    }
)

# Every key LibreChat's schema accepts in endpoints.assistants (assistantEndpointSchema and
# the general endpoint fields it inherits); we use five, the others are LibreChat's own.
LIBRECHAT_ASSISTANTS_KEYS = frozenset(
    {
        "pollIntervalMs",
        "timeoutMs",
        "version",
        "supportedIds",
        "excludedIds",
        "privateAssistants",
        "retrievalModels",
        "capabilities",
        "disableBuilder",
        "apiKey",
        "baseURL",
        "models",
        "headers",
        "streamRate",
        "titleConvo",
        "titleModel",
        "titleMethod",
        "titlePrompt",
        "titlePromptTemplate",
        "titleEndpoint",
        "summarize",
        "summaryModel",
        "forcePrompt",
        "modelDisplayLabel",
        "userIdQuery",
    }
)

MIN_POLL_INTERVAL_MS = 100

SETTING_ERROR = "runpoller_setting"
"""The pydantic error type of every rule of :class:`Settings` (see :func:`_problem`)."""


class ConfigError(Exception):
    """A configuration problem, phrased for the person who has to fix it."""


class LibreChatAssistants(BaseModel):
    """The ``endpoints.assistants`` block of ``librechat.yaml`` (fields we use; others ignored)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    poll_interval_ms: int | None = Field(None, alias="pollIntervalMs")
    timeout_ms: int | None = Field(None, alias="timeoutMs")
    supported_ids: list[str] | None = Field(None, alias="supportedIds", min_length=1)
    excluded_ids: list[str] | None = Field(None, alias="excludedIds", min_length=1)
    private_assistants: bool | None = Field(None, alias="privateAssistants")


_YAML_FIELD_PATHS = {
    "poll_interval_ms": "pollIntervalMs",
    "timeout_ms": "timeoutMs",
    "supported_ids": "supportedIds",
    "excluded_ids": "excludedIds",
    "private_assistants": "privateAssistants",
}


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


CsvList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    """Every setting of a worker, the CLI and the demo."""

    # hide_input_in_errors: a rule's error has the whole input as its input (API key included);
    # str(ValidationError) must not print it. errors() still carries it.
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="ignore",
        populate_by_name=True,
        frozen=True,
        hide_input_in_errors=True,
    )

    # LibreChat-compatible names (no prefix, as LibreChat users know them).
    assistants_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("ASSISTANTS_API_KEY", "assistants_api_key")
    )
    assistants_base_url: str = Field(
        "https://api.openai.com/v1",
        validation_alias=AliasChoices("ASSISTANTS_BASE_URL", "assistants_base_url"),
    )
    assistants_models: CsvList = Field(
        default_factory=list,
        validation_alias=AliasChoices("ASSISTANTS_MODELS", "assistants_models"),
    )
    assistants_version: int = Field(2, description="Sent as OpenAI-Beta: assistants=v{version}")
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0", validation_alias=AliasChoices("REDIS_URL", "redis_url")
    )

    # endpoints.assistants (librechat.yaml) — env RUNPOLLER_* overrides the file.
    poll_interval_ms: int = 2000
    timeout_ms: int = 180_000
    supported_ids: CsvList | None = None
    excluded_ids: CsvList | None = None
    private_assistants: bool = False
    librechat_config: Path | None = None

    # Per-job overrides are accepted up to these bounds.
    max_poll_interval_ms: int = 60_000
    # Age-based polling: a run older than RUNPOLLER_ADAPTIVE_POLL_AFTER_MS is polled less
    # often, its interval growing with its age (twice the age, twice the interval) up to
    # RUNPOLLER_ADAPTIVE_POLL_MAX_MS. 0: off (every poll at the run's interval).
    adaptive_poll_after_ms: int = 0
    adaptive_poll_max_ms: int = 10_000
    max_timeout_ms: int = 24 * 3600 * 1000

    # Per-job API keys travel encrypted (secrets.py): "kid:base64key,..." (first = current).
    secret_keys: SecretStr | None = None
    allow_plaintext_keys: bool = False

    # Shared request budget per API key across all workers (0: no budget).
    rate_limit_requests: int = 0
    rate_limit_window_s: float = 60.0

    # Total size of one round of tool outputs an app may send; of one final event.
    max_reply_bytes: int = 1024 * 1024
    max_result_bytes: int = 1024 * 1024
    # Size of a job's metadata as JSON (echoed in its accepted and final events); larger:
    # the job is refused (invalid_job).
    max_metadata_bytes: int = 16 * 1024

    # After a cancel, how long to keep polling for a terminal status before giving up.
    cancel_grace_ms: int = 30_000

    # Redis layout.
    queue_name: str = "runpoller:queue"
    key_prefix: str = "runpoller"
    event_stream_maxlen: int = 1000
    record_ttl_s: int = 7 * 24 * 3600

    # Worker capacity and liveness.
    max_runs_per_worker: int = 10_000
    http_concurrency: int = 200
    heartbeat_interval_ms: int = 1000
    dead_worker_after_ms: int = 5000
    # The heartbeat is renewed from a thread, but only while the event loop has ticked within
    # this limit: a loop that is merely saturated keeps its runs, a stuck one loses them
    # (others take over after loop_stall_limit_ms + dead_worker_after_ms). See worker/liveness.py
    loop_stall_limit_ms: int = 10_000
    arq_poll_delay_s: float = 0.1

    # The worker's event loop: uvloop (libuv) where installed ("auto"), else asyncio's own.
    event_loop: Literal["auto", "uvloop", "asyncio"] = "auto"

    # HTTP.
    http_transport: Literal["aiohttp", "httpx"] = "aiohttp"
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 30.0
    max_retry_after_s: float = 120.0
    # Streams held open at once for jobs with stream: true (each holds one connection of its
    # own pool); a streamed job beyond them is polled until one is free.
    max_streams: int = 100

    # Prometheus /metrics and the /healthz, /readyz probes (-1: no HTTP server; 0: any port).
    metrics_host: str = "0.0.0.0"  # noqa: S104 - probes must be reachable in a container
    metrics_port: int = 9464

    # The webhook receiver (`runpoller webhooks`): OpenAI's signing secrets, "whsec_<base64>"
    # comma-separated (several while rotating: each is tried); where it listens (0: any
    # port); the largest body it reads.
    webhook_secrets: SecretStr | None = None
    webhook_host: str = "127.0.0.1"
    webhook_port: int = 8090
    webhook_max_body_bytes: int = 1024 * 1024
    # With the receiver deployed, a Responses run is still polled, at this longer interval
    # (ms), so a lost webhook costs latency, never a run (0: no webhooks, the job's interval).
    webhook_fallback_interval_ms: int = 0

    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"] = "INFO"

    # Unknown RUNPOLLER_* variables and unknown or duplicate librechat.yaml keys: warnings,
    # or (true) errors that stop the start.
    strict_config: bool = False

    _split = field_validator("assistants_models", "supported_ids", "excluded_ids", mode="before")(
        _split_csv
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check_rules(self) -> Self:
        # After every field has parsed (type errors come first), in a fixed order; the first
        # broken rule is the error, as load_settings has always reported one problem.
        for rule in _RULES:
            problem = rule(self)
            if problem is not None:
                raise problem
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # First wins: explicit arguments, then the environment, then librechat.yaml.
        return (init_settings, env_settings, _LibreChatSource(settings_cls))

    @property
    def key_ring(self) -> dict[str, bytes]:
        from runpoller.secrets import parse_key_ring

        return parse_key_ring(self.secret_keys.get_secret_value()) if self.secret_keys else {}

    @property
    def webhook_secret_list(self) -> list[str]:
        """The ``whsec_…`` secrets of :attr:`webhook_secrets`, in order (empty when unset)."""
        raw = self.webhook_secrets.get_secret_value() if self.webhook_secrets else ""
        secrets: list[str] = _split_csv(raw)
        return secrets

    @property
    def user_provided_key(self) -> bool:
        key = self.assistants_api_key
        return key is not None and key.get_secret_value() == USER_PROVIDED


def _env_name(field: str) -> str:
    alias = Settings.model_fields[field].validation_alias
    if isinstance(alias, AliasChoices):
        first = alias.choices[0]
        assert isinstance(first, str)
        return first
    return ENV_PREFIX + field.upper()


class _DuplicateKeysLoader(yaml.SafeLoader):
    """PyYAML's safe loader, noting each key a mapping repeats (LibreChat's parser refuses
    them; PyYAML would keep the last silently)."""

    duplicates: list[tuple[str, int, int]]

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, str | int | float | bool) and key in seen:
                self.duplicates.append((str(key), seen[key], line))
            else:
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _did_you_mean(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def _read_librechat(path: Path) -> tuple[dict[str, Any], list[str], list[str]]:
    """Values from ``endpoints.assistants`` of a librechat.yaml, warnings to log, and findings
    (unknown and duplicate keys: warnings, or errors with ``RUNPOLLER_STRICT_CONFIG``)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"{LIBRECHAT_CONFIG_ENV}={path}: cannot read file ({exc.strerror})"
        ) from None
    loader = _DuplicateKeysLoader(text)
    loader.duplicates = []
    try:
        doc = loader.get_single_data()
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        reason = getattr(exc, "problem", None) or ""
        context = getattr(exc, "context", None)
        if context:
            reason = f"{reason} ({context})" if reason else context
        raise ConfigError(f"{path}: not valid YAML{where}: {reason or exc}") from None
    finally:
        loader.dispose()
    findings = [
        f"{path}: line {line}: key {key!r} repeats line {first} (LibreChat refuses the file; "
        "runpoller would use the last)"
        for key, first, line in loader.duplicates
    ]
    block = (
        ((doc or {}).get("endpoints") or {}).get("assistants") if isinstance(doc, dict) else None
    )
    if block is None:
        return {}, [f"{path}: no endpoints.assistants block; using defaults"], findings
    if not isinstance(block, dict):
        raise ConfigError(f"{path}: endpoints.assistants must be a mapping")
    for key in block:
        if key not in LIBRECHAT_ASSISTANTS_KEYS:
            findings.append(
                f"{path}: endpoints.assistants.{key} is not a LibreChat assistants setting"
                + _did_you_mean(str(key), LIBRECHAT_ASSISTANTS_KEYS)
            )
    try:
        parsed = LibreChatAssistants.model_validate(block)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise ConfigError(
            f"{path}: endpoints.assistants.{loc}: {err['msg']} (got {err.get('input')!r})"
        ) from None
    values = parsed.model_dump(exclude_none=True)
    warnings: list[str] = []
    if parsed.private_assistants and (parsed.supported_ids or parsed.excluded_ids):
        warnings.append(
            f"{path}: privateAssistants is set together with supportedIds/excludedIds; "
            "both ID lists are ignored (LibreChat semantics)"
        )
        values.pop("supported_ids", None)
        values.pop("excluded_ids", None)
    elif parsed.supported_ids and parsed.excluded_ids:
        warnings.append(
            f"{path}: both supportedIds and excludedIds are set; excludedIds is ignored "
            "(LibreChat semantics)"
        )
        values.pop("excluded_ids")
    return values, warnings, findings


_FILE_VALUES: ContextVar[dict[str, Any] | None] = ContextVar("librechat_values", default=None)


class _LibreChatSource(PydanticBaseSettingsSource):
    """Values read from librechat.yaml by :func:`load_settings` (lowest priority but defaults)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return (_FILE_VALUES.get() or {}).get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_FILE_VALUES.get() or {})


def load_settings(**overrides: Any) -> tuple[Settings, list[str]]:
    """Build settings from the environment and, if named, a librechat.yaml.

    Returns the settings and warnings worth logging. Raises :class:`ConfigError` with one
    readable message for any invalid value, naming the setting and where it came from.
    """
    loaded = load(**overrides)
    return loaded.settings, loaded.warnings


@dataclasses.dataclass(frozen=True)
class Loaded:
    """Settings with where each value came from (field -> ``environment``, ``argument`` or
    ``<file>: endpoints.assistants.<key>``; absent: the default) and the warnings to show."""

    settings: Settings
    sources: dict[str, str]
    warnings: list[str]


def load(*, strict: bool | None = None, **overrides: Any) -> Loaded:
    """:func:`load_settings`, keeping the sources. ``strict`` (default: the environment's
    ``RUNPOLLER_STRICT_CONFIG``): unknown variables and unknown or duplicate file keys are
    errors instead of warnings."""
    env = os.environ
    if strict is None:
        strict = env.get(STRICT_ENV, "").strip().lower() in {"1", "true", "yes", "on"}
    sources: dict[str, str] = {}
    file_values: dict[str, Any] = {}
    warnings: list[str] = []
    config_path = overrides.pop("librechat_config", None) or env.get(LIBRECHAT_CONFIG_ENV)
    findings = unknown_variables(env)
    if config_path:
        file_values, warnings, file_findings = _read_librechat(Path(config_path))
        findings += file_findings
        for field in file_values:
            sources[field] = f"{config_path}: endpoints.assistants.{_YAML_FIELD_PATHS[field]}"
    if strict and findings:
        raise ConfigError(f"{findings[0]} ({STRICT_ENV} is on)")
    warnings = findings + warnings
    for field in Settings.model_fields:
        if _env_name(field) in env:
            sources[field] = "environment"
    for field in overrides:
        sources[field] = "argument"
    token = _FILE_VALUES.set(file_values)
    try:
        settings = Settings(**overrides)  # the one place the rules run
    except ValidationError as exc:
        raise ConfigError(_config_message(exc.errors()[0], sources)) from None
    finally:
        _FILE_VALUES.reset(token)
    # Not a rule of the model: nothing is wrong, a value is dropped (LibreChat semantics), and
    # the caller is told so. Settings(...) built in code keeps both lists, as it always has.
    # model_copy does not validate again.
    if settings.supported_ids and settings.excluded_ids:
        warnings.append("both supported_ids and excluded_ids are set; excluded_ids is ignored")
        settings = settings.model_copy(update={"excluded_ids": None})
    return Loaded(settings, sources, warnings)


def env_names() -> dict[str, str]:
    """Environment variable name -> setting, for every setting."""
    return {_env_name(field): field for field in Settings.model_fields}


def unknown_variables(env: Mapping[str, str]) -> list[str]:
    """A line for each ``RUNPOLLER_*`` variable no setting reads, and each variable whose name
    is one letter or so from a setting's (``RUNPOLER_TIMEOUT_MS``), with the likely one."""
    known = env_names()
    problems = []
    for name in sorted(env):
        if name in known or name in TOOLING_ENV:
            continue
        if name.startswith(ENV_PREFIX):
            # Compared without the shared prefix, which would make every name look alike.
            bare = {k.removeprefix(ENV_PREFIX): k for k in known}
            found = difflib.get_close_matches(name.removeprefix(ENV_PREFIX), bare, 1, 0.6)
            close = [bare[found[0]]] if found else []
        else:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.9)
            if not close:
                continue
        hint = f"; did you mean {close[0]}?" if close else ""
        problems.append(f"{name} is set but is not a runpoller setting{hint}")
    return problems


def startup_problems(settings: Settings) -> list[str]:
    """What will fail with these settings although each value is valid: one line each."""
    problems = []
    plaintext = settings.allow_plaintext_keys
    if settings.user_provided_key and settings.secret_keys is None and not plaintext:
        problems.append(
            "ASSISTANTS_API_KEY=user_provided but RUNPOLLER_SECRET_KEYS is not set: every "
            "job must carry its user's key encrypted with that ring, so every job will be "
            "refused (set RUNPOLLER_SECRET_KEYS on workers and clients)"
        )
    if settings.assistants_api_key is None:
        problems.append(
            "ASSISTANTS_API_KEY is not set: only jobs that carry their own api_key can run; "
            "every other job will be refused (missing_api_key)"
        )
    return problems


SHOWN_SECRET = "set (hidden)"  # noqa: S105 - what is shown instead of a secret


def shown_value(settings: Settings, field: str) -> str:
    """A setting's value fit for a screen: secrets hidden, URL passwords masked."""
    value = getattr(settings, field)
    if field == "assistants_api_key" and settings.user_provided_key:
        return USER_PROVIDED
    if isinstance(value, SecretStr):
        return SHOWN_SECRET
    if value is None:
        return "(unset)"
    if isinstance(value, list):
        return ",".join(value)
    if isinstance(value, bool):
        return str(value).lower()
    text = str(value)
    return mask_url(text) if "://" in text else text


def shown_default(field: str) -> str:
    info = Settings.model_fields[field]
    value = info.get_default(call_default_factory=True)
    if value is None:
        return "(unset)"
    if isinstance(value, list):
        return ",".join(value) or "(empty)"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _config_message(err: ErrorDetails, sources: Mapping[str, str]) -> str:
    """One line for the person who sets the variables: env name, source, problem."""
    if err["type"] == SETTING_ERROR:
        ctx = err.get("ctx") or {}
        template: str = ctx["template"]
        return template.format(w=_EnvNames(sources), v=ctx["values"])
    field = _field_for_alias(str(err["loc"][0])) if err["loc"] else "?"
    return (
        f"{_env_name(field)} ({sources.get(field, 'default')}): {err['msg']} "
        f"(got {err.get('input')!r})"
    )


def _field_for_alias(name: str) -> str:
    for field, info in Settings.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices) and name in alias.choices:
            return field
    return name


# The rules of Settings. Each message template names a setting as ``{w[field]}`` and a value as
# ``{v[name]}``: Settings(...) renders the names as field names, load_settings as
# "ENV_NAME (from <source>)". One template per rule, so both say the same thing.

_Rule = Callable[[Settings], PydanticCustomError | None]
_NAMED = re.compile(r"\{w\[(\w+)\]\}")


class _FieldNames:
    def __getitem__(self, field: str) -> str:
        return field


class _EnvNames:
    def __init__(self, sources: Mapping[str, str]) -> None:
        self._sources = sources

    def __getitem__(self, field: str) -> str:
        return f"{_env_name(field)} (from {self._sources.get(field, 'default')})"


def _problem(template: str, **values: Any) -> PydanticCustomError:
    """A broken rule, as a pydantic error of type :data:`SETTING_ERROR`.

    ``ctx`` carries ``field`` (the setting at fault, named first), ``fields`` (every setting
    the rule involves), ``values`` and the ``template``, so a caller can phrase it in its own
    names.
    """
    named = _NAMED.findall(template)
    fields = list(dict.fromkeys([*named, *(k for k in values if k in Settings.model_fields)]))
    return PydanticCustomError(
        SETTING_ERROR,
        "{message}",
        {
            "message": template.format(w=_FieldNames(), v=values),
            "field": named[0],
            "fields": fields,
            "template": template,
            "values": values,
        },
    )


def _poll_interval_minimum(s: Settings) -> PydanticCustomError | None:
    if s.poll_interval_ms >= MIN_POLL_INTERVAL_MS:
        return None
    return _problem(
        "{w[poll_interval_ms]} is {v[poll_interval_ms]} ms; it must be at least {v[minimum]} ms",
        poll_interval_ms=s.poll_interval_ms,
        minimum=MIN_POLL_INTERVAL_MS,
    )


def _timeout_above_interval(s: Settings) -> PydanticCustomError | None:
    if s.timeout_ms > s.poll_interval_ms:
        return None
    return _problem(
        "{w[timeout_ms]} is {v[timeout_ms]} ms; it must be larger than the poll interval "
        "{v[poll_interval_ms]} ms ({w[poll_interval_ms]})",
        timeout_ms=s.timeout_ms,
        poll_interval_ms=s.poll_interval_ms,
    )


def _max_poll_interval_bound(s: Settings) -> PydanticCustomError | None:
    if s.max_poll_interval_ms >= s.poll_interval_ms:
        return None
    # The poll interval is what a person usually raised (often in librechat.yaml): name it
    # first, with its own source, and the maximum beside it.
    return _problem(
        "{w[poll_interval_ms]} is {v[poll_interval_ms]} ms; above the maximum poll interval "
        "{v[max_poll_interval_ms]} ms ({w[max_poll_interval_ms]})",
        poll_interval_ms=s.poll_interval_ms,
        max_poll_interval_ms=s.max_poll_interval_ms,
    )


def _max_timeout_bound(s: Settings) -> PydanticCustomError | None:
    if s.max_timeout_ms >= s.timeout_ms:
        return None
    return _problem(
        "{w[timeout_ms]} is {v[timeout_ms]} ms; above the maximum timeout {v[max_timeout_ms]} ms "
        "({w[max_timeout_ms]})",
        timeout_ms=s.timeout_ms,
        max_timeout_ms=s.max_timeout_ms,
    )


def _dead_worker_after_heartbeats(s: Settings) -> PydanticCustomError | None:
    if s.dead_worker_after_ms > 2 * s.heartbeat_interval_ms:
        return None
    return _problem(
        "{w[dead_worker_after_ms]} ({v[dead_worker_after_ms]} ms) must exceed twice the "
        "heartbeat interval ({v[heartbeat_interval_ms]} ms)",
        dead_worker_after_ms=s.dead_worker_after_ms,
        heartbeat_interval_ms=s.heartbeat_interval_ms,
    )


def _loop_stall_above_heartbeat(s: Settings) -> PydanticCustomError | None:
    if s.loop_stall_limit_ms > s.heartbeat_interval_ms:
        return None
    return _problem(
        "{w[loop_stall_limit_ms]} ({v[loop_stall_limit_ms]} ms) must exceed the heartbeat "
        "interval ({v[heartbeat_interval_ms]} ms, {w[heartbeat_interval_ms]})",
        loop_stall_limit_ms=s.loop_stall_limit_ms,
        heartbeat_interval_ms=s.heartbeat_interval_ms,
    )


def _counts_at_least_one(s: Settings) -> PydanticCustomError | None:
    for field in (
        "max_runs_per_worker",
        "http_concurrency",
        "max_streams",
        "event_stream_maxlen",
        "max_metadata_bytes",
    ):
        value = getattr(s, field)
        if value < 1:
            return _problem(f"{{w[{field}]}} must be at least 1", **{field: value})
    return None


def _http_base_url(s: Settings) -> PydanticCustomError | None:
    shown = mask_url(s.assistants_base_url)
    try:
        parts = urlsplit(s.assistants_base_url)
        parts.port  # noqa: B018 - parse to validate
    except ValueError as exc:
        return _problem(
            "{w[assistants_base_url]}: {v[url]!r}: {v[problem]}", url=shown, problem=str(exc)
        )
    if parts.scheme not in {"http", "https"}:
        return _problem("{w[assistants_base_url]}: {v[url]!r} is not an http(s) URL", url=shown)
    if not parts.hostname:
        return _problem("{w[assistants_base_url]}: {v[url]!r} has no host", url=shown)
    return None


def _redis_url_valid(s: Settings) -> PydanticCustomError | None:
    try:
        parse_redis_url(s.redis_url)
    except RedisUrlError as exc:  # its message masks the password
        return _problem("{w[redis_url]}: {v[problem]}", problem=str(exc))
    return None


def _ports(s: Settings) -> PydanticCustomError | None:
    if not -1 <= s.metrics_port <= 65535:
        return _problem(
            "{w[metrics_port]} is {v[metrics_port]}; it must be -1 (no HTTP server), 0 (any "
            "port) or a port up to 65535",
            metrics_port=s.metrics_port,
        )
    return None


# Durations that must be above zero (a zero read timeout or window means nothing sensible).
_POSITIVE = (
    "heartbeat_interval_ms",
    "connect_timeout_s",
    "read_timeout_s",
    "arq_poll_delay_s",
    "rate_limit_window_s",
    "record_ttl_s",
    "max_reply_bytes",
    "max_result_bytes",
)
_NOT_NEGATIVE = ("cancel_grace_ms", "rate_limit_requests", "max_retry_after_s")


def _durations(s: Settings) -> PydanticCustomError | None:
    for field in _POSITIVE:
        value = getattr(s, field)
        if value <= 0:
            return _problem(
                f"{{w[{field}]}} is {{v[{field}]}}; it must be above 0", **{field: value}
            )
    for field in _NOT_NEGATIVE:
        value = getattr(s, field)
        if value < 0:
            return _problem(
                f"{{w[{field}]}} is {{v[{field}]}}; it must be 0 or more", **{field: value}
            )
    return None


def _key_ring_parses(s: Settings) -> PydanticCustomError | None:
    if s.secret_keys is None:
        return None
    from runpoller.secrets import SecretError

    try:
        s.key_ring  # noqa: B018 - parse to validate
    except SecretError as exc:  # its message never contains key material
        return _problem("{w[secret_keys]}: {v[problem]}", problem=str(exc))
    return None


def _id_lists_not_empty(s: Settings) -> PydanticCustomError | None:
    for field in ("supported_ids", "excluded_ids"):
        value = getattr(s, field)
        if value is not None and not value:
            return _problem(
                f"{{w[{field}]}}: an empty list is invalid; leave it unset instead",
                **{field: value},
            )
    return None


WEBHOOK_SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret


def _webhook_secret_problem(secret: str) -> str | None:
    """What is wrong with one webhook secret, in words that never quote it."""
    if not secret.startswith(WEBHOOK_SECRET_PREFIX):
        return f"does not start with {WEBHOOK_SECRET_PREFIX}"
    encoded = secret[len(WEBHOOK_SECRET_PREFIX) :]
    try:  # standard base64, padded or not (as the standardwebhooks library reads it)
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except ValueError:
        return f"is not {WEBHOOK_SECRET_PREFIX} followed by base64"
    return None if key else f"has nothing after {WEBHOOK_SECRET_PREFIX}"


def _webhook_secrets_valid(s: Settings) -> PydanticCustomError | None:
    for position, secret in enumerate(s.webhook_secret_list, 1):
        problem = _webhook_secret_problem(secret)
        if problem is not None:
            return _problem(
                "{w[webhook_secrets]}: secret #{v[position]} {v[problem]}",
                position=position,
                problem=problem,
            )
    return None


def _webhook_listener(s: Settings) -> PydanticCustomError | None:
    if not 0 <= s.webhook_port <= 65535:
        return _problem(
            "{w[webhook_port]} is {v[webhook_port]}; it must be 0 (any port) to 65535",
            webhook_port=s.webhook_port,
        )
    if s.webhook_max_body_bytes < 1:
        return _problem(
            "{w[webhook_max_body_bytes]} must be at least 1",
            webhook_max_body_bytes=s.webhook_max_body_bytes,
        )
    fallback = s.webhook_fallback_interval_ms
    if fallback and not s.poll_interval_ms <= fallback <= s.max_poll_interval_ms:
        return _problem(
            "{w[webhook_fallback_interval_ms]} is {v[webhook_fallback_interval_ms]} ms; it must "
            "be 0 (no webhooks) or from the poll interval ({v[poll_interval_ms]} ms) to the "
            "maximum poll interval ({v[max_poll_interval_ms]} ms)",
            webhook_fallback_interval_ms=fallback,
            poll_interval_ms=s.poll_interval_ms,
            max_poll_interval_ms=s.max_poll_interval_ms,
        )
    return None


def _adaptive_polling(s: Settings) -> PydanticCustomError | None:
    if s.adaptive_poll_after_ms < 0:
        return _problem(
            "{w[adaptive_poll_after_ms]} must be 0 (off) or more",
            adaptive_poll_after_ms=s.adaptive_poll_after_ms,
        )
    cap = s.adaptive_poll_max_ms
    if s.adaptive_poll_after_ms and not s.poll_interval_ms <= cap <= s.max_poll_interval_ms:
        return _problem(
            "{w[adaptive_poll_max_ms]} is {v[adaptive_poll_max_ms]} ms; it must be from the "
            "poll interval ({v[poll_interval_ms]} ms) to the maximum poll interval "
            "({v[max_poll_interval_ms]} ms)",
            adaptive_poll_max_ms=cap,
            poll_interval_ms=s.poll_interval_ms,
            max_poll_interval_ms=s.max_poll_interval_ms,
        )
    return None


_RULES: tuple[_Rule, ...] = (
    _poll_interval_minimum,
    _timeout_above_interval,
    _max_poll_interval_bound,
    _max_timeout_bound,
    _dead_worker_after_heartbeats,
    _loop_stall_above_heartbeat,
    _counts_at_least_one,
    _durations,
    _http_base_url,
    _redis_url_valid,
    _ports,
    _key_ring_parses,
    _id_lists_not_empty,
    _webhook_secrets_valid,
    _webhook_listener,
    _adaptive_polling,
)
