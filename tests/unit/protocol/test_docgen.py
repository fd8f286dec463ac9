"""docs/protocol.md is generated from the protocol models and must match them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from runpoller.protocol import FinalEvent, JobEnvelope, docgen


def test_protocol_doc_matches_the_code() -> None:
    committed = docgen.DOC_PATH.read_text(encoding="utf-8")
    assert committed == docgen.render(), "run: python -m runpoller.protocol.docgen"


def test_example_job_in_the_doc_is_valid() -> None:
    text = docgen.render()
    match = re.search(r"SET arq:job:run:run_abc '(.*?)' PX", text)
    assert match is not None
    body = json.loads(match.group(1))
    assert set(body) == {"f", "a", "k", "t", "et"}
    JobEnvelope.model_validate({"job": body["a"][0]})


def test_doc_lists_every_final_status() -> None:
    text = docgen.render()
    statuses = FinalEvent.model_json_schema()["properties"]["status"]["enum"]
    for status in statuses:
        assert f"`{status}`" in text


def test_the_key_ring_test_vector_is_what_the_workers_decrypt() -> None:
    import base64

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from runpoller.secrets import AAD, decrypt, parse_key_ring

    vector = docgen.KEY_RING_VECTOR
    ring = parse_key_ring(vector["ring"])
    assert ring == parse_key_ring(vector["ring_padded_standard"]) == {"k2026": bytes(range(32))}
    assert decrypt(vector["api_key"], ring) == vector["plaintext"]
    nonce = bytes.fromhex(vector["nonce_hex"])
    sealed = AESGCM(ring["k2026"]).encrypt(nonce, vector["plaintext"].encode(), AAD)
    body = base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")
    assert vector["api_key"] == f"enc:v1:k2026:{body}"
    assert vector["api_key"] in docgen.render()


def test_help_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`python -m runpoller.protocol.docgen --help` used to rewrite docs/protocol.md."""
    target = tmp_path / "protocol.md"
    monkeypatch.setattr(docgen, "DOC_PATH", target)
    with pytest.raises(SystemExit) as info:
        docgen.main(["--help"])
    assert info.value.code == 0 and not target.exists()
    with pytest.raises(SystemExit) as info:
        docgen.main(["--chek"])
    assert info.value.code == 2 and not target.exists()
