import { afterAll, beforeAll, describe, expect, it } from "@jest/globals";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { docsUrlFor } from "@kms/core";
import { openFileEvidenceStore } from "@kms/rotation";
import { AwsKmsEmulator } from "@kms/testkit/emulators";
import { kms } from "./run";

const PERMISSIONS = ["kms:DescribeKey", "kms:ListKeyRotations", "kms:GenerateDataKey", "kms:Encrypt", "kms:Decrypt"];
const PASSED = [...PERMISSIONS.map((p) => `PASS aws-kms alias/app ${p}`), "5 checks: 5 passed, 0 failed", ""].join("\n");
const HMAC_KEY = "an evidence hmac key of 32+ bytes, for validate";
const HEX64 = expect.stringMatching(/^[0-9a-f]{64}$/);

let dir: string;
let emulator: AwsKmsEmulator;
let env: Record<string, string>;
let config: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "kms-cli-validate-evidence-"));
  emulator = new AwsKmsEmulator();
  await emulator.start();
  emulator.createKey({ alias: "alias/app" });
  const { region, endpoint, credentials } = emulator.clientConfig();
  env = { AWS_ACCESS_KEY_ID: credentials.accessKeyId, AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey };
  config = join(dir, "aws.json");
  writeFileSync(config, JSON.stringify({ providers: { "aws-kms": { region, endpoint } }, tenants: { defaultKey: { provider: "aws-kms", keyId: "alias/app" } } }));
});

afterAll(async () => {
  await emulator.stop();
  rmSync(dir, { recursive: true, force: true });
});

function records(path: string): Record<string, unknown>[] {
  return readFileSync(path, "utf8").trimEnd().split("\n").map((line) => JSON.parse(line) as Record<string, unknown>);
}

/** Exactly the server's record (@kms/rotation's `permissionsValidatedEvent`), numbered and chained. */
function record(seq: number, outcome: "success" | "failure", details: { keys: number; checks: number; failed: number }, mac = false) {
  return {
    seq,
    time: expect.stringMatching(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/),
    type: "permissions.validated",
    actor: "kms-cli",
    outcome,
    details,
    prevHash: seq === 1 ? "0".repeat(64) : HEX64,
    hash: HEX64,
    ...(mac ? { mac: HEX64 } : {}),
  };
}

