/**
 * `kms validate`: the configuration, then every configured key's permissions through core's
 * `validatePermissions` (the checks the server's POST /admin/validate-kms runs), one line per check.
 * With `--evidence F`, one `permissions.validated` record in that log, as the server writes.
 */
import { publicPermissionReport, type KmsErrorCode, type PublicPermissionReport } from "@kms/core";
import { permissionsValidatedEvent } from "@kms/rotation";
import { CONFIG_FLAG, bool, str, type Command, type Flags } from "../command";
import { configLocation, openKms, readConfig } from "../config";
import { EXIT, ConfigProblem, UsageError } from "../errors";
import { EVIDENCE_ACTOR, hmacKeyOf, openEvidence } from "../evidence-file";
import { out, paint, withSpinner } from "../output";

/** The codes that mean "the KMS did not answer": exit 3, the permissions are unknown. */
const UNREACHABLE: ReadonlySet<string> = new Set<KmsErrorCode>(["KMS_UNAVAILABLE", "KMS_TIMEOUT", "KMS_CIRCUIT_OPEN"]);

/** The evidence log `--evidence` names, and its HMAC key (`--hmac-key-env`). */
export interface EvidenceTarget {
  readonly path: string;
  readonly hmacKey: Buffer | undefined;
}

/**
 * Runs the checks for the configuration at `configFlag`; prints and returns the exit code. With
 * `evidence`, records them whenever they ran: exit 0, 1, and 3 too (unreachable: every check failed).
 * A configuration error, a held log, or a failure of the check itself records nothing.
 */
export async function runValidate(configFlag: string | undefined, json: boolean, evidence?: EvidenceTarget): Promise<number> {
  let report: PublicPermissionReport;
  try {
    const kms = openKms(readConfig(configLocation(configFlag)));
    try {
      // The log's single-writer lock before any KMS call: a server holding it is exit 2, nothing checked.
      const log = evidence === undefined ? undefined : await openEvidence(evidence.path, evidence.hmacKey);
      try {
        report = publicPermissionReport(await withSpinner("checking permissions", () => kms.validatePermissions()));
        await log?.append(permissionsValidatedEvent(report, EVIDENCE_ACTOR));
      } finally {
        await log?.close();
      }
    } finally {
      await kms.close();
    }
  } catch (error) {
    if (json && error instanceof ConfigProblem) {
      out(JSON.stringify({ ok: false, issues: error.issues }));
      return EXIT.USAGE;
    }
    throw error;
  }
  const checks = report.keys.flatMap((k) => k.checks);
  if (json) {
    out(JSON.stringify(report));
  } else {
    const stdout = process.stdout;
    for (const { provider, keyId, checks: keyChecks } of report.keys) {
      for (const c of keyChecks) {
        if (c.ok) {
          out(`${paint(stdout, "green", "PASS")} ${provider} ${keyId} ${c.permission}`);
        } else {
          const fix = c.remediation ?? (c.error ? `${c.error.code}: ${c.error.message}` : "failed");
          out(`${paint(stdout, "red", "FAIL")} ${provider} ${keyId} ${c.permission} — ${fix}${c.docsUrl ? ` (${c.docsUrl})` : ""}`);
        }
      }
    }
    const failed = checks.filter((c) => !c.ok).length;
    out(`${checks.length} checks: ${checks.length - failed} passed, ${failed} failed`);
  }
  if (report.ok) return EXIT.OK;
  return checks.some((c) => !c.ok && c.error !== undefined && UNREACHABLE.has(c.error.code)) ? EXIT.UNREACHABLE : EXIT.FAILED;
}

/** `--evidence F [--hmac-key-env VAR]`, checked before anything runs; undefined without `--evidence`. */
function evidenceTarget(flags: Flags): EvidenceTarget | undefined {
  const path = str(flags, "evidence");
  if (path === undefined) {
    if (str(flags, "hmac-key-env") !== undefined) throw new UsageError("--hmac-key-env goes with --evidence F");
    return undefined;
  }
  return { path, hmacKey: hmacKeyOf(flags) };
}

export const validateCommand: Command = {
  name: "validate",
  summary:
    "Checks the configuration, then every configured key's permissions (real, harmless calls).\n" +
    "With --evidence, records the outcome (counts only) in that evidence log.\n" +
    "Exit 0: all pass; 1: a check failed; 2: configuration error; 3: the KMS is unreachable.",
  usage: "validate [--config F] [--json] [--evidence F [--hmac-key-env VAR]]",
  flags: {
    config: CONFIG_FLAG,
    json: { type: "boolean", help: "print one JSON document (the shape of the server's /admin/validate-kms)" },
    evidence: { type: "string", value: "F", help: "append a permissions.validated record to this evidence log (default: none)" },
    "hmac-key-env": { type: "string", value: "VAR", help: "with --evidence: environment variable holding the log's HMAC key" },
  },
  run: (flags) => runValidate(str(flags, "config"), bool(flags, "json"), evidenceTarget(flags)),
};
