/**
 * `kms evidence export` and `kms evidence verify`, over @kms/rotation's export and offline checks.
 * The HMAC key (record MACs, manifest signature) is read from the environment variable
 * `--hmac-key-env` names, never from a flag value.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { exportEvidence, readEvidenceFile, verifyEvidence, verifyExport, type EvidenceManifest, type ExportFormat } from "@kms/rotation";
import { str, type Command, type Flags } from "../command";
import { CliError, EXIT, UsageError } from "../errors";
import { hmacKeyOf, openEvidence } from "../evidence-file";
import { err, out } from "../output";

function isoFlag(flags: Flags, name: string): string | undefined {
  const value = str(flags, name);
  if (value === undefined) return undefined;
  if (!/^\d{4}-\d{2}-\d{2}(T[\d:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(value) || Number.isNaN(Date.parse(value))) {
    throw new UsageError(`--${name} must be an ISO 8601 date or time, e.g. 2025-01-31 or 2025-01-31T12:00:00Z`);
  }
  return value;
}

async function exportCommandRun(flags: Flags): Promise<number> {
  const path = str(flags, "evidence");
  if (path === undefined) throw new UsageError("missing --evidence");
  const format = (str(flags, "format") ?? "jsonl") as ExportFormat;
  if (format !== "jsonl" && format !== "csv") throw new UsageError("--format must be jsonl or csv");
  const tenantId = str(flags, "tenant");
  const since = isoFlag(flags, "since");
  const until = isoFlag(flags, "until");
  const hmacKey = hmacKeyOf(flags);
  const outPath = str(flags, "out");
  if (!existsSync(path)) throw new CliError(`no evidence log at ${path}`, EXIT.USAGE);
  const log = await openEvidence(path, undefined);
  let result;
  try {
    result = await exportEvidence(log, {
      format,
      filter: { ...(tenantId === undefined ? {} : { tenantId }), ...(since === undefined ? {} : { since }), ...(until === undefined ? {} : { until }) },
      ...(hmacKey === undefined ? {} : { hmacKey }),
      generator: "kms-cli",
    });
  } finally {
    await log.close();
  }
  const manifest = `${JSON.stringify(result.manifest, null, 2)}\n`;
  if (outPath === undefined) {
    process.stdout.write(result.content);
    err(`exported ${result.manifest.count} records (no manifest written: pass --out F to get F.manifest.json)`);
  } else {
    writeFileSync(outPath, result.content, { mode: 0o600 });
    writeFileSync(`${outPath}.manifest.json`, manifest, { mode: 0o600 });
    out(`exported ${result.manifest.count} records to ${outPath} (manifest ${outPath}.manifest.json)`);
  }
  return EXIT.OK;
}

function readText(path: string, flag: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (error) {
    throw new CliError(`cannot read --${flag} ${path} (${(error as NodeJS.ErrnoException).code ?? "unreadable"})`, EXIT.USAGE);
  }
}

type Bad = { seq?: number; position?: number; reason: string } | undefined;

function verdict(ok: boolean, count: number, bad: Bad): number {
  if (ok) {
    out(`OK ${count} records`);
    return EXIT.OK;
  }
  out(`BAD seq=${bad?.seq ?? "-"} position=${bad?.position ?? "-"} reason=${bad?.reason ?? "unknown"}`);
  return EXIT.FAILED;
}

async function verifyCommandRun(flags: Flags): Promise<number> {
  const evidence = str(flags, "evidence");
  const exported = str(flags, "export");
  const manifestPath = str(flags, "manifest");
  if ((evidence === undefined) === (exported === undefined)) throw new UsageError("give either --evidence F, or --export F --manifest M");
  if (exported !== undefined && manifestPath === undefined) throw new UsageError("--export needs --manifest M");
  if (evidence !== undefined && manifestPath !== undefined) throw new UsageError("--manifest goes with --export, not --evidence");
  const hmacKey = hmacKeyOf(flags);
  const options = hmacKey === undefined ? {} : { hmacKey };
  if (evidence !== undefined) {
    readText(evidence, "evidence"); // readable at all: a clear error rather than a stream failure
    const result = await verifyEvidence(readEvidenceFile(evidence), options);
    return verdict(result.ok, result.count, result.firstBad);
  }
  const content = readText(exported!, "export");
  let manifest: EvidenceManifest;
  try {
    manifest = JSON.parse(readText(manifestPath!, "manifest")) as EvidenceManifest;
  } catch (error) {
    if (error instanceof CliError) throw error;
    return verdict(false, 0, { reason: "manifest" });
  }
  const result = await verifyExport(content, manifest, options);
  return verdict(result.ok, result.count, result.firstBad);
}

const hmacFlag = { type: "string", value: "VAR", help: "environment variable holding the log's HMAC key (at least 32 bytes)" } as const;

export const evidenceExportCommand: Command = {
  name: "evidence export",
  summary:
    "Exports evidence records (JSON Lines or CSV) with a manifest.\n" +
    "The manifest (count, ends, content SHA-256, HMAC signature with a key) goes to F.manifest.json next to --out F.",
  usage: "evidence export --evidence F [--format jsonl|csv] [--tenant T] [--since ISO] [--until ISO] [--out F] [--hmac-key-env VAR]",
  flags: {
    evidence: { type: "string", value: "F", help: "the evidence log (JSON Lines) (required)" },
    format: { type: "string", value: "jsonl|csv", help: "export format (default: jsonl)" },
    tenant: { type: "string", value: "T", help: "only this tenant's records" },
    since: { type: "string", value: "ISO", help: "only records at or after this time" },
    until: { type: "string", value: "ISO", help: "only records before this time" },
    out: { type: "string", value: "F", help: "write the export here and its manifest to F.manifest.json (default: stdout, no manifest)" },
    "hmac-key-env": hmacFlag,
  },
  run: exportCommandRun,
};

export const evidenceVerifyCommand: Command = {
  name: "evidence verify",
  summary: "Checks an evidence log, or an export against its manifest.\nPrints OK N records, or BAD and the first bad record (exit 1).",
  usage: "evidence verify (--evidence F | --export F --manifest M) [--hmac-key-env VAR]",
  flags: {
    evidence: { type: "string", value: "F", help: "an evidence log (JSON Lines) to check as a whole chain" },
    export: { type: "string", value: "F", help: "an export to check" },
    manifest: { type: "string", value: "M", help: "the export's manifest" },
    "hmac-key-env": hmacFlag,
  },
  run: verifyCommandRun,
};

