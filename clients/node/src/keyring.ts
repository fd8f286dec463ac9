// Per-job API keys encrypted the way the workers decrypt them (docs/protocol.md, "Per-job API
// keys"): AES-256-GCM, a fresh 12-byte nonce per value, the 16-byte tag appended, associated
// data "runpoller-api-key-v1", written as enc:v1:<key id>:<base64url, no padding>.
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";

export const PREFIX = "enc:v1:";
const AAD = Buffer.from("runpoller-api-key-v1", "ascii");
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const KEY_BYTES = 32;

/** A key ring or an encrypted value that cannot be used; the message never holds a secret. */
export class SecretError extends Error {
  override name = "SecretError";
}

/** Key id -> 32-byte key, in the order given: the first is the one values are encrypted with. */
export type KeyRing = ReadonlyMap<string, Buffer>;

// The key ring's keys: standard or URL-safe base64 (the two may mix), padding optional.
const KEY_TEXT = /^[A-Za-z0-9+/_-]+(={0,2})$/;
const BODY_TEXT = /^[A-Za-z0-9_-]+$/;

function decodeKey(kid: string, encoded: string): Buffer {
  const match = KEY_TEXT.exec(encoded);
  const unpadded = encoded.replace(/=+$/, "");
  const padded = match?.[1] ? encoded.length % 4 === 0 : true;
  if (!match || !padded || unpadded.length % 4 === 1) {
    throw new SecretError(`key ${JSON.stringify(kid)} is not valid base64`);
  }
  const key = Buffer.from(unpadded.replace(/-/g, "+").replace(/_/g, "/"), "base64");
  if (key.length !== KEY_BYTES) {
    throw new SecretError(
      `key ${JSON.stringify(kid)} must be ${KEY_BYTES} bytes (AES-256), got ${key.length}`,
    );
  }
  return key;
}

/**
 * Parse `RUNPOLLER_SECRET_KEYS` exactly as the workers do: `<key id>:<base64 key>` entries
 * separated by commas, each trimmed at both ends, empty entries ignored; a key id is any
 * non-empty text without `,` or `:`; a key decodes to 32 bytes; no key id twice.
 */
export function parseKeyRing(text: string): KeyRing {
  const ring = new Map<string, Buffer>();
  const entries = text
    .split(",")
    .map((part) => part.trim())
    .filter((part) => part.length > 0);
  entries.forEach((entry, index) => {
    const colon = entry.indexOf(":");
    const kid = colon < 0 ? "" : entry.slice(0, colon);
    const encoded = colon < 0 ? "" : entry.slice(colon + 1);
    if (!kid || encoded.includes(":")) {
      throw new SecretError(`entry ${index + 1} must look like <key id>:<base64 key>`);
    }
    const key = decodeKey(kid, encoded);
    if (ring.has(kid)) throw new SecretError(`key id ${JSON.stringify(kid)} appears twice`);
    ring.set(kid, key);
  });
  return ring;
}

/** A fresh random key as `RUNPOLLER_SECRET_KEYS` takes it (base64url, no padding). */
export function newKey(): string {
  return randomBytes(KEY_BYTES).toString("base64url");
}

export function isEncrypted(value: string): boolean {
  return value.startsWith(PREFIX);
}

/** Encrypt `plaintext` with the ring's first key (or the key id given). */
export function encryptApiKey(plaintext: string, ring: KeyRing, kid?: string): string {
  const id = kid ?? ring.keys().next().value;
  const key = id === undefined ? undefined : ring.get(id);
  if (id === undefined || key === undefined) {
    throw new SecretError(
      id === undefined ? "the key ring is empty" : `unknown key id ${JSON.stringify(id)}`,
    );
  }
  return sealWith(plaintext, id, key, randomBytes(NONCE_BYTES));
}

/** The sealing itself, with the nonce given: for test vectors only (a nonce is never reused). */
export function sealWith(plaintext: string, kid: string, key: Buffer, nonce: Buffer): string {
  const cipher = createCipheriv("aes-256-gcm", key, nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(AAD);
  const sealed = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final()]);
  const body = Buffer.concat([nonce, sealed, cipher.getAuthTag()]).toString("base64url");
  return `${PREFIX}${kid}:${body}`;
}

/** Decrypt a value the workers would accept (SecretError saying why when it is not one). */
export function decryptApiKey(value: string, ring: KeyRing): string {
  if (!isEncrypted(value)) {
    throw new SecretError("the value is not an encrypted key (expected enc:v1:<kid>:<data>)");
  }
  const rest = value.slice(PREFIX.length);
  const colon = rest.indexOf(":");
  if (colon < 0) throw new SecretError("the encrypted key has no key id");
  const kid = rest.slice(0, colon);
  const body = rest.slice(colon + 1).replace(/=+$/, "");
  const key = ring.get(kid);
  if (key === undefined) {
    throw new SecretError(`unknown key id ${JSON.stringify(kid)} (not in RUNPOLLER_SECRET_KEYS)`);
  }
  if (!BODY_TEXT.test(body)) throw new SecretError("the encrypted key is not valid base64url");
  const raw = Buffer.from(body, "base64url");
  if (raw.length <= NONCE_BYTES + TAG_BYTES) throw new SecretError("the encrypted key is too short");
  const decipher = createDecipheriv("aes-256-gcm", key, raw.subarray(0, NONCE_BYTES), {
    authTagLength: TAG_BYTES,
  });
  decipher.setAAD(AAD);
  decipher.setAuthTag(raw.subarray(raw.length - TAG_BYTES));
  try {
    const plain = Buffer.concat([
      decipher.update(raw.subarray(NONCE_BYTES, raw.length - TAG_BYTES)),
      decipher.final(),
    ]);
    return new TextDecoder("utf-8", { fatal: true }).decode(plain);
  } catch {
    throw new SecretError(
      `the encrypted key does not decrypt with key id ${JSON.stringify(kid)} (tampered or wrong key)`,
    );
  }
}
