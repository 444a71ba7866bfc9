/**
 * `kms rotate`: one tenant's key now (`--tenant`, @kms/rotation's `rotateKeyNow`: whatever the key's
 * age, even when its provider reports no dates), or every configured key whose current version is
 * older than the cryptoperiod (`--all-due`, one pass of @kms/rotation's scheduler, crash recovery
 * included). Both take the key's lease and write the same evidence records (`key.rotation-started`,
 * then `key.rotated` or `key.rotation-failed`) in the file evidence log.
 */
import { docsUrlFor, PUBLIC_MESSAGES, tenantIdProblem, type KmsErrorCode } from "@kms/core";
import { createRotationScheduler, embeddedLocks, rotateKeyNow, type PassSummary, type RotateKeyNowOptions, type RotationEvent, type TenantKey } from "@kms/rotation";
import { CONFIG_FLAG, bool, int, str, type Command, type Flags } from "../command";
import { closeProviders, configLocation, localStorePath, readConfig, validate, type ValidatedConfig } from "../config";
import { CliError, EXIT, UsageError } from "../errors";
import { EVIDENCE_ACTOR, evidencePath, hmacKeyOf, openEvidence } from "../evidence-file";
import { err, out, paint, withSpinner } from "../output";

const DAY_MS = 86_400_000;
/** How the default key shows as a tenant: it serves every tenant without a key of its own. */
export const DEFAULT_TENANT = "(default)";

/** The tenant keys of a configuration: each `tenants.keys` entry, and the default key. */
function configuredTenants(config: ValidatedConfig["config"]): TenantKey[] {
  const tenants: TenantKey[] = Object.entries(config.tenants.keys).map(([tenantId, k]) => ({ tenantId, provider: k.provider, keyId: k.keyId }));
  const d = config.tenants.defaultKey;
  if (d !== undefined) tenants.push({ tenantId: DEFAULT_TENANT, provider: d.provider, keyId: d.keyId });
  return tenants;
}

function tenantKey(config: ValidatedConfig["config"], tenantId: string): TenantKey {
  const problem = tenantIdProblem(tenantId);
  if (problem !== undefined) throw new CliError(`--tenant: ${problem}`, EXIT.USAGE, "INPUT_INVALID");
  const own = config.tenants.keys[tenantId] ?? config.tenants.defaultKey;
  if (own === undefined) throw new CliError("the tenant has no key in the configuration (no tenants.keys entry and no tenants.defaultKey)", EXIT.USAGE, "KMS_CONFIG_INVALID");
  return { tenantId, provider: own.provider, keyId: own.keyId };
}

/**
 * `--tenant`: `rotateKeyNow`, its outcome told as a one-key pass, so both forms print alike. A failure
 * is reported by its `rotation.failed` event, as in a pass; an error without one (a `key.rotated`
 * record the log refused) is the CLI's error. The lock is embedded, as `--all-due`'s: a server on the
 * same evidence file is kept off by the file's single-writer lock.
 */
async function rotateOne(options: Omit<RotateKeyNowOptions, "locks">, events: readonly RotationEvent[]): Promise<PassSummary> {
  const summary = { examined: 1, due: 1, rotated: 0, skipped: 0, failed: 0, deferred: 0, recovered: 0 };
  try {
    const result = await rotateKeyNow({ ...options, locks: embeddedLocks() });
    return { ...summary, ...(result.status === "busy" ? { skipped: 1 } : { rotated: 1 }) };
  } catch (error) {
    if (!events.some((e) => e.type === "rotation.failed")) throw error;
    return { ...summary, failed: 1 };
  }
}

