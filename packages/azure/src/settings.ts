/**
 * Settings of `providers["azure-key-vault"]` in configuration, and the key-id syntax this provider
 * accepts. Both are checked without any network access (core calls them at start-up). A credential
 * is not a setting: it cannot come from a JSON file, so `azureKeyVault()` uses DefaultAzureCredential
 * (its environment) or takes one in code, `azureKeyVault({ credential })`.
 *
 * Hand-written rather than zod: `zod` is not a dependency of this package.
 */
import type { SettingsResult } from "@kms/core";

/** The wrapping algorithms: RSA-OAEP-256 for RSA keys, A256KW for Managed HSM `oct-HSM` keys. */
export const AZURE_ALGORITHMS = ["RSA-OAEP-256", "A256KW"] as const;
export type AzureWrapAlgorithm = (typeof AZURE_ALGORITHMS)[number];

/** What configuration may set for the `azure-key-vault` provider. */
export interface AzureKeyVaultSettings {
  /** The vault (`https://<name>.vault.azure.net`) or Managed HSM (`https://<name>.managedhsm.azure.net`). HTTPS only. */
  readonly vaultUrl: string;
  /** How data keys are wrapped; default `RSA-OAEP-256`. */
  readonly algorithm?: AzureWrapAlgorithm;
  /** The deadline of each Key Vault request, in ms (a retryable `KMS_TIMEOUT` when passed). Default 10 000. */
  readonly timeoutMs?: number;
  /** PEM certificate(s) to trust for this vault only (a private CA, an emulator). Default: Node's CAs. */
  readonly ca?: string;
  /**
   * Accept a challenge whose resource is not the vault's own domain. Only for hosts that are not
   * `*.vault.azure.net` / `*.managedhsm.azure.net` (an emulator on 127.0.0.1). Default false.
   */
  readonly disableChallengeResourceVerification?: boolean;
}

type Issue = { path: string; message: string };

export const DEFAULT_TIMEOUT_MS = 10_000;
const MAX_TIMEOUT_MS = 600_000;
const SETTINGS = new Set(["vaultUrl", "algorithm", "timeoutMs", "ca", "disableChallengeResourceVerification"]);
const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/;

/** Validates raw settings; every problem is reported with its path, and no value is ever echoed. */
export function parseAzureKeyVaultSettings(raw: unknown): SettingsResult<AzureKeyVaultSettings> {
  if (!isRecord(raw)) return { ok: false, issues: [{ path: "", message: "must be an object with at least a vaultUrl" }] };
  const issues: Issue[] = [];
  for (const key of Object.keys(raw)) {
    if (SETTINGS.has(key)) continue;
    issues.push({
      path: key,
      message:
        key === "credential"
          ? "a credential cannot come from configuration: azureKeyVault() uses DefaultAzureCredential (its environment), or pass one in code, azureKeyVault({ credential })"
          : "unknown setting (expected vaultUrl, algorithm, timeoutMs, ca, disableChallengeResourceVerification)",
    });
  }
  const { vaultUrl, algorithm, timeoutMs, ca, disableChallengeResourceVerification } = raw;
  const urlProblem = vaultUrlProblem(vaultUrl);
  if (urlProblem !== undefined) issues.push({ path: "vaultUrl", message: urlProblem });
  if (algorithm !== undefined && !(AZURE_ALGORITHMS as readonly unknown[]).includes(algorithm)) {
    issues.push({ path: "algorithm", message: `must be one of ${AZURE_ALGORITHMS.join(", ")}` });
  }
  if (timeoutMs !== undefined && !(Number.isInteger(timeoutMs) && (timeoutMs as number) > 0 && (timeoutMs as number) <= MAX_TIMEOUT_MS)) {
    issues.push({ path: "timeoutMs", message: `must be a whole number of milliseconds, 1 to ${MAX_TIMEOUT_MS}` });
  }
  if (ca !== undefined && (typeof ca !== "string" || !PEM_CERTIFICATE.test(ca))) issues.push({ path: "ca", message: "must be PEM certificate text (-----BEGIN CERTIFICATE-----…)" });
  if (disableChallengeResourceVerification !== undefined && typeof disableChallengeResourceVerification !== "boolean") {
    issues.push({ path: "disableChallengeResourceVerification", message: "must be true or false" });
  }
  if (issues.length > 0) return { ok: false, issues };
  return {
    ok: true,
    settings: {
      vaultUrl: new URL(vaultUrl as string).origin,
      ...(algorithm === undefined ? {} : { algorithm: algorithm as AzureWrapAlgorithm }),
      ...(timeoutMs === undefined ? {} : { timeoutMs: timeoutMs as number }),
      ...(ca === undefined ? {} : { ca: ca as string }),
      ...(disableChallengeResourceVerification === undefined ? {} : { disableChallengeResourceVerification: disableChallengeResourceVerification as boolean }),
    },
  };
}

function vaultUrlProblem(vaultUrl: unknown): string | undefined {
  const rule = "must be the vault's https URL, such as https://my-vault.vault.azure.net";
  if (typeof vaultUrl !== "string") return rule;
  let url: URL;
  try {
    url = new URL(vaultUrl);
  } catch {
    return rule;
  }
  // Bearer tokens travel with every request: never over plain HTTP.
  if (url.protocol !== "https:") return `${rule} (https only: the access token travels with every request)`;
  if (url.username !== "" || url.password !== "") return "must not carry credentials";
  if ((url.pathname !== "/" && url.pathname !== "") || url.search !== "" || url.hash !== "") return `${rule}, with no path, query or fragment`;
  return undefined;
}

const KEY_ID = /^([0-9A-Za-z-]{1,127})(?:\/([0-9a-f]{32}))?$/;

/** How key ids look, for messages. */
export const AZURE_KEY_ID_RULE =
  "Azure Key Vault key ids are a key name in the configured vault (1-127 letters, digits and dashes), " +
  "optionally pinned to one version as <name>/<32 hex digit version>";

/** A key id split into the key name and the pinned version (undefined: the current version). */
export function parseAzureKeyId(keyId: unknown): { name: string; version?: string } | undefined {
  const m = typeof keyId === "string" ? KEY_ID.exec(keyId) : null;
  if (m === null) return undefined;
  return m[2] === undefined ? { name: m[1]! } : { name: m[1]!, version: m[2] };
}

/** Why this provider could never use `keyId`, or undefined. */
export function azureKeyIdProblem(keyId: string): string | undefined {
  return parseAzureKeyId(keyId) === undefined ? AZURE_KEY_ID_RULE : undefined;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
