/**
 * The configuration file: where it is (`--config`, else KMS_CONFIG_FILE, else ./kms.config.json),
 * read with core's strict reader (which makes a relative `providers.local.path` absolute against the
 * file's directory, as for the reference server). Vault credentials need nothing here: the file names
 * their environment variable, `auth: { tokenFromEnv: "VAULT_TOKEN" }`, and @kms/vault reads it. Then
 * core's `validateConfig` / `createKms` with the same registry as the server. */
import { resolve } from "node:path";
import { awsKms } from "@kms/aws";
import { azureKeyVault } from "@kms/azure";
import {
  createKms,
  isKmsError,
  KmsConfigError,
  localKms,
  readConfigFile,
  validateConfig,
  type KmsClient,
  type ProviderDefinition,
} from "@kms/core";
import { gcpKms } from "@kms/gcp";
import { vaultKms } from "@kms/vault";
import { ConfigProblem } from "./errors";

/**
 * The providers a configuration file may name: the server's registry. Azure Key Vault authenticates
 * with `DefaultAzureCredential` (its environment: service principal, workload or managed identity,
 * Azure CLI…), made only when a configuration uses it.
 */
export const REGISTRY: readonly ProviderDefinition<unknown>[] = [localKms, awsKms, vaultKms, gcpKms, azureKeyVault()];

export type ValidatedConfig = ReturnType<typeof validateConfig>;

export const DEFAULT_CONFIG_FILE = "kms.config.json";

export interface ConfigLocation {
  /** Absolute. */
  readonly path: string;
  readonly source: "--config" | "KMS_CONFIG_FILE" | "default";
}

export function configLocation(flag: string | undefined): ConfigLocation {
  const cwd = process.cwd();
  if (flag !== undefined) return { path: resolve(cwd, flag), source: "--config" };
  const env = process.env.KMS_CONFIG_FILE;
  if (env !== undefined && env !== "") return { path: resolve(cwd, env), source: "KMS_CONFIG_FILE" };
  return { path: resolve(cwd, DEFAULT_CONFIG_FILE), source: "default" };
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The file's object, ready for core (see the module comment); throws ConfigProblem. */
export function readConfig(location: ConfigLocation): Record<string, unknown> {
  const read = readConfigFile(location.path);
  if (!read.ok) throw new ConfigProblem([read.issue]);
  return read.config;
}

function asProblem(error: unknown): never {
  if (error instanceof KmsConfigError || (isKmsError(error) && Array.isArray((error as KmsConfigError).issues))) {
    throw new ConfigProblem((error as KmsConfigError).issues);
  }
  throw error;
}

/** Core's validation, and the providers it creates (no network). Throws ConfigProblem. */
export function validate(raw: Record<string, unknown>): ValidatedConfig {
  try {
    return validateConfig(raw, { registry: REGISTRY, env: process.env });
  } catch (error) {
    return asProblem(error);
  }
}

/** A client over the configuration. Throws ConfigProblem. */
export function openKms(raw: Record<string, unknown>): KmsClient {
  try {
    return createKms({ registry: REGISTRY, config: raw, env: process.env });
  } catch (error) {
    return asProblem(error);
  }
}

/** Closes providers created by `validate` (each holds SDK clients). */
export async function closeProviders(validated: ValidatedConfig): Promise<void> {
  await Promise.allSettled([...validated.providers.values()].map((p) => p.close()));
}

/** The absolute local key store path of a prepared configuration, if it uses the local provider. */
export function localStorePath(raw: Record<string, unknown>): string | undefined {
  const local = isPlainObject(raw.providers) ? raw.providers.local : undefined;
  return isPlainObject(local) && typeof local.path === "string" ? local.path : undefined;
}
