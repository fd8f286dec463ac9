from __future__ import annotations

import base64

import pytest

from runpoller.secrets import SecretError, decrypt, encrypt, new_key, parse_key_ring

K1, K2 = new_key(), new_key()


def test_round_trip_and_random_nonce() -> None:
    ring = parse_key_ring(f"k1:{K1}")
    a = encrypt("sk-secret-value", "k1", ring["k1"])
    b = encrypt("sk-secret-value", "k1", ring["k1"])
    assert a != b, "a random nonce per value: equal plaintexts give different ciphertexts"
    assert "sk-secret" not in a and a.startswith("enc:v1:k1:")
    assert decrypt(a, ring) == decrypt(b, ring) == "sk-secret-value"


def test_rotation_old_key_still_decrypts() -> None:
    old = parse_key_ring(f"k1:{K1}")
    value = encrypt("sk-x", "k1", old["k1"])
    rotated = parse_key_ring(f"k2:{K2},k1:{K1}")
    assert next(iter(rotated)) == "k2"
    assert decrypt(value, rotated) == "sk-x"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda v: v.replace("enc:v1:k1:", "enc:v1:k9:"), "unknown key id 'k9'"),
        (lambda v: v[:-3] + ("A" if v[-3] != "A" else "B") + v[-2:], "tampered or wrong key"),
        (lambda v: "enc:v1:k1:abc", "too short"),
        (lambda v: "sk-plain", "not an encrypted key"),
        (lambda v: "enc:v1:nokid", "no key id"),
    ],
)
def test_bad_ciphertexts_fail_clearly(mutate: object, message: str) -> None:
    ring = parse_key_ring(f"k1:{K1}")
    value = encrypt("sk-secret-value", "k1", ring["k1"])
    with pytest.raises(SecretError, match=message) as info:
        decrypt(mutate(value), ring)  # type: ignore[operator]
    assert "sk-secret-value" not in str(info.value)


@pytest.mark.parametrize(
    ("ring", "message"),
    [
        ("k1", "must look like"),
        ("k1:" + base64.b64encode(b"short").decode(), "must be 32 bytes"),
        (f"k1:{K1},k1:{K2}", "appears twice"),
        ("k1:***", "not valid base64"),
    ],
)
def test_bad_key_rings(ring: str, message: str) -> None:
    with pytest.raises(SecretError, match=message):
        parse_key_ring(ring)


def test_config_rejects_a_bad_ring(monkeypatch: pytest.MonkeyPatch) -> None:
    from runpoller.config import ConfigError, load_settings

    monkeypatch.setenv("RUNPOLLER_SECRET_KEYS", "k1:tooshort")
    with pytest.raises(ConfigError, match=r"RUNPOLLER_SECRET_KEYS.*32 bytes"):
        load_settings()


@pytest.mark.parametrize(
    "text",
    [
        '{"f":"runpoller.run","a":[{"api_key":"sk-abcdef123456","kind":"x"}]}',
        '{"api_key": "anything \\" quoted"}',
        "Authorization: Bearer sk-proj-abcdefgh",
        "broken json {'api_key': sk-live-0123456789",
    ],
)
def test_scrub_blanks_keys_in_free_text(text: str) -> None:
    from runpoller.secrets import scrub

    out = scrub(text)
    assert "sk-abcdef" not in out and "sk-proj" not in out and "sk-live" not in out
    assert "anything" not in out
    assert "**********" in out