describe("kms validate --evidence F", () => {
  const log = () => join(dir, "plain", "evidence.jsonl");

  it("a passing validate prints what it always does and appends one success record; the log verifies", async () => {
    const result = await kms(["validate", "--config", config, "--evidence", log()], { cwd: dir, env });
    expect(result).toEqual({ code: 0, stdout: PASSED, stderr: "" });
    expect(records(log())).toEqual([record(1, "success", { keys: 1, checks: 5, failed: 0 })]);
    expect(await kms(["evidence", "verify", "--evidence", log()], { cwd: dir })).toEqual({ code: 0, stdout: "OK 1 records\n", stderr: "" });

    // Without --evidence nothing is written, not even to the default log rotate would use.
    expect(await kms(["validate", "--config", config], { cwd: dir, env })).toEqual({ code: 0, stdout: PASSED, stderr: "" });
    expect(existsSync(join(dir, ".kms"))).toBe(false);
    expect(records(log())).toHaveLength(1);
  });

  it("a failing validate (exit 1) appends one failure record with counts only, never the provider's message", async () => {
    const { accessKeyId } = emulator.clientConfig().credentials;
    emulator.setAllowedActions(accessKeyId, ["kms:DescribeKey", "kms:ListKeyRotations", "kms:Encrypt", "kms:Decrypt"]);
    let result;
    try {
      result = await kms(["validate", "--config", config, "--evidence", log()], { cwd: dir, env });
    } finally {
      emulator.setAllowedActions(accessKeyId, "*");
    }
    expect(result.code).toBe(1);
    expect(result.stdout.trimEnd().split("\n").at(-1)).toBe("5 checks: 4 passed, 1 failed");
    const all = records(log());
    expect(all).toEqual([record(1, "success", { keys: 1, checks: 5, failed: 0 }), record(2, "failure", { keys: 1, checks: 5, failed: 1 })]);
    expect(all[1]!.prevHash).toBe(all[0]!.hash);
    const text = readFileSync(log(), "utf8");
    const remediation = /— (.+) \(https:/.exec(result.stdout)![1]!;
    for (const secret of [remediation, "is not authorized", "GenerateDataKey", "alias/app", accessKeyId, env.AWS_SECRET_ACCESS_KEY!]) expect(text).not.toContain(secret);
    expect(await kms(["evidence", "verify", "--evidence", log()], { cwd: dir })).toEqual({ code: 0, stdout: "OK 2 records\n", stderr: "" });
  });

  it("an unreachable KMS (exit 3) is recorded too: the checks ran and every one failed", async () => {
    const down = join(dir, "down.json");
    writeFileSync(
      down,
      JSON.stringify({
        providers: { "aws-kms": { region: "us-east-1", endpoint: "http://127.0.0.1:9" } },
        tenants: { defaultKey: { provider: "aws-kms", keyId: "alias/app" } },
        resilience: { retry: { maxAttempts: 1 } },
      }),
    );
    const path = join(dir, "down", "evidence.jsonl");
    const result = await kms(["validate", "--config", down, "--evidence", path], { cwd: dir, env });
    expect(result.code).toBe(3);
    expect(records(path)).toEqual([record(1, "failure", { keys: 1, checks: 5, failed: 5 })]);
  });

  it("--hmac-key-env VAR MACs the record; the log verifies with and without the key, not with another", async () => {
    const path = join(dir, "maced", "evidence.jsonl");
    const withKey = { ...env, EVIDENCE_KEY: HMAC_KEY };
    const result = await kms(["validate", "--config", config, "--evidence", path, "--hmac-key-env", "EVIDENCE_KEY"], { cwd: dir, env: withKey });
    expect(result).toEqual({ code: 0, stdout: PASSED, stderr: "" });
    expect(records(path)).toEqual([record(1, "success", { keys: 1, checks: 5, failed: 0 }, true)]);
    expect(readFileSync(path, "utf8")).not.toContain(HMAC_KEY);
    const verify = ["evidence", "verify", "--evidence", path];
    expect(await kms([...verify, "--hmac-key-env", "EVIDENCE_KEY"], { cwd: dir, env: { EVIDENCE_KEY: HMAC_KEY } })).toEqual({ code: 0, stdout: "OK 1 records\n", stderr: "" });
    expect(await kms(verify, { cwd: dir })).toEqual({ code: 0, stdout: "OK 1 records\n", stderr: "" });
    const other = { EVIDENCE_KEY: "another key of thirty-two bytes or more" };
    expect(await kms([...verify, "--hmac-key-env", "EVIDENCE_KEY"], { cwd: dir, env: other })).toEqual({ code: 1, stdout: "BAD seq=1 position=1 reason=mac\n", stderr: "" });
  });
});

describe("kms validate --evidence: nothing checked, nothing recorded (exit 2)", () => {
  it("a configuration error", async () => {
    const bad = join(dir, "bad.json");
    writeFileSync(bad, JSON.stringify({ providers: { "aws-kms": { region: "nowhere" } }, tenants: { defaultKey: { provider: "aws-kms", keyId: "alias/app" } } }));
    const path = join(dir, "bad", "evidence.jsonl");
    const result = await kms(["validate", "--config", bad, "--evidence", path], { cwd: dir, env });
    expect(result.code).toBe(2);
    expect(result.stderr.split("\n")[0]).toBe(`KMS_CONFIG_INVALID providers.aws-kms.region: must be an AWS region such as us-east-1 (${docsUrlFor("KMS_CONFIG_INVALID")})`);
    expect(existsSync(join(dir, "bad"))).toBe(false);
  });

  it("--hmac-key-env without --evidence, or naming an unset variable", async () => {
    const alone = await kms(["validate", "--config", config, "--hmac-key-env", "EVIDENCE_KEY"], { cwd: dir, env: { ...env, EVIDENCE_KEY: HMAC_KEY } });
    expect(alone).toEqual({
      code: 2,
      stdout: "",
      stderr: "kms validate: --hmac-key-env goes with --evidence F\nUsage: kms validate [--config F] [--json] [--evidence F [--hmac-key-env VAR]]\nRun `kms validate --help` for details.\n",
    });
    const path = join(dir, "unset", "evidence.jsonl");
    const unset = await kms(["validate", "--config", config, "--evidence", path, "--hmac-key-env", "EVIDENCE_KEY"], { cwd: dir, env });
    expect(unset).toEqual({ code: 2, stdout: "", stderr: "error: environment variable EVIDENCE_KEY (--hmac-key-env) is not set\n" });
    expect(existsSync(join(dir, "unset"))).toBe(false);
  });

  it("a log another writer (a server) holds: a clear error before any KMS call", async () => {
    const path = join(dir, "held", "evidence.jsonl");
    expect((await kms(["validate", "--config", config, "--evidence", path], { cwd: dir, env })).code).toBe(0);
    const before = readFileSync(path, "utf8");
    const server = await openFileEvidenceStore({ path });
    try {
      emulator.resetLog();
      const result = await kms(["validate", "--config", config, "--evidence", path, "--json"], { cwd: dir, env });
      expect(result).toEqual({
        code: 2,
        stdout: "",
        stderr: `error: the evidence file ${path} is open for writing by another process (a running server?): stop it, or use its export\n`,
      });
      expect(emulator.count()).toBe(0);
    } finally {
      await server.close();
    }
    expect(readFileSync(path, "utf8")).toBe(before);
  });
});