async function rotate(flags: Flags): Promise<number> {
  const tenant = str(flags, "tenant");
  const allDue = bool(flags, "all-due");
  if ((tenant === undefined) === !allDue) throw new UsageError("give exactly one of --tenant T and --all-due");
  const json = bool(flags, "json");
  const days = int(flags, "cryptoperiod-days", 1, 3650);
  // `--tenant` rotates whatever the key's age: a cryptoperiod would be silently ignored.
  if (tenant !== undefined && days !== undefined) throw new UsageError("--cryptoperiod-days applies to --all-due only (--tenant rotates now, whatever the key's age)");
  const hmacKey = hmacKeyOf(flags);
  const raw = readConfig(configLocation(str(flags, "config")));
  const validated = validate(raw);
  const events: RotationEvent[] = [];
  const onEvent = (event: RotationEvent) => events.push(event);
  const providers = Object.fromEntries(validated.providers);
  let summary: PassSummary;
  let one: TenantKey | undefined;
  try {
    one = tenant !== undefined ? tenantKey(validated.config, tenant) : undefined;
    const evidence = await openEvidence(evidencePath(flags, localStorePath(raw)), hmacKey);
    try {
      summary = await withSpinner("rotating", () =>
        one !== undefined
          ? rotateOne({ providers, tenant: one, evidence, actor: EVIDENCE_ACTOR, onEvent }, events)
          : createRotationScheduler({
              providers,
              tenants: configuredTenants(validated.config),
              evidence,
              cryptoperiodMs: (days ?? validated.config.rotation.cryptoperiodDays) * DAY_MS,
              actor: EVIDENCE_ACTOR,
              onEvent,
            }).runOnce(),
      );
    } finally {
      await evidence.close();
    }
  } finally {
    await closeProviders(validated);
  }
  const rotated = events.flatMap((e) => (e.type === "rotation.succeeded" ? [e] : []));
  const failed = events.flatMap((e) => (e.type === "rotation.failed" ? [e] : []));
  /** `--tenant` found the key's lease held. */
  const busy = one !== undefined && summary.skipped > 0 ? one : undefined;
  if (json) {
    out(JSON.stringify({
      ok: failed.length === 0 && !busy,
      rotated: rotated.map(({ tenantId, provider, keyId, previousVersion, currentVersion, recovered }) => ({ tenantId, provider, keyId, previousVersion, currentVersion, recovered })),
      failed: failed.map(({ tenantId, provider, keyId, code }) => ({ tenantId, provider, keyId, code })),
      summary,
    }));
  } else {
    const stdout = process.stdout;
    for (const r of rotated) out(`${paint(stdout, "green", "rotated")} ${r.tenantId} ${r.provider} ${r.keyId} ${r.previousVersion} → ${r.currentVersion}${r.recovered ? " (recovered)" : ""}`);
    for (const f of failed) {
      const code = f.code as KmsErrorCode;
      const text = PUBLIC_MESSAGES[code] ?? PUBLIC_MESSAGES.KMS_PROVIDER_ERROR;
      err(`${paint(process.stderr, "red", "failed")} ${f.tenantId} ${f.provider} ${f.keyId} ${code}: ${text} (${docsUrlFor(code)})`);
    }
    if (busy) err(`${paint(process.stderr, "red", "busy")} ${busy.tenantId} ${busy.provider} ${busy.keyId}: another process is rotating this key; retry shortly`);
    out(`${summary.examined} keys examined, ${summary.due} due, ${summary.rotated} rotated, ${summary.skipped} skipped, ${summary.failed} failed`);
  }
  return failed.length === 0 && !busy ? EXIT.OK : EXIT.FAILED;
}

export const rotateCommand: Command = {
  name: "rotate",
  summary:
    "Rotates one tenant's key now, or every configured key that is due.\n" +
    "Due: older than the cryptoperiod (rotation.cryptoperiodDays, default 90; --cryptoperiod-days overrides).\n" +
    "Each rotation is recorded in the evidence log.",
  usage: "rotate (--tenant T | --all-due [--cryptoperiod-days N]) [--config F] [--evidence F] [--hmac-key-env VAR] [--json]",
  flags: {
    tenant: { type: "string", value: "T", help: "rotate this tenant's key now (its own, else the default key)" },
    "all-due": { type: "boolean", help: "rotate every configured key that is due" },
    config: CONFIG_FLAG,
    evidence: { type: "string", value: "F", help: "evidence log (default: evidence.jsonl next to the local key store, else .kms/evidence.jsonl)" },
    "cryptoperiod-days": { type: "string", value: "N", help: "--all-due: override rotation.cryptoperiodDays (1 to 3650)" },
    "hmac-key-env": { type: "string", value: "VAR", help: "environment variable holding the evidence log's HMAC key" },
    json: { type: "boolean", help: "print one JSON document" },
  },
  run: rotate,
};
