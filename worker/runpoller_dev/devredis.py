"""Find or start a Redis for development commands (``make test``, ``make demo``).

Order: ``REDIS_URL`` if set (it must answer), else a server on 127.0.0.1:6379, else a
``redis-server`` started on a free port for the lifetime of the wrapped command (installed
with apt-get first when missing and we are root). ``--allow-embedded`` lets the caller fall
back to fakeredis' embedded server (announced as a stand-in) when none of that works.

Usage: ``python -m runpoller_dev.devredis [--allow-embedded] -- CMD ARGS...``
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from urllib.parse import urlparse


def _ping(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            reply = sock.recv(64)
    except OSError:
        return False
    # A password-protected server answers -NOAUTH: it is there, the URL must carry the password.
    return reply.startswith((b"+PONG", b"-NOAUTH"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _install_redis_server() -> str | None:
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None
    print("devredis: redis-server not found; installing it with apt-get", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "redis-server"]):
        result = subprocess.run(cmd, env=env, check=False, stdout=subprocess.DEVNULL)  # noqa: S603
        if result.returncode != 0:
            return None
    return shutil.which("redis-server")


def start_redis_server(binary: str) -> tuple[subprocess.Popen[bytes], str]:
    """Start a throw-away redis-server on a free port; return the process and its URL."""
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="runpoller-redis-")
    proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        # Its own session (and so its own scheduling group, see worker/runpoller_bench/procs.py).
        start_new_session=True,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if _ping("127.0.0.1", port):
            return proc, f"redis://127.0.0.1:{port}/0"
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"redis-server on port {port} did not answer within 10 s")


def main(argv: list[str]) -> int:
    allow_embedded = "--allow-embedded" in argv
    if "--" not in argv:
        print(
            "usage: python -m runpoller_dev.devredis [--allow-embedded] -- CMD ARGS...",
            file=sys.stderr,
        )
        return 2
    cmd = argv[argv.index("--") + 1 :]
    env = dict(os.environ)
    proc: subprocess.Popen[bytes] | None = None
    url = env.get("REDIS_URL")
    if url:
        parsed = urlparse(url)
        if parsed.scheme == "redis" and not _ping(
            parsed.hostname or "127.0.0.1", parsed.port or 6379
        ):
            print(
                f"devredis: REDIS_URL is set but nothing answers at {parsed.hostname}:"
                f"{parsed.port or 6379}",
                file=sys.stderr,
            )
            return 1
    elif _ping("127.0.0.1", 6379):
        env["REDIS_URL"] = "redis://127.0.0.1:6379/0"
    else:
        binary = shutil.which("redis-server") or _install_redis_server()
        if binary:
            proc, env["REDIS_URL"] = start_redis_server(binary)
            print(f"devredis: started redis-server at {env['REDIS_URL']}", file=sys.stderr)
        elif allow_embedded:
            env["RUNPOLLER_EMBEDDED_REDIS"] = "1"
            print(
                "devredis: no Redis available; using fakeredis' embedded server as a stand-in",
                file=sys.stderr,
            )
        else:
            print(
                "devredis: no Redis server answers and redis-server could not be installed; "
                "set REDIS_URL",
                file=sys.stderr,
            )
            return 1
    try:
        return subprocess.call(cmd, env=env)  # noqa: S603 - the caller's own command
    except KeyboardInterrupt:
        return 130
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
