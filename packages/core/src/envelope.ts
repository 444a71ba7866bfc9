/**
 * Envelope format v1 (byte-by-byte spec and worked example: docs/ENVELOPE.md).
 *
 * ```
 * "KMSE" | version 0x01 | suite 0x01 | commitment C (32)          <- fixed header, 38 bytes
 * key section: u8 P, provider id | u16 K, key id | u8 V, key version | u16 W, wrapped DEK
 * key-section tag T (32) | IV (12) | ciphertext (n) | GCM tag (16)
 * ```
 *
 * From one 32-byte data key (DEK), HKDF-SHA256 derives three independent 32-byte values, once per
 * DEK (the cache keeps them): the payload key Ke, the key-section MAC key Kt and the key commitment
 * C. Per message only the IV and AES-256-GCM remain. The payload AAD is the fixed header plus the
 * canonical tenant/context bytes; the key section stays outside it so that a re-wrap can replace it
 * without touching the ciphertext, and is authenticated by T = HMAC-SHA256(Kt, key section) instead.
 *
 * Security rules kept here: errors never carry key material, plaintext, tenant ids or context values;
 * secrets are compared with `timingSafeEqual`; `parseEnvelope` treats its input as hostile (bounds
 * checked before every read, views instead of copies, only `ENVELOPE_MALFORMED` ever escapes).
 */
import { createCipheriv, createDecipheriv, createHmac, hkdfSync, timingSafeEqual } from "node:crypto";
import { crc32 } from "node:zlib";
import { KmsError } from "./errors";
import { IV_BYTES, writeIv } from "./iv";
import { DATA_KEY_BYTES, type EncryptionContext, PROVIDER_ID_PATTERN } from "./provider";

// ---------------------------------------------------------------------------------------------
// Constants
// ---------------------------------------------------------------------------------------------

/** The four magic bytes "KMSE" (0x4B 0x4D 0x53 0x45), as a big-endian u32 (immutable). */
export const ENVELOPE_MAGIC = 0x4b4d5345;
/** Format version byte. */
export const ENVELOPE_VERSION = 1;
/** Suite 1: AES-256-GCM, HKDF-SHA256-derived keys, key commitment. */
export const SUITE_AES256GCM_HKDF_COMMIT = 1;

export const MAGIC_BYTES = 4;
export const COMMITMENT_BYTES = 32;
/** magic (4) + version (1) + suite (1) + commitment (32). */
export const FIXED_HEADER_BYTES = MAGIC_BYTES + 1 + 1 + COMMITMENT_BYTES;
export const KEY_SECTION_TAG_BYTES = 32;
export { IV_BYTES };
export const GCM_TAG_BYTES = 16;

export const MAX_PROVIDER_ID_BYTES = 64;
export const MAX_KEY_ID_BYTES = 2048;
export const MAX_KEY_VERSION_BYTES = 255;
export const MAX_WRAPPED_KEY_BYTES = 8192;
/** CRC-32 at the end of the key section: catches corruption before any KMS call is spent on it. */
export const KEY_SECTION_CHECKSUM_BYTES = 4;
/** Smallest key section: 1-byte provider id, 1-byte key id, empty version, 1-byte wrapped key. */
export const MIN_KEY_SECTION_BYTES = 1 + 1 + 2 + 1 + 1 + 0 + 2 + 1 + KEY_SECTION_CHECKSUM_BYTES;
export const MAX_KEY_SECTION_BYTES =
  1 + MAX_PROVIDER_ID_BYTES + 2 + MAX_KEY_ID_BYTES + 1 + MAX_KEY_VERSION_BYTES + 2 + MAX_WRAPPED_KEY_BYTES + KEY_SECTION_CHECKSUM_BYTES;
/** Smallest well-formed envelope (empty plaintext, smallest key section): 111 bytes. */
export const MIN_ENVELOPE_BYTES = FIXED_HEADER_BYTES + MIN_KEY_SECTION_BYTES + KEY_SECTION_TAG_BYTES + IV_BYTES + GCM_TAG_BYTES;

export const MAX_TENANT_ID_BYTES = 256;
export const MAX_CONTEXT_PAIRS = 64;
export const MAX_CONTEXT_KEY_BYTES = 1024;
export const MAX_CONTEXT_VALUE_BYTES = 4096;
/**
 * Limit on the whole canonical (tenant id, context) encoding. AWS KMS caps a whole encryption context
 * at 8192 bytes, and the encoding is held in caches: without a total, 64 pairs of the per-pair maxima
 * would let one caller pin ~320 KiB per cache entry.
 */
