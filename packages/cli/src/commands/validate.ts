/**
 * `kms validate`: the configuration, then every configured key's permissions through core's
 * `validatePermissions` (the checks the server's POST /admin/validate-kms runs), one line per check.
 */
import { publicPermissionReport, type KmsErrorCode, type PublicPermissionReport } from "@kms/core";
import { bool, str, type Command } from "../command";
import { configLocation, openKms, readConfig } from "../config";
import { EXIT, ConfigProblem } from "../errors";
import { out, paint, withSpinner } from "../output";

/** The codes that mean "the KMS did not answer": exit 3, the permissions are unknown. */
const UNREACHABLE: ReadonlySet<string> = new Set<KmsErrorCode>(["KMS_UNAVAILABLE", "KMS_TIMEOUT", "KMS_CIRCUIT_OPEN"]);

/** Runs the checks for the configuration at `configFlag`; prints and returns the exit code. */
export async function runValidate(configFlag: string | undefined, json: boolean): Promise<number> {
  let report: PublicPermissionReport;
  try {
    const kms = openKms(readConfig(configLocation(configFlag)));
    try {
      report = publicPermissionReport(await withSpinner("checking permissions", () => kms.validatePermissions()));
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

export const validateCommand: Command = {
  name: "validate",
  summary:
    "Checks the configuration, then every configured key's permissions (real, harmless calls).\n" +
    "Exit 0: all pass; 1: a check failed; 2: configuration error; 3: the KMS is unreachable.",
  usage: "validate [--config F] [--json]",
  flags: {
    config: { type: "string", value: "F", help: "configuration file (default: $KMS_CONFIG_FILE, else ./kms.config.json)" },
    json: { type: "boolean", help: "print one JSON document (the shape of the server's /admin/validate-kms)" },
  },
  run: (flags) => runValidate(str(flags, "config"), bool(flags, "json")),
};
