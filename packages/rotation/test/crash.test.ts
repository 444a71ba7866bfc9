/**
 * Acceptance: a scheduler process killed (SIGKILL) at each step of a rotation and restarted leaves
 * exactly one rotation, consistent evidence (every start has one outcome, the chain unbroken), and
 * every envelope encrypted before decryptable.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "@jest/globals";
import { ManualClock, createKms, definitionOf, localKmsProvider, parseEnvelope } from "@kms/core";
import type { EvidenceRecord } from "../src/types";

const CHILD = join(__dirname, "crash-child.cjs");
const HOUR_MS = 3_600_000;

function runChild(env: Record<string, string>): { child: ChildProcess; output: Promise<{ stdout: string; stderr: string; code: number | null }> } {
  const child = spawn(process.execPath, [CHILD], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (chunk: Buffer) => (stdout += chunk.toString("utf8")));
  child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")));
  const output = new Promise<{ stdout: string; stderr: string; code: number | null }>((resolve) => child.on("close", (code) => resolve({ stdout, stderr, code })));
  return { child, output };
}

/** Waits until the child reports it reached `step`, then kills it. */
async function killAt(env: Record<string, string>, step: string): Promise<void> {
  const { child, output } = runChild({ ...env, CRASH_AT: step });
  await new Promise<void>((resolve, reject) => {
    let seen = "";
    child.stdout!.on("data", (chunk: Buffer) => {
      seen += chunk.toString("utf8");
      if (seen.includes(`at:${step}\n`)) resolve();
    });
    child.on("close", () => reject(new Error(`child exited before ${step}: ${seen}`)));
  });
  child.kill("SIGKILL");
  const { stderr } = await output;
  expect(stderr).toBe("");
}

async function restart(env: Record<string, string>): Promise<Record<string, number>> {
  const { output } = runChild(env);
  const { stdout, stderr, code } = await output;
  expect(stderr).toBe("");
  expect(code).toBe(0);
  return JSON.parse(/^done:(.*)$/m.exec(stdout)![1]!) as Record<string, number>;
}

function evidenceIn(path: string): EvidenceRecord[] {
  return readFileSync(path, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((line) => JSON.parse(line) as EvidenceRecord);
}

/** Seq 1..n, each record chained to the one before, and every rotation start followed by exactly one outcome. */
function expectConsistent(records: EvidenceRecord[]): void {
  records.forEach((record, i) => {
    expect(record.seq).toBe(i + 1);
    expect(record.prevHash).toBe(i === 0 ? "0".repeat(64) : records[i - 1]!.hash);
  });
  let open = false;
  for (const record of records) {
    expect(open).toBe(record.type !== "key.rotation-started");
    open = record.type === "key.rotation-started";
  }
  expect(open).toBe(false);
}

const cases = [
  { step: "started", evidence: ["key.rotation-started", "key.rotation-failed", "key.rotation-started", "key.rotated"], restarted: { recovered: 1, due: 1, rotated: 1 } },
  { step: "rotated-key", evidence: ["key.rotation-started", "key.rotated"], restarted: { recovered: 1, due: 0, rotated: 0 } },
  { step: "outcome", evidence: ["key.rotation-started", "key.rotated"], restarted: { recovered: 0, due: 0, rotated: 0 } },
];

describe("a scheduler killed at each step of a rotation", () => {
  it.each(cases)("killed after $step: one rotation, consistent evidence, envelopes decrypt", async ({ step, evidence, restarted }) => {
    const dir = mkdtempSync(join(tmpdir(), "kms-rotation-crash-"));
    try {
      const env = { KEYSTORE: join(dir, "keys.json"), EVIDENCE: join(dir, "evidence.jsonl") };
      // The key's version 1 is two hours old: due under the tenant's one-hour cryptoperiod.
      const provider = localKmsProvider({ path: env.KEYSTORE, clock: new ManualClock(Date.now() - 2 * HOUR_MS) });
      await provider.createKey("tenant-acme");
      const kmsOver = () =>
        createKms({
          registry: [definitionOf(localKmsProvider({ path: env.KEYSTORE }))],
          config: { providers: { local: {} }, tenants: { keys: { acme: { provider: "local", keyId: "tenant-acme" } } } },
          env: {},
        });
      const before = kmsOver();
      const envelopes = await Promise.all(["one", "two", "three"].map((text) => before.encrypt("acme", text)));
      await before.close();

      await killAt(env, step);
      expect(await restart(env)).toMatchObject(restarted);
      expect(await restart(env)).toMatchObject({ recovered: 0, due: 0, rotated: 0 }); // and again: nothing more

      expect((await provider.describeKey("tenant-acme")).currentVersion).toBe("2");
      const records = evidenceIn(env.EVIDENCE);
      expect(records.map((r) => r.type)).toEqual(evidence);
      expectConsistent(records);
      expect(records.at(-1)).toMatchObject({ tenantId: "acme", provider: "local", keyId: "tenant-acme", previousVersion: "1", keyVersion: "2", outcome: "success" });

      const after = kmsOver();
      expect((await Promise.all(envelopes.map((e) => after.decrypt("acme", e)))).map(String)).toEqual(["one", "two", "three"]);
      expect(parseEnvelope(await after.encrypt("acme", "new")).keySection.keyVersion).toBe("2");
      await after.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
