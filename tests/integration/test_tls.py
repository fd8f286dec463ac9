"""``rediss://`` keeps working (issue 17): a real redis-server speaking only TLS, with a
certificate made here; a worker, the client and the CLI reach it through the one factory."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from runpoller.client import RunpollerClient
from runpoller.protocol import FinalEvent
from runpoller.redis.url import connect_sync
from runpoller_dev.devredis import free_port
from tests.integration.conftest import SECRET_KEYS, WorkerHandle
from tests.integration.test_end_to_end import COMPLETE, fake_run, job

pytestmark = pytest.mark.integration


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
async def tls_url() -> AsyncIterator[str]:
    binary = shutil.which("redis-server")
    assert binary is not None, "redis-server is not installed (make test installs it)"
    directory = Path(tempfile.mkdtemp(prefix="runpoller-tls-"))
    cert, key = self_signed(directory)
    port = free_port()
    proc = subprocess.Popen(
        [
            binary, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
            "--tls-cert-file", str(cert), "--tls-key-file", str(key),
            "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no",
            "--save", "", "--appendonly", "no", "--dir", str(directory),
        ],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={cert}"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                if connect_sync(url, socket_timeout=1).ping():
                    break
            except (OSError, redis.RedisError):  # not up yet
                pass
            assert time.monotonic() < deadline, "the TLS redis-server did not start"
            await asyncio.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(directory, ignore_errors=True)


async def test_a_run_over_tls(
    tls_url: str,
    start_worker: Callable[..., Awaitable[WorkerHandle]],
    fake_http: httpx.AsyncClient,
    namespace: str,
) -> None:
    await start_worker(redis_url=tls_url)
    client = RunpollerClient.from_url(
        tls_url, queue_name=f"{namespace}:queue", key_prefix=namespace, secret_keys=SECRET_KEYS
    )
    try:
        thread_id, run_id = await fake_run(fake_http, COMPLETE)
        rid = await client.enqueue(job(thread_id, run_id, namespace))

        async def final() -> FinalEvent:
            async for item in client.events(rid):
                if isinstance(item.event, FinalEvent):
                    return item.event
            raise AssertionError("no final event")

        assert (await asyncio.wait_for(final(), 30)).status == "completed"
    finally:
        await client.redis.aclose()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNPOLLER_")}
    env.update(REDIS_URL=tls_url, RUNPOLLER_KEY_PREFIX=namespace)
    shown = subprocess.run(
        [sys.executable, "-m", "runpoller", "runs", "show", rid],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "COMPLETED" in shown.stdout
