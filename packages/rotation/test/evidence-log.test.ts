import { createHash, createHmac } from "node:crypto";
import { describe, expect, it } from "@jest/globals";
import { KmsError, ManualClock } from "@kms/core";
import { createEvidenceLog, GENESIS_HASH, memoryEvidenceStore, verifyEvidence } from "../src/evidence";
import type { EvidenceEvent } from "../src/types";

const KEY = Buffer.alloc(32, 7);
const rotated: EvidenceEvent = { type: "key.rotated", tenantId: "tenant-a", provider: "aws-kms", keyId: "alias/a", keyVersion: "2", previousVersion: "1", actor: "scheduler@host", outcome: "success" };

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (error) {
    return (error as KmsError).code;
  }
  return undefined;
}

async function rejectionOf(promise: Promise<unknown>): Promise<KmsError> {
  try {
    await promise;
  } catch (error) {
    return error as KmsError;
  }
  throw new Error("expected a rejection");
}

describe("createEvidenceLog", () => {
  it("numbers, times, chains and MACs records; the hash covers the documented canonical bytes", async () => {
    const clock = new ManualClock(Date.UTC(2026, 10, 29, 10, 0, 0, 5));
    const log = createEvidenceLog({ store: memoryEvidenceStore(), hmacKey: KEY, clock });
    const first = await log.append({ ...rotated, details: { retries: 2, dryRun: false, zone: "eu" } });
    await clock.advance(1000);
    const second = await log.append({ type: "config.loaded", actor: "cli", outcome: "success" });

    // Written out by hand from the README's description, not produced by the code under test.
    const canonical =
      '{"actor":"scheduler@host","details":{"dryRun":false,"retries":2,"zone":"eu"},"keyId":"alias/a","keyVersion":"2",' +
      `"outcome":"success","prevHash":"${GENESIS_HASH}","previousVersion":"1","provider":"aws-kms","seq":1,` +
      '"tenantId":"tenant-a","time":"2026-11-29T10:00:00.005Z","type":"key.rotated","v":1}';
    const hash = createHash("sha256").update(canonical, "utf8").digest("hex");
    expect(first).toEqual({ ...rotated, details: { retries: 2, dryRun: false, zone: "eu" }, seq: 1, time: "2026-11-29T10:00:00.005Z", prevHash: GENESIS_HASH, hash, mac: createHmac("sha256", KEY).update(hash).digest("hex") });
    expect(second).toMatchObject({ seq: 2, time: "2026-11-29T10:00:01.005Z", prevHash: hash });
    expect(await verifyEvidence(log.records(), { hmacKey: KEY })).toEqual({ ok: true, count: 2, lastHash: second.hash });
  });

  it("keeps the chain linear under 200 concurrent appends, in call order", async () => {
    const log = createEvidenceLog({ store: memoryEvidenceStore() });
    const records = await Promise.all(Array.from({ length: 200 }, (_, i) => log.append({ ...rotated, keyVersion: String(i) })));
    expect(records.map((r) => r.seq)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
    expect(records.map((r) => r.keyVersion)).toEqual(Array.from({ length: 200 }, (_, i) => String(i)));
    expect((await verifyEvidence(log.records())).count).toBe(200);
  });

  it("refuses invalid events with INPUT_INVALID, never echoing the value, and appends nothing", async () => {
    const store = memoryEvidenceStore();
    const log = createEvidenceLog({ store });
    const secret = "s3cr3t-context-value";
    const bad: unknown[] = [
      null,
      "key.rotated",
      { ...rotated, type: "key.stolen" },
      { ...rotated, actor: "" },
      { ...rotated, actor: 42 },
      { ...rotated, outcome: "maybe" },
      { ...rotated, tenantId: `${secret}\n` },
      { ...rotated, tenantId: `${secret}\u0000` },
      { ...rotated, keyId: `${secret}\u2028` },
      { ...rotated, keyId: `${secret}\ud800` },
      { ...rotated, requestId: "x".repeat(257) },
      { ...rotated, errorCode: `lower ${secret}` },
      { ...rotated, context: { purpose: secret } },
      { ...rotated, details: { ok: { nested: secret } } },
      { ...rotated, details: { n: Number.NaN } },
      { ...rotated, details: { "bad key": 1 } },
      { ...rotated, details: Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, i])) },
      { ...rotated, details: [secret] },
    ];
    for (const event of bad) {
      const error = await rejectionOf(log.append(event as EvidenceEvent));
      expect(error).toBeInstanceOf(KmsError);
      expect(error.code).toBe("INPUT_INVALID");
      expect(error.message).not.toContain(secret);
    }
    expect(store.stored).toHaveLength(0);
    // Unknown fields are refused rather than stored: nothing but the documented fields reaches the log.
    expect((await log.append({ ...rotated, errorCode: "KMS_THROTTLED", requestId: "req-1", details: { n: 1.5, ok: true } })).seq).toBe(1);
  });

  it("refuses an HMAC key shorter than 32 bytes and a bad filter", () => {
    expect(codeOf(() => createEvidenceLog({ store: memoryEvidenceStore(), hmacKey: Buffer.alloc(31) }))).toBe("KMS_CONFIG_INVALID");
    const log = createEvidenceLog({ store: memoryEvidenceStore() });
    expect(codeOf(() => log.records({ since: "yesterday" }))).toBe("INPUT_INVALID");
    expect(codeOf(() => log.records({ types: ["key.stolen" as never] }))).toBe("INPUT_INVALID");
  });

  it("filters by tenant, provider, key, types and a half-open time range", async () => {
    const clock = new ManualClock(Date.UTC(2026, 0, 1));
    const log = createEvidenceLog({ store: memoryEvidenceStore(), clock });
    for (let i = 0; i < 10; i++) {
      await log.append({ ...rotated, tenantId: i % 2 ? "tenant-b" : "tenant-a", type: i % 3 ? "key.rotated" : "key.created" });
      await clock.advance(60_000);
    }
    const seqs = async (filter: Parameters<typeof log.records>[0]) => {
      const out: number[] = [];
      for await (const r of log.records(filter)) out.push(r.seq);
      return out;
    };
    expect(await seqs({ tenantId: "tenant-b" })).toEqual([2, 4, 6, 8, 10]);
    expect(await seqs({ types: ["key.created"] })).toEqual([1, 4, 7, 10]);
    expect(await seqs({ since: new Date(Date.UTC(2026, 0, 1, 0, 2)), until: "2026-01-01T00:05:00.000Z" })).toEqual([3, 4, 5]);
    expect(await seqs({ tenantId: "tenant-a", provider: "aws-kms", keyId: "alias/a", types: ["key.rotated"] })).toEqual([3, 5, 9]);
    expect(await seqs({ provider: "vault" })).toEqual([]);
  });

  it("waits for pending appends on close, then refuses appends with KMS_CLOSED", async () => {
    const store = memoryEvidenceStore();
    const log = createEvidenceLog({ store });
    const pending = log.append(rotated);
    await log.close();
    expect((await pending).seq).toBe(1);
    expect((await rejectionOf(log.append(rotated))).code).toBe("KMS_CLOSED");
    expect(store.stored).toHaveLength(1);
  });
});
