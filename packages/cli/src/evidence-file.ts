/**
 * The evidence log the CLI writes to and exports from: `--evidence F`, else the server's default
 * (@kms/rotation's `defaultEvidenceFile`: next to the local key store, else .kms/evidence.jsonl),
 * and the HMAC key, read from the environment variable `--hmac-key-env` names (never a flag value).
 */
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { isKmsError } from "@kms/core";
import { createEvidenceLog, defaultEvidenceFile, MIN_HMAC_KEY_BYTES, openFileEvidenceStore, type EvidenceLog } from "@kms/rotation";
import { str, type Flags } from "./command";
import { CliError, EXIT, UsageError } from "./errors";

/** The `actor` of the evidence records the CLI writes. */
export const EVIDENCE_ACTOR = "kms-cli";

export function evidencePath(flags: Flags, localStore: string | undefined): string {
  const given = str(flags, "evidence");
  return given !== undefined ? given : defaultEvidenceFile(localStore, process.cwd());
}

/** The key in the variable `--hmac-key-env` names; undefined without the flag. Messages never show it. */
export function hmacKeyOf(flags: Flags): Buffer | undefined {
  const name = str(flags, "hmac-key-env");
  if (name === undefined) return undefined;
  if (!/^[A-Za-z_][A-Za-z0-9_]{0,127}$/.test(name)) throw new UsageError("--hmac-key-env must name an environment variable");
  const value = process.env[name];
  if (value === undefined || value === "") throw new CliError(`environment variable ${name} (--hmac-key-env) is not set`, EXIT.USAGE);
  const bytes = Buffer.byteLength(value, "utf8");
  if (bytes < MIN_HMAC_KEY_BYTES) throw new CliError(`the HMAC key in ${name} must be at least ${MIN_HMAC_KEY_BYTES} bytes, it is ${bytes}`, EXIT.USAGE);
  return Buffer.from(value, "utf8");
}

/** Opens the log for writing (its file store takes the single-writer lock). */
export async function openEvidence(path: string, hmacKey: Buffer | undefined): Promise<EvidenceLog> {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  try {
    const store = await openFileEvidenceStore({ path });
    return createEvidenceLog({ store, ...(hmacKey === undefined ? {} : { hmacKey }) });
  } catch (error) {
    if (isKmsError(error) && error.code === "KMS_CONFIG_INVALID") {
      throw new CliError(`the evidence file ${path} is open for writing by another process (a running server?): stop it, or use its export`, EXIT.USAGE);
    }
    throw error;
  }
}
