/**
 * The scheduler over the evidence part's real log (file store): its records are accepted, and the
 * chain it leaves after a failure, a recovery and rotations verifies.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, it } from "@jest/globals";
import { ManualClock } from "@kms/core";
import { createEvidenceLog, openFileEvidenceStore, verifyEvidence } from "../src/evidence";
import { createRotationScheduler } from "../src";
import { DAY_MS, addKey, collect, fakeRotationProvider } from "./scheduler-fakes";

it("writes records the evidence log accepts, and a chain that verifies", async () => {
  const dir = mkdtempSync(join(tmpdir(), "kms-rotation-evidence-"));
  try {
    const clock = new ManualClock();
    const provider = fakeRotationProvider(clock);
    const evidence = createEvidenceLog({ store: await openFileEvidenceStore({ path: join(dir, "evidence.jsonl") }), clock });
    for (const key of ["a", "b", "c"]) addKey(provider, clock, key, 100 * DAY_MS);
    // An interrupted rotation of "c" from an earlier process, which did happen.
    await evidence.append({ type: "key.rotation-started", tenantId: "c", provider: "fake", keyId: "c", previousVersion: "1", keyVersion: "1", actor: "scheduler@old", outcome: "success" });
    provider.keys.get("c")!.version = 2;
    provider.keys.get("c")!.rotatedAt = clock.now();
    provider.failRotations("b", "KMS_THROTTLED");
    const scheduler = createRotationScheduler({
      providers: { fake: provider },
      tenants: ["a", "b", "c"].map((key) => ({ tenantId: key, provider: "fake", keyId: key })),
      evidence,
      clock,
      concurrency: 1,
      random: () => 0,
    });
    expect(await scheduler.runOnce()).toMatchObject({ recovered: 1, rotated: 1, failed: 1 });
    expect(await scheduler.runOnce()).toMatchObject({ rotated: 1, failed: 0 });
    const records = await collect(evidence.records());
    expect(records.map((r) => `${r.keyId}:${r.type}`)).toEqual([
      "c:key.rotation-started",
      "c:key.rotated",
      "a:key.rotation-started",
      "a:key.rotated",
      "b:key.rotation-started",
      "b:key.rotation-failed",
      "b:key.rotation-started",
      "b:key.rotated",
    ]);
    expect(await verifyEvidence(records)).toMatchObject({ ok: true, count: 8 });
    await evidence.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