export const MAX_TENANT_CONTEXT_BYTES = 8192;

const INFO_COMMITMENT = Buffer.from("@kms/envelope v1 commitment", "ascii");
const INFO_KEY_SECTION = Buffer.from("@kms/envelope v1 key section", "ascii");
const INFO_ENCRYPTION = Buffer.from("@kms/envelope v1 encryption", "ascii");
const EMPTY_SALT = Buffer.alloc(0);
/** Encryption keys that `zeroMaterial` wiped: `seal` refuses them without comparing key bytes. */
const zeroedKeys = new WeakSet<Buffer>();

const AUTH_FAILED_MESSAGE = "envelope could not be authenticated for this tenant and context";

/** Strict UTF-8: rejects invalid sequences, overlongs and encoded surrogates; keeps a leading BOM. */
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

// eslint-disable-next-line no-control-regex -- matching control characters is the point
const CONTROL_OR_LONE_SURROGATE = /[\u0000-\u001f\u007f]|[\uD800-\uDFFF]/u;
/** With the `u` flag a paired surrogate is one astral code point, so this matches lone ones only. */
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;
const BASE64URL = /^[A-Za-z0-9_-]*$/;

// ---------------------------------------------------------------------------------------------
// Key material
// ---------------------------------------------------------------------------------------------

/** What one DEK yields; derived once per DEK and cached. Each field is 32 bytes. */
export interface DataKeyMaterial {
  /** Ke: the AES-256-GCM payload key. */
  readonly encryptionKey: Buffer;
  /** Kt: the HMAC-SHA256 key for the key-section tag. */
  readonly keySectionKey: Buffer;
  /** C: the key commitment written into the fixed header. */
  readonly commitment: Buffer;
}


function hkdf32(dek: Uint8Array, info: Buffer): Buffer {
  // hkdfSync returns a fresh ArrayBuffer: the Buffer owns its memory (not the shared pool), so it can be zeroed.
  return Buffer.from(hkdfSync("sha256", dek, EMPTY_SALT, info, 32));
}

/** Derives Ke, Kt and C from a 32-byte DEK. The caller zeroes the DEK; use `zeroMaterial` when done. */
export function deriveMaterial(dek: Uint8Array): DataKeyMaterial {
  if (!(dek instanceof Uint8Array) || dek.byteLength !== DATA_KEY_BYTES) {
    throw new KmsError("KMS_PROVIDER_ERROR", `a data key must be exactly ${DATA_KEY_BYTES} bytes`);
  }
  return {
    encryptionKey: hkdf32(dek, INFO_ENCRYPTION),
    keySectionKey: hkdf32(dek, INFO_KEY_SECTION),
    commitment: hkdf32(dek, INFO_COMMITMENT),
  };
}

/** Overwrites every derived key with zeros. Templates built on it then refuse to seal. */
export function zeroMaterial(m: DataKeyMaterial): void {
  zeroedKeys.add(m.encryptionKey);
  m.encryptionKey.fill(0);
  m.keySectionKey.fill(0);
  m.commitment.fill(0);
}

// ---------------------------------------------------------------------------------------------
// Key section
// ---------------------------------------------------------------------------------------------

export interface KeySection {
  /** `[a-z0-9-]{1,64}`. */
  providerId: string;
  /** 1..2048 UTF-8 bytes. */
  keyId: string;
  /** 0..255 UTF-8 bytes ("" when the service has no versions). */
  keyVersion: string;
  /** 1..8192 bytes. */
  wrappedKey: Uint8Array;
}

/**
 * Why `keyId` cannot name a key, or undefined when it can: 1..2048 UTF-8 bytes, no control
 * characters (they would make logs and cache keys ambiguous), no unpaired surrogates.
 */
export function keyIdProblem(keyId: unknown): string | undefined {
  if (typeof keyId !== "string" || keyId.length === 0) return "key ids must be non-empty strings";
  if (CONTROL_OR_LONE_SURROGATE.test(keyId)) return "key ids must not contain control characters or unpaired surrogates";
  const bytes = Buffer.byteLength(keyId, "utf8");
  if (bytes > MAX_KEY_ID_BYTES) return `key ids are at most ${MAX_KEY_ID_BYTES} UTF-8 bytes (got ${bytes})`;
  return undefined;
}

function providerError(message: string, provider?: string): KmsError {
  return new KmsError("KMS_PROVIDER_ERROR", message, provider === undefined ? {} : { provider });
}

