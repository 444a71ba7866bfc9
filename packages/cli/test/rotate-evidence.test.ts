import { afterAll, beforeAll, describe, expect, it } from "@jest/globals";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { docsUrlFor, localKmsProvider, ManualClock, PUBLIC_MESSAGES } from "@kms/core";
import { localSetup } from "./local";
import { kms } from "./run";

const DAY_MS = 86_400_000;
const { dir, store } = localSetup("rotate", {
  keys: { "tenant-old": { provider: "local", keyId: "k-old" }, "tenant-new": { provider: "local", keyId: "k-new" } },
});
const evidence = join(dir, "keys", "evidence.jsonl"); // the default: next to the local key store
const HMAC = { EVIDENCE_KEY: "an evidence hmac key of 32+ bytes, for tests" };

beforeAll(async () => {
  // k-old's version 1 is 100 days old (due under the 90-day default); k-new's is new.
  await localKmsProvider({ path: store, clock: new ManualClock(Date.now() - 100 * DAY_MS) }).createKey("k-old");
  await localKmsProvider({ path: store }).createKey("k-new");
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("kms rotate, then kms evidence export / verify", () => {
  it("--all-due rotates only the due key", async () => {
    const result = await kms(["rotate", "--all-due", "--hmac-key-env", "EVIDENCE_KEY"], { cwd: dir, env: HMAC });
    expect(result).toEqual({
      code: 0,
      stdout: "rotated tenant-old local k-old 1 → 2\n2 keys examined, 1 due, 1 rotated, 0 skipped, 0 failed\n",
      stderr: "",
    });
    const again = await kms(["rotate", "--all-due", "--hmac-key-env", "EVIDENCE_KEY"], { cwd: dir, env: HMAC });
    expect(again.stdout).toBe("2 keys examined, 0 due, 0 rotated, 0 skipped, 0 failed\n");
    // A shorter cryptoperiod from the flag makes nothing due either: both versions are new.
    const flag = await kms(["rotate", "--all-due", "--cryptoperiod-days", "1", "--hmac-key-env", "EVIDENCE_KEY"], { cwd: dir, env: HMAC });
    expect(flag.stdout).toBe("2 keys examined, 0 due, 0 rotated, 0 skipped, 0 failed\n");
  });

  it("--tenant rotates that tenant's key now (--json)", async () => {
    const result = await kms(["rotate", "--tenant", "tenant-new", "--json", "--hmac-key-env", "EVIDENCE_KEY"], { cwd: dir, env: HMAC });
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({
      ok: true,
      rotated: [{ tenantId: "tenant-new", provider: "local", keyId: "k-new", previousVersion: "1", currentVersion: "2", recovered: false }],
      failed: [],
      summary: { examined: 1, due: 1, rotated: 1, skipped: 0, failed: 0, deferred: 0, recovered: 0 },
    });
    const usage = await kms(["rotate"], { cwd: dir });
    expect(usage.code).toBe(2);
    expect(usage.stderr.split("\n")[0]).toBe("kms rotate: give exactly one of --tenant T and --all-due");
  });

  it("--tenant with --cryptoperiod-days is a usage error: nothing rotated, nothing recorded (exit 2)", async () => {
    const before = readFileSync(evidence, "utf8");
    const result = await kms(["rotate", "--tenant", "tenant-new", "--cryptoperiod-days", "30", "--hmac-key-env", "EVIDENCE_KEY"], { cwd: dir, env: HMAC });
    expect(result).toEqual({
      code: 2,
      stdout: "",
      stderr: [
        "kms rotate: --cryptoperiod-days applies to --all-due only (--tenant rotates now, whatever the key's age)",
        "Usage: kms rotate (--tenant T | --all-due [--cryptoperiod-days N]) [--config F] [--evidence F] [--hmac-key-env VAR] [--json]",
        "Run `kms rotate --help` for details.",
        "",
      ].join("\n"),
    });
    expect(readFileSync(evidence, "utf8")).toBe(before);
  });

  it("exports the evidence with a manifest that verifies; a tampered byte names its record", async () => {
    const out = join(dir, "export.jsonl");
    const exported = await kms(["evidence", "export", "--evidence", evidence, "--out", out, "--hmac-key-env", "EVIDENCE_KEY"], { cwd: dir, env: HMAC });
    expect(exported).toEqual({ code: 0, stdout: `exported 4 records to ${out} (manifest ${out}.manifest.json)\n`, stderr: "" });
    const manifest = JSON.parse(readFileSync(`${out}.manifest.json`, "utf8"));
    expect(manifest).toMatchObject({ format: "jsonl", count: 4, firstSeq: 1, lastSeq: 4, generator: "kms-cli", signature: expect.any(String) });
    const lines = readFileSync(out, "utf8").split("\n");
    expect(lines.slice(0, 4).map((l) => JSON.parse(l).type)).toEqual(["key.rotation-started", "key.rotated", "key.rotation-started", "key.rotated"]);

    const verifyArgs = ["evidence", "verify", "--export", out, "--manifest", `${out}.manifest.json`, "--hmac-key-env", "EVIDENCE_KEY"];
    expect(await kms(verifyArgs, { cwd: dir, env: HMAC })).toEqual({ code: 0, stdout: "OK 4 records\n", stderr: "" });
    expect(await kms(["evidence", "verify", "--evidence", evidence, "--hmac-key-env", "EVIDENCE_KEY"], { cwd: dir, env: HMAC })).toEqual({ code: 0, stdout: "OK 4 records\n", stderr: "" });

    // One byte of record 3 changed: its actor.
    const content = readFileSync(out, "utf8");
    const at = content.indexOf('"actor":"kms-cli"', content.indexOf("\n", content.indexOf("\n") + 1));
    writeFileSync(out, `${content.slice(0, at + 15)}X${content.slice(at + 16)}`);
    expect(await kms(verifyArgs, { cwd: dir, env: HMAC })).toEqual({ code: 1, stdout: "BAD seq=3 position=3 reason=hash\n", stderr: "" });
  });

  it("the HMAC key comes from the named variable only, and is never printed", async () => {
    const unset = await kms(["evidence", "verify", "--evidence", evidence, "--hmac-key-env", "EVIDENCE_KEY"], { cwd: dir });
    expect(unset).toEqual({ code: 2, stdout: "", stderr: "error: environment variable EVIDENCE_KEY (--hmac-key-env) is not set\n" });
    const short = await kms(["evidence", "verify", "--evidence", evidence, "--hmac-key-env", "EVIDENCE_KEY"], { cwd: dir, env: { EVIDENCE_KEY: "too-short-secret" } });
    expect(short).toEqual({ code: 2, stdout: "", stderr: "error: the HMAC key in EVIDENCE_KEY must be at least 32 bytes, it is 16\n" });
    const wrong = await kms(["evidence", "verify", "--evidence", evidence, "--hmac-key-env", "EVIDENCE_KEY"], { cwd: dir, env: { EVIDENCE_KEY: "another key of thirty-two bytes or more" } });
    expect(wrong).toEqual({ code: 1, stdout: "BAD seq=1 position=1 reason=mac\n", stderr: "" });
  });
});

describe("kms rotate --tenant rotates now, whatever the key's age", () => {
  const setup = localSetup("rotate-now", {
    keys: { "tenant-skew": { provider: "local", keyId: "k-skew" }, "tenant-off": { provider: "local", keyId: "k-off" } },
  });
  const log = join(setup.dir, "keys", "evidence.jsonl");

  beforeAll(async () => {
    // k-skew's version 1 dates from 10 days ahead (a store written under a skewed clock): no
    // cryptoperiod makes it due. k-off is disabled: its provider refuses to rotate it.
    await localKmsProvider({ path: setup.store, clock: new ManualClock(Date.now() + 10 * DAY_MS) }).createKey("k-skew");
    const local = localKmsProvider({ path: setup.store });
    await local.createKey("k-off");
    await local.disableKey("k-off");
  });
  afterAll(() => rmSync(setup.dir, { recursive: true, force: true }));

  it("rotates a key no cryptoperiod makes due, recording it as on demand", async () => {
    const pass = await kms(["rotate", "--all-due", "--cryptoperiod-days", "1"], { cwd: setup.dir });
    expect(pass.stdout).toBe("2 keys examined, 0 due, 0 rotated, 0 skipped, 0 failed\n");
    const result = await kms(["rotate", "--tenant", "tenant-skew"], { cwd: setup.dir });
    expect(result).toEqual({ code: 0, stdout: "rotated tenant-skew local k-skew 1 → 2\n1 keys examined, 1 due, 1 rotated, 0 skipped, 0 failed\n", stderr: "" });
    const records = readFileSync(log, "utf8").trim().split("\n").map((line) => JSON.parse(line));
    expect(records.map(({ seq, type, tenantId, keyId, previousVersion, keyVersion, actor, outcome, details }) => ({ seq, type, tenantId, keyId, previousVersion, keyVersion, actor, outcome, details }))).toEqual([
      { seq: 1, type: "key.rotation-started", tenantId: "tenant-skew", keyId: "k-skew", previousVersion: "1", keyVersion: "1", actor: "kms-cli", outcome: "success", details: { fencingToken: 1, onDemand: true } },
      { seq: 2, type: "key.rotated", tenantId: "tenant-skew", keyId: "k-skew", previousVersion: "1", keyVersion: "2", actor: "kms-cli", outcome: "success", details: { fencingToken: 1, onDemand: true } },
    ]);
    expect(await kms(["evidence", "verify", "--evidence", log], { cwd: setup.dir })).toEqual({ code: 0, stdout: "OK 2 records\n", stderr: "" });
  });

  it("a provider's refusal is recorded and printed as a failed line, exit 1 (--json too)", async () => {
    const result = await kms(["rotate", "--tenant", "tenant-off"], { cwd: setup.dir });
    expect(result).toEqual({
      code: 1,
      stdout: "1 keys examined, 1 due, 0 rotated, 0 skipped, 1 failed\n",
      stderr: `failed tenant-off local k-off KMS_KEY_DISABLED: ${PUBLIC_MESSAGES.KMS_KEY_DISABLED} (${docsUrlFor("KMS_KEY_DISABLED")})\n`,
    });
    const json = await kms(["rotate", "--tenant", "tenant-off", "--json"], { cwd: setup.dir });
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stdout)).toEqual({
      ok: false,
      rotated: [],
      failed: [{ tenantId: "tenant-off", provider: "local", keyId: "k-off", code: "KMS_KEY_DISABLED" }],
      summary: { examined: 1, due: 1, rotated: 0, skipped: 0, failed: 1, deferred: 0, recovered: 0 },
    });
    const records = readFileSync(log, "utf8").trim().split("\n").map((line) => JSON.parse(line));
    expect(records.slice(2).map((r) => `${r.keyId}:${r.type}:${r.errorCode ?? ""}`)).toEqual([
      "k-off:key.rotation-started:",
      "k-off:key.rotation-failed:KMS_KEY_DISABLED",
      "k-off:key.rotation-started:",
      "k-off:key.rotation-failed:KMS_KEY_DISABLED",
    ]);
  });
});
