/**
 * The encryption context as bytes, for a KMS that takes it as opaque bytes: Vault's `context` (a
 * derived transit key's per-request key comes from it, by HKDF) and Cloud KMS's additional
 * authenticated data. One canonical encoding: the same pairs in any order give the same bytes, and
 * different pairs never do.
 *
 * Encoding: a domain label (one per provider and version, so bytes made for one never mean anything
 * to another), the pair count, then each pair sorted by the UTF-8 bytes of its key; every field
 * (label, key, value) prefixed with its 4-byte big-endian length, the count a 4-byte big-endian
 * integer. Never empty.
 */
import { KmsError } from "./errors";
import type { EncryptionContext } from "./provider";

/** Throws INPUT_INVALID (for `provider`) when `context` is not an object of strings. */
export function contextBytes(label: string, context: EncryptionContext, provider: string): Buffer {
  if (typeof context !== "object" || context === null || Array.isArray(context)) {
    throw new KmsError("INPUT_INVALID", `${provider}: the encryption context must be an object of strings`, { provider });
  }
  const pairs: [Buffer, Buffer][] = [];
  for (const key of Object.keys(context)) {
    const value: unknown = context[key];
    if (typeof value !== "string") throw new KmsError("INPUT_INVALID", `${provider}: encryption context values must be strings`, { provider });
    pairs.push([Buffer.from(key, "utf8"), Buffer.from(value, "utf8")]);
  }
  pairs.sort((a, b) => Buffer.compare(a[0], b[0]));
  const parts: Buffer[] = [];
  const field = (bytes: Buffer) => parts.push(u32(bytes.length), bytes);
  field(Buffer.from(label, "utf8"));
  parts.push(u32(pairs.length));
  for (const [k, v] of pairs) {
    field(k);
    field(v);
  }
  return Buffer.concat(parts);
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}
