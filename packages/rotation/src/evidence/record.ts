/**
 * One evidence record: how an event is validated, encoded canonically, hashed, MACed and read back.
 * Every store, the verifier and the export share these functions, so there is one definition of the
 * bytes a hash covers.
 */
import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import { KmsError } from "@kms/core";
import type { EvidenceEvent, EvidenceEventType, EvidenceFilter, EvidenceRecord } from "../types";

/** The version of the canonical encoding; part of every hashed byte string. */
export const EVIDENCE_FORMAT_VERSION = 1;

/** `prevHash` of record 1. */
export const GENESIS_HASH = "0".repeat(64);

/** HMAC keys shorter than this are refused: SHA-256's output size, as RFC 2104 recommends. */
export const MIN_HMAC_KEY_BYTES = 32;

export const EVENT_TYPES: readonly EvidenceEventType[] = [
  "key.created",
  "key.rotation-started",
  "key.rotated",
  "key.rotation-failed",
  "rewrap.completed",
  "key.disabled",
  "key.destruction-scheduled",
  "permissions.validated",
  "config.loaded",
];

const MAX_TEXT = 256;
const MAX_DETAILS = 32;
const DETAIL_KEY = /^[A-Za-z0-9_.-]{1,64}$/;
const ERROR_CODE = /^[A-Z][A-Z0-9_]{0,63}$/;
const HEX64 = /^[0-9a-f]{64}$/;
const ISO_UTC_MS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
/** C0, DEL, C1, line/paragraph separators, and lone surrogates (no unambiguous UTF-8). */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const FORBIDDEN_CHARS = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

const OPTIONAL_TEXT = ["tenantId", "provider", "keyId", "keyVersion", "previousVersion", "requestId"] as const;
const EVENT_FIELDS = new Set<string>(["type", "actor", "outcome", "errorCode", "details", ...OPTIONAL_TEXT]);
const RECORD_FIELDS = new Set<string>([...EVENT_FIELDS, "seq", "time", "prevHash", "hash", "mac"]);

/** An `INPUT_INVALID` error naming the field, never its value. */
function invalid(what: string): KmsError {
  return new KmsError("INPUT_INVALID", `Invalid evidence ${what}`);
}

function isText(value: unknown): value is string {
  return typeof value === "string" && value.length >= 1 && value.length <= MAX_TEXT && !FORBIDDEN_CHARS.test(value);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}

/**
 * Checks an event from a caller and returns a copy holding only the known fields (so nothing else,
 * such as a context value, rides along into the log). Throws `INPUT_INVALID` naming the field.
 */
export function parseEvent(input: unknown): EvidenceEvent {
  if (!isPlainObject(input)) throw invalid("event: not an object");
  return pickEvent(input, EVENT_FIELDS, "event");
}

function pickEvent(input: Record<string, unknown>, allowed: ReadonlySet<string>, what: string): EvidenceEvent {
  for (const key of Object.keys(input)) if (!allowed.has(key)) throw invalid(`${what}: unknown field`);
  if (!EVENT_TYPES.includes(input.type as EvidenceEventType)) throw invalid(`${what}.type`);
  if (!isText(input.actor)) throw invalid(`${what}.actor`);
  if (input.outcome !== "success" && input.outcome !== "failure") throw invalid(`${what}.outcome`);
  const event: Record<string, unknown> = { type: input.type, actor: input.actor, outcome: input.outcome };
  for (const field of OPTIONAL_TEXT) {
    if (input[field] === undefined) continue;
    if (!isText(input[field])) throw invalid(`${what}.${field}`);
    event[field] = input[field];
  }
  if (input.errorCode !== undefined) {
    if (typeof input.errorCode !== "string" || !ERROR_CODE.test(input.errorCode)) throw invalid(`${what}.errorCode`);
    event.errorCode = input.errorCode;
  }
  if (input.details !== undefined) event.details = parseDetails(input.details, what);
  return event as unknown as EvidenceEvent;
}

function parseDetails(input: unknown, what: string): Record<string, string | number | boolean> {
  if (!isPlainObject(input)) throw invalid(`${what}.details`);
  const entries = Object.entries(input);
  if (entries.length > MAX_DETAILS) throw invalid(`${what}.details: too many entries`);
  const details: Record<string, string | number | boolean> = {};
  for (const [key, value] of entries) {
    if (!DETAIL_KEY.test(key)) throw invalid(`${what}.details: bad key`);
    const ok = typeof value === "boolean" || (typeof value === "number" && Number.isFinite(value)) || isText(value);
    if (!ok) throw invalid(`${what}.details.${key}`);
    details[key] = value as string | number | boolean;
  }
  return details;
}

/**
 * Checks a record read back from a store or an export. Throws `INPUT_INVALID` naming the field:
 * the verifier turns that into a "malformed" finding.
 */
