/**
 * Settings of `providers["gcp-kms"]` in configuration, and the key-name syntax Cloud KMS accepts.
 * Both are checked without any network access (core calls them at start-up). Every issue is reported
 * at once with its path; no value is ever echoed (a private key is a setting too).
 *
 * Hand-written rather than zod: `zod` is not a dependency of this package, and the rules are few.
 */
import { X509Certificate } from "node:crypto";
import type { SettingsResult } from "@kms/core";

/** A service account key, as in the JSON file Google issues (only the fields the client needs). */
export interface GcpServiceAccountCredentials {
  readonly client_email: string;
  readonly private_key: string;
}

/** What configuration may set for the `gcp-kms` provider. */
export interface GcpKmsSettings {
  /** Another host for the API (a Private Service Connect endpoint, an emulator). Default `cloudkms.googleapis.com`. */
  readonly apiEndpoint?: string;
  /** The port of `apiEndpoint`. Default 443. */
  readonly port?: number;
  /** Path of a service account key file; default Application Default Credentials. */
  readonly keyFilename?: string;
  /** An inline service account key; default Application Default Credentials. Not with `keyFilename`. */
  readonly credentials?: GcpServiceAccountCredentials;
  /**
   * An emulator on this machine, reached over TLS without credentials: `caCert` is the PEM certificate
   * its TLS certificate is (or is signed by), the only one trusted (as `@kms/vault`'s `caCert`).
   * `apiEndpoint` must then be a loopback address, `port` is required and no credentials may be set.
   * Never for Google's service. There is no plaintext mode.
   */
  readonly emulator?: GcpEmulatorSettings;
  /** Deadline of every call, in ms (gRPC DEADLINE_EXCEEDED → a retryable `KMS_TIMEOUT`). Default 10 000. */
  readonly timeoutMs?: number;
}

/** `emulator`: how to trust an emulator's TLS certificate. */
export interface GcpEmulatorSettings {
  /** PEM certificate(s) of the CA that signed the emulator's certificate (a self-signed one: itself). */
  readonly caCert: string;
}

type Issue = { path: string; message: string };

/** The per-call deadline when `timeoutMs` is not set: a backstop behind core's `resilience.timeoutMs`. */
export const DEFAULT_TIMEOUT_MS = 10_000;
const MAX_TIMEOUT_MS = 600_000;
const SETTINGS = ["apiEndpoint", "port", "keyFilename", "credentials", "emulator", "timeoutMs"];
/** A DNS name or an IPv4 address, no scheme, no port. */
const HOST = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const LOOPBACK = new Set(["127.0.0.1", "localhost", "::1"]);
const EMAIL = /^[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,255}$/;
// eslint-disable-next-line no-control-regex -- refusing control characters is the point
const NO_CONTROL = /^[^\x00-\x1f\x7f]+$/;

/** Validates raw settings; every problem is reported with its path, and no value is ever echoed. */
export function parseGcpKmsSettings(raw: unknown): SettingsResult<GcpKmsSettings> {
  if (raw === undefined) return { ok: true, settings: {} };
  if (!isRecord(raw)) return { ok: false, issues: [{ path: "", message: "must be an object (it may be empty: {})" }] };
  const issues: Issue[] = [];
  for (const key of Object.keys(raw)) {
    if (SETTINGS.includes(key)) continue;
    issues.push({
      path: key,
      message:
        key === "retry" || key === "maxRetries"
          ? "not configurable: the client makes one attempt per call, and core's resilience.retry does the retrying"
          : `unknown setting (expected ${SETTINGS.join(", ")})`,
    });
  }
  const { apiEndpoint, port, keyFilename, credentials, emulator, timeoutMs } = raw;
  if (apiEndpoint !== undefined && !(typeof apiEndpoint === "string" && (HOST.test(apiEndpoint) || apiEndpoint === "::1"))) {
    issues.push({ path: "apiEndpoint", message: "must be a host name or IP address without scheme or port, e.g. cloudkms.googleapis.com" });
  }
  if (port !== undefined && !(Number.isInteger(port) && (port as number) >= 1 && (port as number) <= 65535)) {
    issues.push({ path: "port", message: "must be a whole number from 1 to 65535" });
  }
  if (keyFilename !== undefined && !(typeof keyFilename === "string" && keyFilename.length <= 4096 && NO_CONTROL.test(keyFilename))) {
    issues.push({ path: "keyFilename", message: "must be the path of a service account key file" });
  }
  if (credentials !== undefined) issues.push(...credentialIssues(credentials));
  if (keyFilename !== undefined && credentials !== undefined) issues.push({ path: "credentials", message: "give either keyFilename or credentials, not both" });
  if (emulator !== undefined) {
    issues.push(...emulatorIssues(emulator));
    if (typeof apiEndpoint !== "string" || !LOOPBACK.has(apiEndpoint)) issues.push({ path: "apiEndpoint", message: "with emulator, must be a loopback address (127.0.0.1, localhost or ::1)" });
    if (port === undefined) issues.push({ path: "port", message: "with emulator, the emulator's port is required" });
    if (keyFilename !== undefined || credentials !== undefined) issues.push({ path: "emulator", message: "an emulator takes no credentials: drop keyFilename / credentials" });
  }
  if (timeoutMs !== undefined && !(Number.isInteger(timeoutMs) && (timeoutMs as number) > 0 && (timeoutMs as number) <= MAX_TIMEOUT_MS)) {
    issues.push({ path: "timeoutMs", message: `must be a whole number of milliseconds, 1 to ${MAX_TIMEOUT_MS}` });
  }
  if (issues.length > 0) return { ok: false, issues };
  const settings: Record<string, unknown> = {};
  for (const key of SETTINGS) if (raw[key] !== undefined) settings[key] = isRecord(raw[key]) ? { ...raw[key] } : raw[key];
  return { ok: true, settings: settings as GcpKmsSettings };
}

