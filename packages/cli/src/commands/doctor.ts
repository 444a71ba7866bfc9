/**
 * `kms doctor`: what this machine and configuration look like to the toolkit, one line per check:
 * `ok`, `FAIL` or `info`, then the subject and what was found. Exit 0 when nothing failed.
 */
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { CONFIG_FLAG, bool, str, type Command, type Flags } from "../command";
import { configLocation, openKms, readConfig, REGISTRY } from "../config";
import { ConfigProblem, EXIT, issueLine } from "../errors";
import { out, paint, withSpinner } from "../output";

export const MIN_NODE = [20, 15] as const;
/** The packages the CLI loads (core and the configurable providers) and rotation. */
const PACKAGES = ["@kms/core", "@kms/aws", "@kms/vault", "@kms/gcp", "@kms/azure", "@kms/rotation"];
/** Past this, SigV4 signatures (AWS) are refused and tokens misjudged: a clock to fix. */
const MAX_SKEW_S = 300;

type Status = "ok" | "FAIL" | "info";
interface Check {
  status: Status;
  subject: string;
  detail: string;
}

function nodeCheck(): Check {
  const [major = 0, minor = 0] = process.versions.node.split(".").map(Number);
  const ok = major > MIN_NODE[0] || (major === MIN_NODE[0] && minor >= MIN_NODE[1]);
  return { status: ok ? "ok" : "FAIL", subject: "node", detail: `v${process.versions.node} (needs >=${MIN_NODE.join(".")})` };
}

function packageChecks(): Check[] {
  const require = createRequire(__filename);
  const checks: Check[] = PACKAGES.map((name) => {
    try {
      require.resolve(name);
      return { status: "ok", subject: name, detail: "resolves" };
    } catch {
      return { status: "FAIL", subject: name, detail: `does not resolve: install it (pnpm add ${name})` };
    }
  });
  return checks;
}

/** Seconds the provider's HTTP `Date` is ahead of (+) or behind (-) this machine, from one plain GET. */
async function skewOf(url: string, timeoutMs: number): Promise<number | undefined> {
  try {
    const before = Date.now();
    const res = await fetch(url, { method: "GET", signal: AbortSignal.timeout(timeoutMs), redirect: "manual" });
    await res.body?.cancel();
    const date = res.headers.get("date");
    const at = date === null ? Number.NaN : Date.parse(date);
    if (Number.isNaN(at)) return undefined;
    // The header has whole seconds: compare with the middle of the request, rounded.
    return Math.round((at - (before + Date.now()) / 2) / 1000);
  } catch {
    return undefined;
  }
}

/** Where a provider's HTTP `Date` can be read; undefined when it speaks something else (gRPC) or is local. */
function dateUrl(id: string, settings: Record<string, unknown>): string | undefined {
  if (id === "aws-kms") return typeof settings.endpoint === "string" ? settings.endpoint : `https://kms.${String(settings.region)}.amazonaws.com/`;
  if (id === "vault" && typeof settings.endpoint === "string") return `${settings.endpoint.replace(/\/+$/, "")}/v1/sys/health`;
  return undefined;
}

async function configChecks(configFlag: string | undefined): Promise<Check[]> {
  const location = configLocation(configFlag);
  const where = `${location.path} (${location.source === "default" ? "default path" : location.source})`;
  if (!existsSync(location.path)) return [{ status: "FAIL", subject: "config", detail: `${where}: not found (kms init writes one)` }];
  let raw: Record<string, unknown>;
  let kms;
  try {
    raw = readConfig(location);
    kms = openKms(raw);
  } catch (error) {
    if (!(error instanceof ConfigProblem)) throw error;
    return [
      { status: "FAIL", subject: "config", detail: `${where}: invalid, ${error.issues.length} issue(s)` },
      ...error.issues.map((issue): Check => ({ status: "FAIL", subject: "config", detail: issueLine(issue) })),
    ];
  }
  const checks: Check[] = [{ status: "ok", subject: "config", detail: `${where}: found, valid` }];
  try {
    const providers = raw.providers as Record<string, Record<string, unknown>>;
    const timeoutMs = 5_000;
    const [health, skews] = await withSpinner("checking providers", () =>
      Promise.all([kms.checkHealth(), Promise.all(Object.keys(providers).map(async (id) => {
        const url = dateUrl(id, providers[id] ?? {});
        return [id, url === undefined ? undefined : await skewOf(url, timeoutMs)] as const;
      }))]),
    );
    for (const [id, report] of Object.entries(health.providers)) {
      const insecure = report.insecure ? " (insecure: for development only)" : "";
      checks.push(
        report.healthy
          ? { status: "ok", subject: `provider ${id}`, detail: `reachable, ${report.latencyMs} ms${insecure}` }
          : { status: "FAIL", subject: `provider ${id}`, detail: `not healthy (${report.detail ?? report.lastError?.code ?? "no detail"}), ${report.latencyMs} ms` },
      );
    }
    for (const [id, skew] of skews) {
      checks.push(
        skew === undefined
          ? { status: "info", subject: `clock ${id}`, detail: "not reported" }
          : { status: Math.abs(skew) > MAX_SKEW_S ? "FAIL" : "ok", subject: `clock ${id}`, detail: `skew ${skew > 0 ? "+" : ""}${skew} s` },
      );
    }
  } finally {
    await kms.close();
  }
  checks.push({ status: "info", subject: "cache", detail: "in-process (a shared tier is not configured)" });
  return checks;
}

async function doctor(flags: Flags): Promise<number> {
  const checks = [nodeCheck(), ...packageChecks(), ...(await configChecks(str(flags, "config")))];
  const ok = checks.every((c) => c.status !== "FAIL");
  if (bool(flags, "json")) {
    out(JSON.stringify({ ok, checks }));
  } else {
    const stdout = process.stdout;
    const colour = { ok: "green", FAIL: "red", info: "dim" } as const;
    for (const c of checks) out(`${paint(stdout, colour[c.status], c.status.padEnd(4))} ${c.subject}: ${c.detail}`);
  }
  return ok ? EXIT.OK : EXIT.FAILED;
}

export const doctorCommand: Command = {
  name: "doctor",
  summary:
    "Checks Node, packages, the configuration, each provider's health and clock, and the cache.\n" +
    `Providers this CLI can configure: ${REGISTRY.map((d) => d.id).join(", ")}. Exit 0 when nothing failed.`,
  usage: "doctor [--config F] [--json]",
  flags: {
    config: CONFIG_FLAG,
    json: { type: "boolean", help: "print one JSON document" },
  },
  run: doctor,
};
