/**
 * The encryption context as Vault's `context` parameter. Vault derives the per-request key of a
 * derived transit key from the context bytes (HKDF), so those bytes must be one canonical encoding:
 * the same pairs in any order give the same bytes, and different pairs never do.
 *
 * Encoding: a domain label, the pair count, then each pair sorted by the UTF-8 bytes of its key;
 * every field (label, key, value) prefixed with its 4-byte big-endian length, the count a 4-byte
 * big-endian integer. Never empty, so Vault never sees a missing context.
 */
import { type EncryptionContext, KmsError } from "@kms/core";

const LABEL = Buffer.from("kms-vault-context-v1", "utf8");

/** The base64 `context` Vault expects for this encryption context. Throws INPUT_INVALID for a context that is not an object of strings. */
export function encodeVaultContext(context: EncryptionContext): string {
  if (typeof context !== "object" || context === null || Array.isArray(context)) {
    throw new KmsError("INPUT_INVALID", "vault: the encryption context must be an object of strings", { provider: "vault" });
  }
  const pairs: [Buffer, Buffer][] = [];
  for (const key of Object.keys(context)) {
    const value: unknown = context[key];
    if (typeof value !== "string") throw new KmsError("INPUT_INVALID", "vault: encryption context values must be strings", { provider: "vault" });
    pairs.push([Buffer.from(key, "utf8"), Buffer.from(value, "utf8")]);
  }
  pairs.sort((a, b) => Buffer.compare(a[0], b[0]));
  const parts: Buffer[] = [];
  const field = (bytes: Buffer) => parts.push(u32(bytes.length), bytes);
  field(LABEL);
  parts.push(u32(pairs.length));
  for (const [k, v] of pairs) {
    field(k);
    field(v);
  }
  return Buffer.concat(parts).toString("base64");
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}