export function parseRecord(input: unknown): EvidenceRecord {
  if (!isPlainObject(input)) throw invalid("record: not an object");
  const event = pickEvent(input, RECORD_FIELDS, "record");
  const { seq, time, prevHash, hash, mac } = input;
  if (typeof seq !== "number" || !Number.isSafeInteger(seq) || seq < 1) throw invalid("record.seq");
  if (typeof time !== "string" || !ISO_UTC_MS.test(time) || Number.isNaN(Date.parse(time))) throw invalid("record.time");
  if (typeof prevHash !== "string" || !HEX64.test(prevHash)) throw invalid("record.prevHash");
  if (typeof hash !== "string" || !HEX64.test(hash)) throw invalid("record.hash");
  if (mac !== undefined && (typeof mac !== "string" || !HEX64.test(mac))) throw invalid("record.mac");
  return { ...event, seq, time, prevHash, hash, ...(mac === undefined ? {} : { mac }) };
}

/**
 * The canonical encoding: JSON (ECMAScript `JSON.stringify` escaping and number formatting) of an
 * object with keys in code-unit order at every level, absent fields omitted, no whitespace, encoded
 * as UTF-8. Records add `"v": 1` before hashing (see `hashRecord`).
 */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (isPlainObject(value)) {
    const keys = Object.keys(value)
      .filter((k) => value[k] !== undefined)
      .sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(value[k])}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

/** SHA-256 (hex) of the canonical encoding of the record without `hash` and `mac`, with `v` added. */
export function hashRecord(record: Omit<EvidenceRecord, "hash" | "mac"> & { hash?: string; mac?: string }): string {
  const { hash: _hash, mac: _mac, ...body } = record;
  return createHash("sha256").update(canonicalJson({ ...body, v: EVIDENCE_FORMAT_VERSION }), "utf8").digest("hex");
}

/** HMAC-SHA-256 (hex) of a hex string's ASCII bytes. */
export function macOf(hmacKey: Uint8Array, hex: string): string {
  return createHmac("sha256", hmacKey).update(hex, "utf8").digest("hex");
}

/** Constant-time comparison of two hex digests. */
export function sameHex(a: string, b: string): boolean {
  const x = Buffer.from(a, "utf8");
  const y = Buffer.from(b, "utf8");
  return x.length === y.length && timingSafeEqual(x, y);
}

/** Refuses a missing-but-given or short HMAC key; copies it so the caller may zero theirs. */
export function checkHmacKey(hmacKey: Uint8Array | undefined): Uint8Array | undefined {
  if (hmacKey === undefined) return undefined;
  if (!(hmacKey instanceof Uint8Array) || hmacKey.length < MIN_HMAC_KEY_BYTES) {
    throw new KmsError("KMS_CONFIG_INVALID", `Evidence HMAC key must be at least ${MIN_HMAC_KEY_BYTES} bytes`);
  }
  return Uint8Array.from(hmacKey);
}

/** A filter with its times as milliseconds, checked once. */
export interface NormalizedFilter extends Omit<EvidenceFilter, "since" | "until"> {
  readonly sinceMs?: number;
  readonly untilMs?: number;
}

function toMs(value: string | Date | undefined, what: string): number | undefined {
  if (value === undefined) return undefined;
  const ms = value instanceof Date ? value.getTime() : typeof value === "string" ? Date.parse(value) : Number.NaN;
  if (Number.isNaN(ms)) throw invalid(`filter.${what}`);
  return ms;
}

export function normalizeFilter(filter: EvidenceFilter = {}): NormalizedFilter {
  if (!isPlainObject(filter as unknown)) throw invalid("filter");
  for (const field of ["tenantId", "provider", "keyId"] as const) {
    if (filter[field] !== undefined && !isText(filter[field])) throw invalid(`filter.${field}`);
  }
  if (filter.types !== undefined && (!Array.isArray(filter.types) || !filter.types.every((t) => EVENT_TYPES.includes(t)))) {
    throw invalid("filter.types");
  }
  const sinceMs = toMs(filter.since, "since");
  const untilMs = toMs(filter.until, "until");
  return {
    ...(filter.tenantId === undefined ? {} : { tenantId: filter.tenantId }),
    ...(filter.provider === undefined ? {} : { provider: filter.provider }),
    ...(filter.keyId === undefined ? {} : { keyId: filter.keyId }),
    ...(filter.types === undefined ? {} : { types: [...filter.types] }),
    ...(sinceMs === undefined ? {} : { sinceMs }),
    ...(untilMs === undefined ? {} : { untilMs }),
  };
}

/** The one definition of "a record matches a filter", used by every store. */
export function matchesFilter(record: EvidenceRecord, filter: NormalizedFilter): boolean {
  if (filter.tenantId !== undefined && record.tenantId !== filter.tenantId) return false;
  if (filter.provider !== undefined && record.provider !== filter.provider) return false;
  if (filter.keyId !== undefined && record.keyId !== filter.keyId) return false;
  if (filter.types !== undefined && !filter.types.includes(record.type)) return false;
  const ms = Date.parse(record.time);
  if (filter.sinceMs !== undefined && ms < filter.sinceMs) return false;
  if (filter.untilMs !== undefined && ms >= filter.untilMs) return false;
  return true;
}
