/** The machine and the versions measured, printed at the top of the report. */
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { cpus, loadavg, release, totalmem, type } from "node:os";
import { dirname, join } from "node:path";
import type { MachineInfo } from "./types";

export const MEASURED_PACKAGES = ["@kms/core", "@kms/aws", "@kms/server", "@aws-crypto/client-node", "@aws-sdk/client-kms", "autocannon"] as const;

/** A package's version, from the package.json above its resolved entry point. */
export function packageVersion(name: string): string {
  try {
    return (require(`${name}/package.json`) as { version: string }).version;
  } catch {
    // not exported: find it above the entry point
  }
  try {
    let dir = dirname(require.resolve(name));
    for (;;) {
      const file = join(dir, "package.json");
      if (existsSync(file)) {
        const pkg = JSON.parse(readFileSync(file, "utf8")) as { name?: string; version?: string };
        if (pkg.name === name) return pkg.version ?? "?";
      }
      const parent = dirname(dir);
      if (parent === dir) return "?";
      dir = parent;
    }
  } catch {
    return "not installed";
  }
}

export function machineInfo(): MachineInfo {
  const packages: Record<string, string> = {};
  for (const name of MEASURED_PACKAGES) packages[name] = packageVersion(name);
  let commit: string | undefined;
  try {
    commit = execFileSync("git", ["rev-parse", "--short", "HEAD"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  } catch {
    commit = undefined;
  }
  const cpu = cpus();
  return {
    cpuModel: cpu[0]?.model.trim() ?? "unknown",
    cores: cpu.length,
    ramGiB: Math.round((totalmem() / 1024 ** 3) * 10) / 10,
    os: `${type()} ${release()}`,
    node: process.version,
    openssl: process.versions.openssl ?? "?",
    packages,
    ...(commit ? { commit } : {}),
    date: new Date().toISOString().slice(0, 16).replace("T", " ") + " UTC",
    loadAverage: { start: loadavg()[0]! },
  };
}
