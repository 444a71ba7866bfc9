/**
 * Defensive readers of Vault's answers. A response that is not what the transit API returns is a
 * `KMS_PROVIDER_ERROR` naming the operation and the field, never a crash and never an echo of the
 * body (it may hold a data key).
 */
import { KmsError } from "@kms/core";
import type { VaultCall } from "./errors";

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
/** `vault:v<N>:<base64>`, as transit writes ciphertexts. */
const CIPHERTEXT = /^vault:v([1-9][0-9]{0,9}):((?:[A-Za-z0-9+/]{4})+(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?)$/;
/** Core's limit on a wrapped key (envelope key section). */
const MAX_CIPHERTEXT_BYTES = 8192;

/** What `keys/:name` says about a key. */
export interface KeyInfo {
  readonly derived: boolean;
  readonly latestVersion: number;
  /** Creation time of each version, where Vault gives one (epoch seconds → Date). */
  readonly versionTimes: ReadonlyMap<number, Date>;
}

export function unexpected(call: VaultCall, what: string): KmsError {
  return new KmsError("KMS_PROVIDER_ERROR", `vault: Vault's answer to ${call.operation} on "${call.path}" is not what the transit API returns (${what})`, {
    provider: "vault",
  });
}

/** The `data` object of a response envelope. */
export function dataOf(body: unknown, call: VaultCall): Record<string, unknown> {
  const data = isRecord(body) ? body.data : undefined;
  if (!isRecord(data)) throw unexpected(call, "no data object");
  return data;
}

/** A ciphertext field: the wrapped key (its UTF-8 bytes) and the version in its prefix. */
export function ciphertextOf(data: Record<string, unknown>, call: VaultCall): { wrappedKey: Buffer; keyVersion: string } {
  const value = data.ciphertext;
  const parsed = typeof value === "string" ? parseCiphertext(value) : undefined;
  if (parsed === undefined) throw unexpected(call, "ciphertext is not vault:v<N>:<base64>");
  // Vault 1.x also returns key_version; when it does, it must agree with the prefix.
  if (data.key_version !== undefined && String(data.key_version) !== parsed.keyVersion) throw unexpected(call, "key_version disagrees with the ciphertext");
  return { wrappedKey: Buffer.from(value as string, "utf8"), keyVersion: parsed.keyVersion };
}

/** The version of a well-formed transit ciphertext, or undefined. */
export function parseCiphertext(value: string): { keyVersion: string } | undefined {
  if (value.length > MAX_CIPHERTEXT_BYTES) return undefined;
  const m = CIPHERTEXT.exec(value);
  return m ? { keyVersion: m[1]! } : undefined;
}

/** A base64 field's bytes; undefined when absent or not base64. */
export function base64Of(value: unknown): Buffer | undefined {
  return typeof value === "string" && BASE64.test(value) ? Buffer.from(value, "base64") : undefined;
}

/** The key read payload, checked field by field. */
export function keyInfoOf(body: unknown, call: VaultCall): KeyInfo {
  const data = dataOf(body, call);
  if (typeof data.derived !== "boolean") throw unexpected(call, "derived is not a boolean");
  const latest = data.latest_version;
  if (typeof latest !== "number" || !Number.isSafeInteger(latest) || latest < 1) throw unexpected(call, "latest_version is not a positive integer");
  const versionTimes = new Map<number, Date>();
  if (isRecord(data.keys)) {
    for (const [version, time] of Object.entries(data.keys)) {
      // Symmetric keys map versions to epoch seconds; other key types to objects (no time: left out).
      if (/^[1-9][0-9]{0,9}$/.test(version) && typeof time === "number" && Number.isFinite(time) && time >= 0) {
        versionTimes.set(Number(version), new Date(time * 1000));
      }
    }
  }
  return { derived: data.derived, latestVersion: latest, versionTimes };
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
