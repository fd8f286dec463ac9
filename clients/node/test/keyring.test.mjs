// The key ring as the workers read it: the documented test vector, the grammar, and keys
// crossing languages (encrypted by the Python client, decrypted here; and the reverse).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";

import {
  decryptApiKey,
  encryptApiKey,
  newKey,
  parseKeyRing,
  SecretError,
  sealWith,
} from "../dist/index.js";
import { BIN, REPO } from "./harness.mjs";

const PYTHON = join(BIN, "python");

function documentedVector() {
  const doc = readFileSync(join(REPO, "docs", "protocol.md"), "utf8");
  const block = doc.split("Test vector (")[1].split("```")[1];
  const value = (name) => new RegExp(`^\\s*${name.replace(/[()]/g, "\\$&")}\\s*= (.*)$`, "m").exec(block)[1];
  return {
    ring: value("RUNPOLLER_SECRET_KEYS"),
    same: value("(same)"),
    keyHex: value("key (hex)"),
    nonceHex: value("nonce (hex)"),
    plaintext: value("plaintext"),
    apiKey: value("api_key"),
  };
}

describe("the documented test vector", () => {
  const v = documentedVector();
  it("encrypts to the documented value and decrypts back", () => {
    const ring = parseKeyRing(v.ring);
    assert.deepEqual([...ring.keys()], ["k2026"]);
    assert.equal(ring.get("k2026").toString("hex"), v.keyHex);
    assert.deepEqual(parseKeyRing(v.same).get("k2026"), ring.get("k2026"));
    const sealed = sealWith(v.plaintext, "k2026", ring.get("k2026"), Buffer.from(v.nonceHex, "hex"));
    assert.equal(sealed, v.apiKey);
    assert.equal(decryptApiKey(v.apiKey, ring), v.plaintext);
  });

  it("refuses a tampered value, an unknown key id and a value that is not encrypted", () => {
    const ring = parseKeyRing(v.ring);
    const at = v.apiKey.length - 10; // a ciphertext byte (the last character holds padding bits)
    const tampered = v.apiKey.slice(0, at) + (v.apiKey[at] === "A" ? "B" : "A") + v.apiKey.slice(at + 1);
    assert.throws(() => decryptApiKey(tampered, ring), /does not decrypt with key id "k2026"/);
    assert.throws(() => decryptApiKey(v.apiKey.replace("k2026", "k1"), ring), /unknown key id "k1"/);
    assert.throws(() => decryptApiKey(v.plaintext, ring), /not an encrypted key/);
  });
});

describe("the key ring grammar", () => {
  it("reads entries in order, trimmed, empty ones skipped, either base64 alphabet", () => {
    const ring = parseKeyRing(` new:${newKey()} ,, old:${Buffer.alloc(32, 0xfb).toString("base64")}`);
    assert.deepEqual([...ring.keys()], ["new", "old"]);
    assert.equal(encryptApiKey("sk-x", ring).split(":")[2], "new");
  });

  it("refuses what the workers refuse, naming the entry or key id and never the key", () => {
    const key = newKey();
    const cases = [
      [`${key}`, /entry 1 must look like <key id>:<base64 key>/],
      [`:${key}`, /entry 1 must look like/],
      [`a:${key},b:x:${key}`, /entry 2 must look like/],
      [`a:${key}!`, /key "a" is not valid base64/],
      [`a:${key.slice(0, 40)}`, /key "a" must be 32 bytes \(AES-256\), got 30/],
      [`a:${key},a:${newKey()}`, /key id "a" appears twice/],
    ];
    for (const [text, message] of cases) {
      assert.throws(() => parseKeyRing(text), (error) => {
        assert.ok(error instanceof SecretError);
        assert.match(error.message, message);
        assert.ok(!error.message.includes(key));
        return true;
      });
    }
  });

  it("parses every ring the same way as the workers' parser", () => {
    const key = newKey();
    const std = Buffer.from(key, "base64url").toString("base64");
    const rings = [`a:${key}`, `a:${std}`, `a:${std.slice(0, -1)}`, ` a b :${key}`, `a:${key}=`, `a:${std}=`, `a:${key.slice(1)}`];
    const script = `import json,sys
from runpoller.secrets import SecretError, parse_key_ring
out = []
for text in json.loads(sys.argv[1]):
    try:
        out.append({kid: key.hex() for kid, key in parse_key_ring(text).items()})
    except SecretError as exc:
        out.append(str(exc))
print(json.dumps(out))`;
    const python = JSON.parse(execFileSync(PYTHON, ["-c", script, JSON.stringify(rings)], { encoding: "utf8" }));
    const node = rings.map((text) => {
      try {
        return Object.fromEntries([...parseKeyRing(text)].map(([kid, k]) => [kid, k.toString("hex")]));
      } catch (error) {
        return error.message.replace(/"([^"]*)"/g, "'$1'");
      }
    });
    assert.deepEqual(node, python);
  });
});

describe("keys across languages", () => {
  const ringText = `py:${newKey()},node:${newKey()}`;
  const run = (code, ...args) =>
    execFileSync(PYTHON, ["-c", code, ...args], { encoding: "utf8" }).trim();

  it("decrypts a key the Python client encrypted", () => {
    const value = run(
      "import sys; from runpoller.secrets import encrypt, parse_key_ring; kid, key = next(iter(parse_key_ring(sys.argv[1]).items())); print(encrypt('sk-from-python-1', kid, key))",
      ringText,
    );
    assert.match(value, /^enc:v1:py:/);
    assert.equal(decryptApiKey(value, parseKeyRing(ringText)), "sk-from-python-1");
  });

  it("encrypts a key the workers' code decrypts, under each key id of the ring", () => {
    const ring = parseKeyRing(ringText);
    for (const kid of ["py", "node"]) {
      const value = encryptApiKey("sk-from-node-ü", ring, kid);
      const plain = run(
        "import sys; from runpoller.secrets import decrypt, parse_key_ring; print(decrypt(sys.argv[2], parse_key_ring(sys.argv[1])))",
        ringText,
        value,
      );
      assert.equal(plain, "sk-from-node-ü");
    }
  });
});
