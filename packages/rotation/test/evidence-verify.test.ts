import { describe, expect, it } from "@jest/globals";
import { GENESIS_HASH, verifyEvidence } from "../src/evidence";
import type { EvidenceRecord } from "../src/types";
import { chain, HMAC_KEY, resealed } from "./evidence-helpers";

describe("verifyEvidence", () => {
  it("accepts an intact chain and an empty one", async () => {
    const records = await chain(10);
    expect(await verifyEvidence(records, { hmacKey: HMAC_KEY })).toEqual({ ok: true, count: 10, lastHash: records[9]!.hash });
    expect(await verifyEvidence([])).toEqual({ ok: true, count: 0, lastHash: GENESIS_HASH });
  });

  it("names the first bad record of each kind of tampering", async () => {
    const records = await chain(10);
    const cases: [string, (r: EvidenceRecord[]) => unknown[], { seq: number; position: number; reason: string }][] = [
      ["a changed field", (r) => r.with(4, { ...r[4]!, tenantId: "tenant-z" }), { seq: 5, position: 5, reason: "hash" }],
      ["a changed outcome", (r) => r.with(0, { ...r[0]!, outcome: "failure" }), { seq: 1, position: 1, reason: "hash" }],
      ["a changed time", (r) => r.with(9, { ...r[9]!, time: "2027-01-01T00:00:00.000Z" }), { seq: 10, position: 10, reason: "hash" }],
      ["a removed detail", (r) => r.with(2, { ...r[2]!, details: {} }), { seq: 3, position: 3, reason: "hash" }],
      ["a changed and resealed record", (r) => r.with(4, resealed({ ...r[4]!, keyVersion: "99" })), { seq: 6, position: 6, reason: "prevHash" }],
      ["a deleted record", (r) => r.toSpliced(4, 1), { seq: 6, position: 5, reason: "seq" }],
      ["a deleted first record", (r) => r.slice(1), { seq: 2, position: 1, reason: "seq" }],
      ["an inserted copy", (r) => r.toSpliced(5, 0, r[2]!), { seq: 3, position: 6, reason: "seq" }],
      ["two records swapped", (r) => r.with(6, r[7]!).with(7, r[6]!), { seq: 8, position: 7, reason: "seq" }],
      ["a renumbered record", (r) => r.with(3, { ...r[3]!, seq: 40 }), { seq: 40, position: 4, reason: "seq" }],
      ["an unreadable record", (r) => r.with(6, { ...r[6]!, seq: "7" } as never), { seq: 7, position: 7, reason: "malformed" }],
      ["an extra field", (r) => r.with(1, { ...r[1]!, note: "x" } as never), { seq: 2, position: 2, reason: "malformed" }],
    ];
    for (const [name, tamper, firstBad] of cases) {
      const result = await verifyEvidence(tamper(records));
      expect({ name, ok: result.ok, firstBad: result.firstBad }).toEqual({ name, ok: false, firstBad });
      expect(result.count).toBe(firstBad.position);
    }
  });

  it("with the key, finds a record rewritten and resealed by someone without it", async () => {
    const records = await chain(10);
    const forged = records.slice(0, 4);
    // A forger rewrites record 5 and re-chains everything after it: the hashes are all consistent.
    for (const original of records.slice(4)) {
      const prevHash = forged.at(-1)!.hash;
      forged.push(resealed({ ...original, prevHash, ...(original.seq === 5 ? { outcome: "failure" as const } : {}) }));
    }
    expect((await verifyEvidence(forged)).ok).toBe(true);
    expect((await verifyEvidence(forged, { hmacKey: HMAC_KEY })).firstBad).toEqual({ seq: 5, position: 5, reason: "mac" });
    const { mac: _mac, ...unsigned } = records[0]!;
    expect((await verifyEvidence([unsigned], { hmacKey: HMAC_KEY })).firstBad).toEqual({ seq: 1, position: 1, reason: "mac" });
    expect((await verifyEvidence(records, { hmacKey: Buffer.alloc(32, 1) })).firstBad).toEqual({ seq: 1, position: 1, reason: "mac" });
  });

  it("against a kept head, finds records cut from the end and a rewritten chain", async () => {
    const records = await chain(10);
    const head = { seq: 8, hash: records[7]!.hash };
    expect(await verifyEvidence(records, { head })).toEqual({ ok: true, count: 10, lastHash: records[9]!.hash });
    expect(await verifyEvidence(records.slice(0, 6), { head })).toEqual({ ok: false, count: 6, firstBad: { seq: 7, position: 7, reason: "missing" }, lastHash: records[5]!.hash });
    expect((await verifyEvidence(records, { head: { seq: 8, hash: records[6]!.hash } })).firstBad).toEqual({ seq: 8, position: 8, reason: "head" });
  });

  it("reads async iterables", async () => {
    const records = await chain(3);
    async function* source() {
      yield* records;
    }
    expect(await verifyEvidence(source())).toMatchObject({ ok: true, count: 3 });
  });
});