/**
 * Encodes the key section. Its fields come from a provider (or the tenant key configuration), so a
 * value outside the format's limits is reported as `KMS_PROVIDER_ERROR`; values are never echoed.
 */
export function encodeKeySection(ks: KeySection): Buffer {
  const { providerId, keyId, keyVersion, wrappedKey } = ks ?? ({} as Partial<KeySection>);
  if (typeof providerId !== "string" || !PROVIDER_ID_PATTERN.test(providerId)) {
    throw providerError("key section: the provider id must match [a-z0-9-]{1,64}");
  }
  if (typeof keyId !== "string" || keyId.length === 0 || LONE_SURROGATE.test(keyId)) {
    throw providerError("key section: the key id must be a non-empty, well-formed string", providerId);
  }
  const keyIdBytes = Buffer.byteLength(keyId, "utf8");
  if (keyIdBytes > MAX_KEY_ID_BYTES) {
    throw providerError(`key section: the key id is ${keyIdBytes} UTF-8 bytes, the limit is ${MAX_KEY_ID_BYTES}`, providerId);
  }
  if (typeof keyVersion !== "string" || LONE_SURROGATE.test(keyVersion)) {
    throw providerError("key section: the key version must be a well-formed string", providerId);
  }
  const versionBytes = Buffer.byteLength(keyVersion, "utf8");
  if (versionBytes > MAX_KEY_VERSION_BYTES) {
    throw providerError(`key section: the key version is ${versionBytes} UTF-8 bytes, the limit is ${MAX_KEY_VERSION_BYTES}`, providerId);
  }
  if (!(wrappedKey instanceof Uint8Array) || wrappedKey.byteLength < 1 || wrappedKey.byteLength > MAX_WRAPPED_KEY_BYTES) {
    throw providerError(`key section: the wrapped data key must be 1..${MAX_WRAPPED_KEY_BYTES} bytes`, providerId);
  }
  const out = Buffer.alloc(1 + providerId.length + 2 + keyIdBytes + 1 + versionBytes + 2 + wrappedKey.byteLength + KEY_SECTION_CHECKSUM_BYTES);
  let o = out.writeUInt8(providerId.length, 0);
  o += out.write(providerId, o, "ascii");
  o = out.writeUInt16BE(keyIdBytes, o);
  o += out.write(keyId, o, "utf8");
  o = out.writeUInt8(versionBytes, o);
  o += out.write(keyVersion, o, "utf8");
  o = out.writeUInt16BE(wrappedKey.byteLength, o);
  out.set(wrappedKey, o);
  o += wrappedKey.byteLength;
  out.writeUInt32BE(crc32(out.subarray(0, o)), o);
  return out;
}

function isProviderIdByte(c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d;
}

/** Where each variable field of a key section lies, as `[start, end)` offsets into the buffer. */
interface KeySectionLayout {
  provider: readonly [number, number];
  keyId: readonly [number, number];
  keyVersion: readonly [number, number];
  wrappedKey: readonly [number, number];
  /** The checksum starts where the wrapped key ends; the section ends 4 bytes later. */
  end: number;
}

/**
 * Walks the length fields of one key section starting at `start`, without reading past `end`:
 * where each field begins, or a secret-free reason when a length is out of range or runs past
 * `end`. Reads lengths only: the field contents are `readKeySection`'s business. Never throws.
 */
function layOutKeySection(buf: Buffer, start: number, end: number): KeySectionLayout | string {
  let o = start;
  if (end - o < 1) return "truncated key section";
  const p = buf[o]!;
  const provider = o + 1;
  if (p < 1 || p > MAX_PROVIDER_ID_BYTES) return "provider id length out of range";
  if (end - provider < p) return "truncated provider id";
  o = provider + p;
  if (end - o < 2) return "truncated key section";
  const k = buf.readUInt16BE(o);
  const keyId = o + 2;
  if (k < 1 || k > MAX_KEY_ID_BYTES) return "key id length out of range";
  if (end - keyId < k) return "truncated key id";
  o = keyId + k;
  if (end - o < 1) return "truncated key section";
  const v = buf[o]!;
  const keyVersion = o + 1;
  if (end - keyVersion < v) return "truncated key version";
  o = keyVersion + v;
  if (end - o < 2) return "truncated key section";
  const w = buf.readUInt16BE(o);
  const wrappedKey = o + 2;
  if (w < 1 || w > MAX_WRAPPED_KEY_BYTES) return "wrapped key length out of range";
  if (end - wrappedKey < w) return "truncated wrapped key";
  const checksum = wrappedKey + w;
  if (end - checksum < KEY_SECTION_CHECKSUM_BYTES) return "truncated key section checksum";
  return {
    provider: [provider, provider + p],
    keyId: [keyId, keyId + k],
    keyVersion: [keyVersion, keyVersion + v],
    wrappedKey: [wrappedKey, checksum],
    end: checksum + KEY_SECTION_CHECKSUM_BYTES,
  };
}