function credentialIssues(credentials: unknown): Issue[] {
  if (!isRecord(credentials)) return [{ path: "credentials", message: "must be an object with client_email and private_key (from a service account key)" }];
  const issues: Issue[] = [];
  const { client_email, private_key } = credentials;
  if (typeof client_email !== "string" || !EMAIL.test(client_email)) issues.push({ path: "credentials.client_email", message: "must be a service account email" });
  if (typeof private_key !== "string" || !private_key.includes("PRIVATE KEY-----")) {
    issues.push({ path: "credentials.private_key", message: "must be the PEM private key of a service account key" });
  }
  return issues;
}

function emulatorIssues(emulator: unknown): Issue[] {
  if (!isRecord(emulator)) {
    return [{ path: "emulator", message: 'must be { caCert: "<PEM>" }: an emulator is reached over TLS, trusting its certificate (there is no plaintext mode)' }];
  }
  const issues: Issue[] = Object.keys(emulator)
    .filter((key) => key !== "caCert")
    .map((key) => ({ path: `emulator.${key}`, message: "unknown setting (expected caCert)" }));
  const { caCert } = emulator;
  if (caCert === undefined) issues.push({ path: "emulator.caCert", message: "required: the PEM certificate the emulator's TLS certificate is, or is signed by" });
  else if (!isCertificate(caCert)) issues.push({ path: "emulator.caCert", message: "must be PEM text of a certificate (-----BEGIN CERTIFICATE----- …)" });
  return issues;
}

/** PEM text whose (first) certificate parses. */
function isCertificate(pem: unknown): boolean {
  if (typeof pem !== "string" || !pem.includes("-----BEGIN CERTIFICATE-----")) return false;
  try {
    new X509Certificate(pem);
    return true;
  } catch {
    return false;
  }
}

/** A Cloud KMS CryptoKey name. Project ids are 6-30 characters; the other ids are Cloud KMS's. */
const KEY_NAME = /^projects\/[a-z][a-z0-9-]{4,28}[a-z0-9]\/locations\/[a-z0-9-]{1,63}\/keyRings\/[A-Za-z0-9_-]{1,63}\/cryptoKeys\/[A-Za-z0-9_-]{1,63}$/;

/** The one form `gcp-kms` accepts, for messages. */
export const GCP_KEY_ID_RULE =
  "Cloud KMS key ids are full CryptoKey names: projects/<project>/locations/<location>/keyRings/<key ring>/cryptoKeys/<key> " +
  "(not a CryptoKeyVersion: the primary version encrypts, and each ciphertext names its own version)";

/** Why Cloud KMS could never resolve `keyId` as a CryptoKey, or undefined when it is one. */
export function gcpKeyIdProblem(keyId: string): string | undefined {
  return typeof keyId === "string" && KEY_NAME.test(keyId) ? undefined : GCP_KEY_ID_RULE;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
