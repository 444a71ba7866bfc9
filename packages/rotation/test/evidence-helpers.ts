/** Shared by the evidence tests: a log of n records and a way to re-seal a tampered record. */
import { ManualClock } from "@kms/core";
import { createEvidenceLog, hashRecord, memoryEvidenceStore } from "../src/evidence";
import type { EvidenceEvent, EvidenceLog, EvidenceRecord } from "../src/types";

export const HMAC_KEY = Buffer.alloc(32, 0x5a);

/** Event i of a test log: two tenants, times one minute apart from 2026-01-01T00:00Z. */
export function eventNumber(i: number): EvidenceEvent {
  return {
    type: i % 4 === 0 ? "key.created" : "key.rotated",
    tenantId: i % 2 ? "tenant-b" : "tenant-a",
    provider: "local",
    keyId: `key-${i % 2}`,
    keyVersion: String(i),
    actor: "scheduler@test",
    outcome: "success",
    requestId: `req-${i}`,
    details: { envelopes: i * 10, note: 'comma, "quote"' },
  };
}

/** Appends events 1..n to `log`, one minute apart on a manual clock. */
export async function fill(log: EvidenceLog, n: number, clock: ManualClock): Promise<EvidenceRecord[]> {
  const out: EvidenceRecord[] = [];
  for (let i = 1; i <= n; i++) {
    out.push(await log.append(eventNumber(i)));
    await clock.advance(60_000);
  }
  return out;
}

export const START = Date.UTC(2026, 0, 1);

/** n chained records (with MACs under HMAC_KEY), in memory. */
export async function chain(n: number): Promise<EvidenceRecord[]> {
  const clock = new ManualClock(START);
  return fill(createEvidenceLog({ store: memoryEvidenceStore(), hmacKey: HMAC_KEY, clock }), n, clock);
}

/** The record with its hash recomputed (what a forger without the HMAC key can do). */
export function resealed(record: EvidenceRecord): EvidenceRecord {
  return { ...record, hash: hashRecord(record) };
}