/**
 * Reads one key section starting at `start` of `buf` without reading past `end`. Returns the field
 * values (strings decoded strictly, the wrapped key as a view) and where the section ends, or a
 * secret-free reason when it is malformed. Never throws.
 */
function readKeySection(buf: Buffer, start: number, end: number, verifyChecksum = true): { ks: KeySection; end: number } | string {
  const at = layOutKeySection(buf, start, end);
  if (typeof at === "string") return at;
  const [providerStart, providerEnd] = at.provider;
  for (let i = providerStart; i < providerEnd; i++) {
    if (!isProviderIdByte(buf[i]!)) return "provider id has a character outside [a-z0-9-]";
  }
  const providerId = buf.toString("latin1", providerStart, providerEnd);
  const keyId = decodeUtf8(buf, ...at.keyId);
  if (keyId === undefined) return "key id is not valid UTF-8";
  const keyVersion = decodeUtf8(buf, ...at.keyVersion);
  if (keyVersion === undefined) return "key version is not valid UTF-8";
  const [wrappedStart, checksum] = at.wrappedKey;
  // The checksum is not a security control (the key-section tag is); it turns storage corruption
  // into ENVELOPE_MALFORMED before a corrupted key id, version or wrapped key reaches the KMS.
  if (verifyChecksum && buf.readUInt32BE(checksum) !== crc32(buf.subarray(start, checksum))) return "key section checksum mismatch";
  return { ks: { providerId, keyId, keyVersion, wrappedKey: buf.subarray(wrappedStart, checksum) }, end: at.end };
}

/** Parses a key section on its own (as `encodeKeySection` wrote it, checksum included); undefined when malformed. */
export function parseKeySection(bytes: Buffer): KeySection | undefined {
  const read = readKeySection(bytes, 0, bytes.length);
  return typeof read === "string" || read.end !== bytes.length ? undefined : read.ks;
}

