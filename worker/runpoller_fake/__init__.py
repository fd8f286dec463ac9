"""A fake OpenAI server that plays scripted run and response lifecycles, checked against the spec.

The real API cannot be reached from tests, demos or benchmarks, and is no help for the cases
that matter (a run that never ends, a 429 storm, a dropped connection, an expired tool call).
This is a real HTTP server (aiohttp) speaking the Assistants runs and Responses background
endpoints under ``/v1``, whose objects are validated against OpenAI's OpenAPI spec in tests.
Statuses are computed from elapsed time on each request, so thousands of runs cost nothing
between polls. See ``script.py`` for scripting and ``control.py`` for the ``/_fake`` endpoints.
Like OpenAI, it can send signed webhooks when a response ends, polled or not (``webhooks.py``).
"""

from runpoller_fake.app import make_app
from runpoller_fake.script import BUILTIN_SCENARIOS, Script, ScriptError, parse_script
from runpoller_fake.server import FakeServer, running_fake_server, serve, start_fake_server
from runpoller_fake.state import FakeState, Stats

__all__ = [
    "BUILTIN_SCENARIOS",
    "FakeServer",
    "FakeState",
    "Script",
    "ScriptError",
    "Stats",
    "make_app",
    "parse_script",
    "running_fake_server",
    "serve",
    "start_fake_server",
]
