import { afterAll, describe, expect, it } from "@jest/globals";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { docsUrlFor } from "@kms/core";
import { localSetup } from "./local";
import { kms } from "./run";

const { dir, config } = localSetup("doctor");
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const HEAD = [
  `ok   node: v${process.versions.node} (needs >=20.15)`,
  "ok   @kms/core: resolves",
  "ok   @kms/aws: resolves",
  "ok   @kms/vault: resolves",
  "ok   @kms/gcp: resolves",
  "ok   @kms/azure: resolves",
  "ok   @kms/rotation: resolves",
];

describe("kms doctor", () => {
  it("a valid local configuration: every line, exit 0", async () => {
    const result = await kms(["doctor"], { cwd: dir });
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    expect(result.stdout.split("\n")).toEqual([
      ...HEAD,
      `ok   config: ${config} (default path): found, valid`,
      expect.stringMatching(/^ok {3}provider local: reachable, \d+ ms \(insecure: for development only\)$/),
      "info clock local: not reported",
      "info cache: in-process (a shared tier is not configured)",
      "",
    ]);
  });

  it("a broken configuration: the issue, exit 1", async () => {
    const broken = join(dir, "broken.json");
    writeFileSync(broken, JSON.stringify({ providers: { local: {} }, tenants: { defaultKey: { provider: "local", keyId: "default" } }, rotation: { cryptoperiodDays: 0 } }));
    const result = await kms(["doctor", "--config", broken], { cwd: dir });
    expect(result.code).toBe(1);
    expect(result.stdout.split("\n")).toEqual([
      ...HEAD,
      `FAIL config: ${broken} (--config): invalid, 1 issue(s)`,
      `FAIL config: KMS_CONFIG_INVALID rotation.cryptoperiodDays: Too small: expected number to be >=1 (${docsUrlFor("KMS_CONFIG_INVALID")})`,
      "",
    ]);
    const missing = await kms(["doctor"], { cwd: dir, env: { KMS_CONFIG_FILE: "absent.json" } });
    expect(missing.code).toBe(1);
    expect(missing.stdout).toContain(`FAIL config: ${join(dir, "absent.json")} (KMS_CONFIG_FILE): not found (kms init writes one)\n`);
  });
});