function decodeUtf8(buf: Buffer, start: number, end: number): string | undefined {
  let ascii = true;
  for (let i = start; i < end && ascii; i++) ascii = buf[i]! < 0x80;
  if (ascii) return buf.toString("latin1", start, end); // ASCII is its own UTF-8: no decoder, no view
  try {
    return utf8.decode(buf.subarray(start, end));
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// Tenant and encryption context
// ---------------------------------------------------------------------------------------------

function inputInvalid(message: string): KmsError {
  return new KmsError("INPUT_INVALID", message);
}

/** Why `tenantId` is not a tenant id, or undefined when it is (the rules of docs/ENVELOPE.md). */
export function tenantIdProblem(tenantId: unknown): string | undefined {
  if (typeof tenantId !== "string" || tenantId.length === 0) return "the tenant id must be a non-empty string";
  if (CONTROL_OR_LONE_SURROGATE.test(tenantId)) return "the tenant id must not contain control characters or unpaired surrogates";
  const bytes = Buffer.byteLength(tenantId, "utf8");
  if (bytes > MAX_TENANT_ID_BYTES) return `the tenant id is ${bytes} UTF-8 bytes, the limit is ${MAX_TENANT_ID_BYTES}`;
  return undefined;
}

/**
 * The canonical bytes of (tenant id, encryption context) bound into the payload AAD:
 * u16 tenant length, tenant UTF-8, u16 pair count, then per pair sorted by the key's UTF-8 bytes:
 * u16 key length, key, u16 value length, value. Invalid input → `INPUT_INVALID`; messages name
 * positions and lengths only, never the tenant id, a key or a value.
 */
export function encodeTenantContext(tenantId: string, context?: EncryptionContext): Buffer {
  const tenantProblem = tenantIdProblem(tenantId);
  if (tenantProblem !== undefined) throw inputInvalid(tenantProblem);
  const tenantBytes = Buffer.byteLength(tenantId, "utf8");

  if (context === undefined || context === null) {
    const out = Buffer.allocUnsafe(2 + tenantBytes + 2);
    out.writeUInt16BE(tenantBytes, 0);
    out.write(tenantId, 2, "utf8");
    out.writeUInt16BE(0, 2 + tenantBytes);
    return out;
  }
  if (typeof context !== "object" || Array.isArray(context)) {
    throw inputInvalid("the encryption context must be an object of string keys to string values");
  }
  const keys = Object.keys(context);
  if (keys.length > MAX_CONTEXT_PAIRS) {
    throw inputInvalid(`the encryption context has ${keys.length} pairs, the limit is ${MAX_CONTEXT_PAIRS}`);
  }
  const pairs: { key: Buffer; value: Buffer }[] = [];
  let total = 2 + tenantBytes + 2;
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i]!;
    const value: unknown = context[key];
    const where = `encryption context key #${i + 1}`;
    if (key.length === 0) throw inputInvalid(`${where} is empty`);
    if (CONTROL_OR_LONE_SURROGATE.test(key)) {
      throw inputInvalid(`${where} (${key.length} characters) contains a control character or an unpaired surrogate`);
    }
    const keyBuf = Buffer.from(key, "utf8");
    if (keyBuf.length > MAX_CONTEXT_KEY_BYTES) {
      throw inputInvalid(`${where} is ${keyBuf.length} UTF-8 bytes, the limit is ${MAX_CONTEXT_KEY_BYTES}`);
    }
    if (typeof value !== "string") throw inputInvalid(`the value of ${where} is not a string`);
    if (LONE_SURROGATE.test(value)) throw inputInvalid(`the value of ${where} contains an unpaired surrogate`);
    const valueBuf = Buffer.from(value, "utf8");
    if (valueBuf.length > MAX_CONTEXT_VALUE_BYTES) {
      throw inputInvalid(`the value of ${where} is ${valueBuf.length} UTF-8 bytes, the limit is ${MAX_CONTEXT_VALUE_BYTES}`);
    }
    pairs.push({ key: keyBuf, value: valueBuf });
    total += 2 + keyBuf.length + 2 + valueBuf.length;
    if (total > MAX_TENANT_CONTEXT_BYTES) {
      throw inputInvalid(`the tenant id and encryption context exceed ${MAX_TENANT_CONTEXT_BYTES} bytes in canonical form`);
    }
  }
  // Well-formed strings encode injectively to UTF-8, and object keys are distinct, so there are no ties.
  pairs.sort((a, b) => Buffer.compare(a.key, b.key));

  const out = Buffer.allocUnsafe(total);
  let o = out.writeUInt16BE(tenantBytes, 0);
  o += out.write(tenantId, o, "utf8");
  o = out.writeUInt16BE(pairs.length, o);
  for (const { key, value } of pairs) {
    o = out.writeUInt16BE(key.length, o);
    o += key.copy(out, o);
    o = out.writeUInt16BE(value.length, o);
    o += value.copy(out, o);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Sealing
// ---------------------------------------------------------------------------------------------

/**
 * Everything constant for one (DEK, key section, tenant, context): built once when a data key enters
 * the encrypt cache, then reused by `seal` for every message. Treat as opaque.
 */
export interface EncryptTemplate {
  /** fixed header ‖ key section ‖ key-section tag: the first bytes of every envelope it seals. */
  readonly prefix: Buffer;
  /** The payload AAD: fixed header ‖ canonical tenant/context. */
  readonly aad: Buffer;
  /** Ke, shared with (not copied from) the material, so `zeroMaterial` disables the template too. */
  readonly encryptionKey: Buffer;
}

function fixedHeader(commitment: Buffer): Buffer {
  const header = Buffer.alloc(FIXED_HEADER_BYTES);
  header.writeUInt32BE(ENVELOPE_MAGIC, 0);
  header[4] = ENVELOPE_VERSION;
  header[5] = SUITE_AES256GCM_HKDF_COMMIT;
  commitment.copy(header, 6);
  return header;
}

function checkMaterial(m: DataKeyMaterial): void {
  if (
    !m ||
    !Buffer.isBuffer(m.encryptionKey) || m.encryptionKey.length !== 32 ||
    !Buffer.isBuffer(m.keySectionKey) || m.keySectionKey.length !== 32 ||
    !Buffer.isBuffer(m.commitment) || m.commitment.length !== 32
  ) {
    throw inputInvalid("data key material must hold three 32-byte buffers");
  }
}

function checkKeySection(keySection: Uint8Array): Buffer {
  if (!(keySection instanceof Uint8Array)) throw inputInvalid("the key section must be bytes from encodeKeySection");
  const buf = Buffer.from(keySection.buffer, keySection.byteOffset, keySection.byteLength);
  const read = readKeySection(buf, 0, buf.length);
  if (typeof read === "string" || read.end !== buf.length) throw inputInvalid("the key section must be bytes from encodeKeySection");
  return buf;
}

/** The key-section tag T = HMAC-SHA256(Kt, key section bytes). */
export function keySectionTag(m: DataKeyMaterial, keySection: Buffer): Buffer {
  return createHmac("sha256", m.keySectionKey).update(keySection).digest();
}

/** Precomputes the envelope prefix and the AAD for one (DEK, key section, tenant, context). */
export function createEncryptTemplate(m: DataKeyMaterial, keySection: Buffer, tenantContext: Buffer): EncryptTemplate {
  checkMaterial(m);
  const ks = checkKeySection(keySection);
  if (!(tenantContext instanceof Uint8Array) || tenantContext.byteLength < 4) {
    throw inputInvalid("the tenant context must be bytes from encodeTenantContext");
  }
  const header = fixedHeader(m.commitment);
  return {
    prefix: Buffer.concat([header, ks, keySectionTag(m, ks)]),
    aad: Buffer.concat([header, tenantContext]),
    encryptionKey: m.encryptionKey,
  };
}

/**
 * Encrypts one message: a random 96-bit IV and one AES-256-GCM operation, written into a single
 * output buffer. The cache's `maxMessages` keeps each DEK far below the random-IV limit (2^32).
 */
export function seal(t: EncryptTemplate, plaintext: Uint8Array): Buffer {
  const key = t.encryptionKey;
  // Defense in depth: a template whose material was zeroed must never encrypt under the all-zero key.
  if (zeroedKeys.has(key)) throw inputInvalid("this encrypt template's data key has been zeroed");
  const prefix = t.prefix;
  const start = prefix.length + IV_BYTES;
  const n = plaintext.byteLength;
  const out = Buffer.allocUnsafe(start + n + GCM_TAG_BYTES);
  prefix.copy(out, 0);
  writeIv(out, prefix.length);
  const iv = out.subarray(prefix.length, start);
  const cipher = createCipheriv("aes-256-gcm", key, iv);
  cipher.setAAD(t.aad);
  const ct = cipher.update(plaintext);
  ct.copy(out, start);
  const rest = cipher.final(); // always empty for GCM; kept correct regardless
  if (rest.length !== 0) rest.copy(out, start + ct.length);
  cipher.getAuthTag().copy(out, start + n);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Parsing and opening
// ---------------------------------------------------------------------------------------------

export interface ParseOptions {
  /**
   * Verify the key-section checksum (default true). A caller that has already authenticated these
   * exact key-section bytes (a cache hit) may skip it, and must call `verifyKeySectionChecksum`
   * before the key section reaches a KMS.
   */
  readonly verifyChecksum: boolean;
}

const CHECKED: ParseOptions = { verifyChecksum: true };

/** `ENVELOPE_MALFORMED` when the key section's CRC-32 does not match (storage corruption). */
export function verifyKeySectionChecksum(p: ParsedEnvelope): void {
  const ks = p.keySectionBytes;
  const fields = ks.length - KEY_SECTION_CHECKSUM_BYTES;
  if (ks.readUInt32BE(fields) !== crc32(ks.subarray(0, fields))) throw malformed("key section checksum mismatch");
}

/** A parsed envelope. Every Buffer is a view into the parsed input: do not mutate the input meanwhile. */
export interface ParsedEnvelope {
  /** Bytes 0..37: magic, version, suite, commitment. */
  fixedHeader: Buffer;
  commitment: Buffer;
  keySection: KeySection;
  keySectionBytes: Buffer;
  keySectionTag: Buffer;
  iv: Buffer;
  ciphertext: Buffer;
  tag: Buffer;
}

function malformed(reason: string): KmsError {
  return new KmsError("ENVELOPE_MALFORMED", `malformed envelope: ${reason}`);
}

/**
 * Parses untrusted bytes. Only ever throws `ENVELOPE_MALFORMED`; allocates nothing beyond the
 * decoded key id and version strings (bounded by the input); returns views, never copies.
 */
export function parseEnvelope(bytes: Uint8Array, options: ParseOptions = CHECKED): ParsedEnvelope {
  const buf = envelopeBuffer(bytes);
  const len = buf.length;
  const read = readKeySection(buf, FIXED_HEADER_BYTES, trailerStart(buf), options.verifyChecksum);
  if (typeof read === "string") throw malformed(read);
  const ksEnd = read.end;
  const tagEnd = ksEnd + KEY_SECTION_TAG_BYTES;
  const ivEnd = tagEnd + IV_BYTES;
  const ctEnd = len - GCM_TAG_BYTES;
  return {
    fixedHeader: buf.subarray(0, FIXED_HEADER_BYTES),
    commitment: buf.subarray(6, FIXED_HEADER_BYTES),
    keySection: read.ks,
    keySectionBytes: buf.subarray(FIXED_HEADER_BYTES, ksEnd),
    keySectionTag: buf.subarray(ksEnd, tagEnd),
    iv: buf.subarray(tagEnd, ivEnd),
    ciphertext: buf.subarray(ivEnd, ctEnd),
    tag: buf.subarray(ctEnd, len),
  };
}

/** The input as a Buffer (a view, not a copy) after the fixed-header checks; else ENVELOPE_MALFORMED. */
function envelopeBuffer(bytes: Uint8Array): Buffer {
  if (!(bytes instanceof Uint8Array)) throw malformed("not a byte array");
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.length < MIN_ENVELOPE_BYTES) throw malformed(`shorter than the minimum of ${MIN_ENVELOPE_BYTES} bytes`);
  if (buf.readUInt32BE(0) !== ENVELOPE_MAGIC) throw malformed("not an @kms envelope (bad magic)");
  if (buf[4] !== ENVELOPE_VERSION) throw malformed("unsupported format version");
  if (buf[5] !== SUITE_AES256GCM_HKDF_COMMIT) throw malformed("unsupported algorithm suite");
  return buf;
}

/** The payload trailer (T, IV, GCM tag) is fixed-size, so the key section must end by here. */
function trailerStart(buf: Buffer): number {
  return buf.length - KEY_SECTION_TAG_BYTES - IV_BYTES - GCM_TAG_BYTES;
}

/**
 * The cache-hit path's parse: the fixed-header checks and the key section's length fields only
 * (no decoding, no checksum, no views). Returns the input as a Buffer and where its key section
 * ends, for `openWith` with a template built from a full `parseEnvelope` of the same key-section
 * bytes. Throws only ENVELOPE_MALFORMED.
 */
export function locateKeySection(bytes: Uint8Array): { buf: Buffer; keySectionEnd: number } {
  const buf = envelopeBuffer(bytes);
  const at = layOutKeySection(buf, FIXED_HEADER_BYTES, trailerStart(buf));
  if (typeof at === "string") throw malformed(at);
  return { buf, keySectionEnd: at.end };
}

/** The one authentication failure: the same text whatever check failed, so it tells nothing. */
export function authFailed(): KmsError {
  return new KmsError("ENVELOPE_AUTH_FAILED", AUTH_FAILED_MESSAGE);
}

function equal32(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * Checks the commitment and the key-section tag (constant time), then decrypts and authenticates the
 * payload with AAD = fixed header ‖ tenant context. Any failure → `ENVELOPE_AUTH_FAILED`, one vague
 * message for all causes; unauthenticated plaintext is zeroed, never returned.
 */
export function open(p: ParsedEnvelope, m: DataKeyMaterial, tenantContext: Buffer): Buffer {
  let t: DecryptTemplate;
  try {
    t = createDecryptTemplate(m, p.keySectionBytes, tenantContext);
  } catch {
    throw authFailed(); // garbage material or context: as vague as every other failure here
  }
  return openParts(t, p.commitment, p.keySectionTag, p.iv, p.ciphertext, p.tag);
}

/**
 * Everything constant for opening envelopes of one (DEK, exact key section, tenant, context), built
 * once when a data key enters the decrypt cache: the expected commitment and key-section tag, and the
 * payload AAD in one piece.
 */
export interface DecryptTemplate {
  readonly commitment: Buffer;
  readonly keySectionTag: Buffer;
  /** fixed header (with the expected commitment) ‖ canonical tenant/context. */
  readonly aad: Buffer;
  readonly encryptionKey: Buffer;
}

export function createDecryptTemplate(m: DataKeyMaterial, keySection: Buffer, tenantContext: Buffer): DecryptTemplate {
  checkMaterial(m);
  if (!(tenantContext instanceof Uint8Array) || tenantContext.byteLength < 4) {
    throw inputInvalid("the tenant context must be bytes from encodeTenantContext");
  }
  const header = fixedHeader(m.commitment);
  return {
    commitment: m.commitment,
    keySectionTag: keySectionTag(m, keySection),
    aad: Buffer.concat([header, tenantContext]),
    encryptionKey: m.encryptionKey,
  };
}

/**
 * Opens an envelope whose key section (ending at `keySectionEnd`, from `locateKeySection` or a
 * parse) holds exactly the bytes `t` was built for: checks the commitment and the key-section tag
 * (constant time, both always), then decrypts and authenticates the payload. Any failure →
 * `ENVELOPE_AUTH_FAILED`, one vague message for all causes; unauthenticated plaintext is zeroed,
 * never returned.
 */
export function openWith(t: DecryptTemplate, buf: Buffer, keySectionEnd: number): Buffer {
  const tagEnd = keySectionEnd + KEY_SECTION_TAG_BYTES;
  const ivEnd = tagEnd + IV_BYTES;
  const ctEnd = Math.max(ivEnd, buf.length - GCM_TAG_BYTES);
  return openParts(
    t,
    buf.subarray(6, FIXED_HEADER_BYTES),
    buf.subarray(keySectionEnd, tagEnd),
    buf.subarray(tagEnd, ivEnd),
    buf.subarray(ivEnd, ctEnd),
    buf.subarray(ctEnd),
  );
}

function openParts(t: DecryptTemplate, commitment: Buffer, keySectionTagField: Buffer, iv: Buffer, ciphertext: Buffer, tag: Buffer): Buffer {
  let out: Buffer | undefined;
  try {
    if (zeroedKeys.has(t.encryptionKey)) throw authFailed();
    // Both checks always run, so timing does not tell which one failed.
    const commitmentOk = equal32(t.commitment, commitment);
    const tagOk = equal32(t.keySectionTag, keySectionTagField);
    if (!commitmentOk || !tagOk || tag.length !== GCM_TAG_BYTES || iv.length !== IV_BYTES) throw authFailed();
    // The AAD's header is the template's: equal to the envelope's, whose magic, version and suite
    // were checked by the parse and whose commitment was just compared.
    const decipher = createDecipheriv("aes-256-gcm", t.encryptionKey, iv, { authTagLength: GCM_TAG_BYTES });
    decipher.setAuthTag(tag);
    decipher.setAAD(t.aad);
    out = decipher.update(ciphertext);
    const rest = decipher.final(); // throws when the GCM tag does not verify
    return rest.length === 0 ? out : Buffer.concat([out, rest]);
  } catch {
    out?.fill(0);
    throw authFailed();
  }
}

/** For re-wrap: the same fixed header, IV, ciphertext and GCM tag around a new key section and tag. */
export function replaceKeySection(p: ParsedEnvelope, keySection: Buffer, tag: Buffer): Buffer {
  const ks = checkKeySection(keySection);
  if (!(tag instanceof Uint8Array) || tag.byteLength !== KEY_SECTION_TAG_BYTES) {
    throw inputInvalid(`the key-section tag must be ${KEY_SECTION_TAG_BYTES} bytes`);
  }
  return Buffer.concat([p.fixedHeader, ks, tag, p.iv, p.ciphertext, p.tag]);
}

// ---------------------------------------------------------------------------------------------
// Text form
// ---------------------------------------------------------------------------------------------

/** Unpadded base64url (RFC 4648 §5). */
export function toBase64Url(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("base64url");
}

const B64URL_VALUES = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/**
 * Strict decoding: only `[A-Za-z0-9_-]`, no padding, no whitespace, length % 4 ≠ 1, and unused
 * trailing bits zero (so each byte string has exactly one text form). Otherwise `ENVELOPE_MALFORMED`.
 */
export function fromBase64Url(s: string): Buffer {
  if (typeof s !== "string") throw malformed("the text form must be a string");
  const rem = s.length % 4;
  if (rem === 1) throw malformed("base64url text has an impossible length");
  if (!BASE64URL.test(s)) throw malformed("base64url text may only contain A-Z a-z 0-9 - _ (no padding)");
  if (rem !== 0) {
    const last = B64URL_VALUES.indexOf(s[s.length - 1]!);
    if ((last & (rem === 2 ? 0x0f : 0x03)) !== 0) throw malformed("base64url text is not canonical (non-zero trailing bits)");
  }
  return Buffer.from(s, "base64url");
}
