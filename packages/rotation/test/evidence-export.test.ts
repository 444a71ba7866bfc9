import { createHash, createHmac } from "node:crypto";
import { describe, expect, it } from "@jest/globals";
import { ManualClock } from "@kms/core";
import { canonicalJson, createEvidenceLog, CSV_COLUMNS, exportEvidence, fromCsv, memoryEvidenceStore, verifyExport } from "../src/evidence";
import type { EvidenceLog, EvidenceRecord } from "../src/types";
import { fill, HMAC_KEY, START } from "./evidence-helpers";

const GENERATED = Date.UTC(2026, 5, 1);

async function logOf(n: number): Promise<{ log: EvidenceLog; records: EvidenceRecord[] }> {
  const clock = new ManualClock(START);
  const log = createEvidenceLog({ store: memoryEvidenceStore(), hmacKey: HMAC_KEY, clock });
  return { log, records: await fill(log, n, clock) };
}

const at = { clock: new ManualClock(GENERATED) };

describe("exportEvidence", () => {
  it("exports JSON Lines with a signed manifest that binds the content", async () => {
    const { log, records } = await logOf(6);
    const { content, manifest } = await exportEvidence(log, { format: "jsonl", hmacKey: HMAC_KEY, ...at });
    expect(content).toBe(records.map((r) => `${canonicalJson(r)}\n`).join(""));
    const { signature, ...unsigned } = manifest;
    expect(unsigned).toEqual({
      v: 1,
      generator: "@kms/rotation",
      generatedAt: "2026-06-01T00:00:00.000Z",
      format: "jsonl",
      filter: {},
      count: 6,
      firstSeq: 1,
      lastSeq: 6,
      firstHash: records[0]!.hash,
      lastHash: records[5]!.hash,
      contentSha256: createHash("sha256").update(content).digest("hex"),
    });
    expect(signature).toBe(createHmac("sha256", HMAC_KEY).update(canonicalJson(unsigned)).digest("hex"));
    expect(await verifyExport(content, manifest, { hmacKey: HMAC_KEY })).toEqual({ ok: true, count: 6 });
    expect(await verifyExport(content, manifest)).toEqual({ ok: true, count: 6 });
  });

  it("a filtered export (tenant and time range) verifies on its own, without the rest of the chain", async () => {
    const { log, records } = await logOf(12);
    const filter = { tenantId: "tenant-b", since: new Date(START + 2 * 60_000), until: "2026-01-01T00:09:00Z" };
    const { content, manifest } = await exportEvidence(log, { format: "jsonl", filter, hmacKey: HMAC_KEY, ...at });
    expect(content.split("\n").slice(0, -1).map((line) => JSON.parse(line).seq)).toEqual([3, 5, 7, 9]);
    expect(manifest).toMatchObject({
      filter: { tenantId: "tenant-b", since: "2026-01-01T00:02:00.000Z", until: "2026-01-01T00:09:00.000Z" },
      count: 4,
      firstSeq: 3,
      lastSeq: 9,
      firstHash: records[2]!.hash,
      lastHash: records[8]!.hash,
    });
    expect(await verifyExport(content, manifest, { hmacKey: HMAC_KEY })).toEqual({ ok: true, count: 4 });

    const empty = await exportEvidence(log, { format: "csv", filter: { tenantId: "nobody" }, hmacKey: HMAC_KEY, ...at });
    expect(empty.manifest).toMatchObject({ count: 0 });
    expect(empty.manifest.firstSeq).toBeUndefined();
    expect(await verifyExport(empty.content, empty.manifest, { hmacKey: HMAC_KEY })).toEqual({ ok: true, count: 0 });
  });

  it("round-trips CSV (RFC 4180 quoting of commas, quotes, CR and LF)", async () => {
    const clock = new ManualClock(START);
    const log = createEvidenceLog({ store: memoryEvidenceStore(), clock });
    const awkward = await log.append({ type: "key.rotated", tenantId: 'a,"b"', actor: "admin:O'Brien", outcome: "failure", errorCode: "KMS_THROTTLED", details: { text: "x,\"y\"", n: -0.5, flag: true } });
    const plain = await log.append({ type: "config.loaded", actor: "cli", outcome: "success" });
    const { content, manifest } = await exportEvidence(log, { format: "csv", ...at });
    const lines = content.split("\r\n");
    expect(lines[0]).toBe(CSV_COLUMNS.join(","));
    expect(lines[1]).toBe(
      `1,2026-01-01T00:00:00.000Z,key.rotated,"a,""b""",,,,,admin:O'Brien,failure,KMS_THROTTLED,,"{""flag"":true,""n"":-0.5,""text"":""x,\\""y\\""""}",${awkward.prevHash},${awkward.hash},`,
    );
    expect(lines).toHaveLength(4);
    expect(lines[3]).toBe("");
    expect(fromCsv(content)).toEqual([awkward, plain]);
    expect(await verifyExport(content, manifest)).toEqual({ ok: true, count: 2 });
    // Quoted CR/LF inside a field survive the round trip as data.
    expect(fromCsv(`${CSV_COLUMNS.join(",")}\r\n1,t,type,"line1\r\nline2",,,,,a,success,,,,p,h,\r\n`)[0]).toMatchObject({ tenantId: "line1\r\nline2" });
  });

  it("verifyExport names what was changed in an export or its manifest", async () => {
    const { log } = await logOf(8);
    const { content, manifest } = await exportEvidence(log, { format: "jsonl", filter: { tenantId: "tenant-a" }, hmacKey: HMAC_KEY, ...at });
    const lines = content.split("\n").slice(0, -1); // seqs 2, 4, 6, 8
    const rehashed = (text: string) => ({ ...manifest, contentSha256: createHash("sha256").update(text).digest("hex") });
    const join = (l: string[]) => `${l.join("\n")}\n`;
    const changed = join(lines.with(1, lines[1]!.replace('"keyVersion":"4"', '"keyVersion":"5"')));
    const dropped = join(lines.toSpliced(2, 1));
    const swapped = join(lines.with(0, lines[1]!).with(1, lines[0]!));

    // Content changed, manifest not: the changed record is named, with or without the key...
    expect(await verifyExport(changed, manifest)).toEqual({ ok: false, count: 2, firstBad: { seq: 4, position: 2, reason: "hash" } });
    expect((await verifyExport(changed, manifest, { hmacKey: HMAC_KEY })).firstBad).toEqual({ seq: 4, position: 2, reason: "hash" });
    // ...and a change no record check sees (here, a dropped record) is the content hash's.
    expect(await verifyExport(dropped, manifest)).toEqual({ ok: false, count: 3, firstBad: { reason: "contentSha256" } });
    // Manifest re-hashed to match, without the key: the signature catches it...
    expect((await verifyExport(changed, rehashed(changed), { hmacKey: HMAC_KEY })).firstBad).toEqual({ reason: "signature" });
    // ...and without the key, the record's own hash names it.
    expect((await verifyExport(changed, rehashed(changed))).firstBad).toEqual({ seq: 4, position: 2, reason: "hash" });
    expect((await verifyExport(swapped, rehashed(swapped))).firstBad).toEqual({ seq: 2, position: 2, reason: "seq" });
    expect((await verifyExport(dropped, rehashed(dropped))).firstBad).toEqual({ reason: "manifest" });
    expect((await verifyExport(content, { ...manifest, filter: { tenantId: "tenant-b" } })).firstBad).toEqual({ seq: 2, position: 1, reason: "manifest" });
    expect((await verifyExport(content, { ...manifest, generatedAt: "2020-01-01T00:00:00.000Z" }, { hmacKey: HMAC_KEY })).firstBad).toEqual({ reason: "signature" });
    expect((await verifyExport("not json\n", rehashed("not json\n"))).firstBad).toEqual({ reason: "content" });
  });

  it("an unfiltered export is checked as a whole chain from record 1", async () => {
    const { log } = await logOf(5);
    const { content, manifest } = await exportEvidence(log, { format: "csv", ...at });
    const rows = content.split("\r\n");
    const dropped = rows.toSpliced(1, 1).join("\r\n"); // record 1 gone
    const rehashed = { ...manifest, contentSha256: createHash("sha256").update(dropped).digest("hex") };
    expect((await verifyExport(dropped, rehashed)).firstBad).toEqual({ seq: 2, position: 1, reason: "seq" });
  });
});
