/**
 * Acceptance (issue 6): re-wrap of 100,000 envelopes. All decrypt afterwards with payload bytes
 * unchanged; a run interrupted half-way resumes from its checkpoint without redoing the finished part;
 * progress is reported. Envelopes come from the local provider through `createKms`: 50 tenants, two
 * contexts, a new data key every 250 messages (400 data keys, as an encrypt cache hands them out).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, it } from "@jest/globals";
import { createKms, definitionOf, localKmsProvider, parseEnvelope } from "@kms/core";
import { type RewrapProgress, type StoredEnvelope, rewrapEnvelopes } from "../src/rewrap";

const TOTAL = 100_000;
const TENANTS = 50;
const dir = mkdtempSync(join(tmpdir(), "kms-rewrap-100k-"));
const path = join(dir, "keys.json");
const kms = createKms({
  registry: [definitionOf(localKmsProvider({ path }))],
  config: {
    providers: { local: {} },
    tenants: { defaultKey: { provider: "local", keyId: "app" } },
    cache: { encrypt: { maxMessages: 250 } },
  },
  env: {},
});

afterAll(async () => {
  await kms.close();
  rmSync(dir, { recursive: true, force: true });
});

const idOf = (i: number) => `env-${String(i).padStart(6, "0")}`;
const plaintextOf = (i: number) => `record ${i}`;
const payloadOf = (envelope: Uint8Array) => {
  const p = parseEnvelope(envelope);
  return Buffer.concat([p.iv, p.ciphertext, p.tag]);
};

it("re-wraps 100,000 envelopes across an interruption, each exactly once, all decrypting to the same bytes", async () => {
  const rows: StoredEnvelope[] = [];
  for (let i = 0; i < TOTAL; i++) {
    const tenantId = `tenant-${i % TENANTS}`;
    const context = i % 2 === 0 ? { table: "notes" } : { table: "files" };
    rows.push({ id: idOf(i), tenantId, context, envelope: await kms.encrypt(tenantId, plaintextOf(i), context) });
  }
  const payloads = rows.map((row) => payloadOf(row.envelope));
  expect((await localKmsProvider({ path }).rotateKey("app")).currentVersion).toBe("2");

  // The store: rows in id order; the source starts after the cursor (ids sort as their index).
  const source = async function* (after: string | undefined) {
    for (let i = after === undefined ? 0 : Number(after.slice(4)) + 1; i < TOTAL; i++) yield rows[i]!;
  };
  const writes = new Uint8Array(TOTAL);
  let written = 0;
  const controller = new AbortController();
  const write = async (id: string, envelope: Buffer) => {
    const i = Number(id.slice(4));
    writes[i]!++;
    rows[i] = { ...rows[i]!, envelope };
    if (++written === TOTAL / 2) controller.abort(); // a deploy stops the job half-way
  };
  let saved: string | undefined;
  const checkpoint = { load: async () => saved, save: async (cursor: string) => void (saved = cursor) };
  const progress: RewrapProgress[] = [];
  const options = { kms, source, write, checkpoint, batchSize: 5000, concurrency: 16, onProgress: (p: RewrapProgress) => progress.push(p) };

  const first = await rewrapEnvelopes({ ...options, signal: controller.signal });
  expect(first.interrupted).toBe(true);
  expect(first.failed).toBe(0);
  expect(first.rewrapped).toBeGreaterThanOrEqual(TOTAL / 2);
  expect(first.rewrapped).toBeLessThan(TOTAL / 2 + 16); // at most the envelopes in flight finish after the abort
  expect(saved).toBe(first.cursor);
  const resumedAt = Number(first.cursor!.slice(4)) + 1;
  const firstProgress = progress.length;
  expect(progress[firstProgress - 1]).toEqual({ seen: first.seen, rewrapped: first.rewrapped, skipped: 0, failed: 0 });

  const second = await rewrapEnvelopes(options);
  expect(second.interrupted).toBe(false);
  expect(second.seen).toBe(TOTAL - resumedAt); // nothing before the cursor is read again
  // Envelopes finished past the cursor before the stop are current now: skipped, not re-wrapped.
  expect(second.skipped).toBe(first.seen - resumedAt);
  expect(first.rewrapped + second.rewrapped).toBe(TOTAL);
  expect(second.cursor).toBe(idOf(TOTAL - 1));
  expect(writes.every((n) => n === 1)).toBe(true);
  expect(progress.slice(firstProgress).map((p) => p.rewrapped)).toEqual([5000, 10000, 15000, 20000, 25000, 30000, 35000, 40000, 45000, second.rewrapped]);

  // Checked in plain loops, one expect each: 100,000 expect calls alone would take seconds.
  const notUnderVersion2 = rows.filter((row) => parseEnvelope(row.envelope).keySection.keyVersion !== "2");
  const payloadChanged = rows.filter((row, i) => !payloadOf(row.envelope).equals(payloads[i]!));
  const decrypted = await kms.decryptMany(rows.map(({ tenantId, envelope, context }) => ({ tenantId, envelope, context })));
  const wrongPlaintext = decrypted.filter((r, i) => !r.ok || r.value.toString() !== plaintextOf(i));
  expect([notUnderVersion2.length, payloadChanged.length, wrongPlaintext.length]).toEqual([0, 0, 0]);
}, 180_000); // ~10 s alone; CI runs every package's suites at once on 2 cores
