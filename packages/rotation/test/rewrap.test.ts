import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "@jest/globals";
import { type KmsClient, createKms, definitionOf, isKmsError, localKmsProvider, parseEnvelope } from "@kms/core";
import { type RewrapProgress, type StoredEnvelope, rewrapEnvelopes } from "../src/rewrap";
import type { EvidenceEvent, EvidenceLog, EvidenceRecord } from "../src/types";

const dirs: string[] = [];
const clients: KmsClient[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((kms) => kms.close()));
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A client on a fresh local key store; `rotate` moves key "k" to its next version. */
function setup() {
  const dir = mkdtempSync(join(tmpdir(), "kms-rewrap-"));
  dirs.push(dir);
  const path = join(dir, "keys.json");
  const kms = createKms({
    registry: [definitionOf(localKmsProvider({ path }))],
    config: { providers: { local: {} }, tenants: { defaultKey: { provider: "local", keyId: "k" } } },
    env: {},
  });
  clients.push(kms);
  const calls = { rewrap: 0 };
  const counted: KmsClient = { ...kms, rewrap: (...args) => (calls.rewrap++, kms.rewrap(...args)) };
  return { kms: counted, calls, rotate: () => localKmsProvider({ path }).rotateKey("k") };
}

/** An ordered in-memory store with a source that starts after a cursor and counted writes. */
function memoryStore(items: StoredEnvelope[]) {
  const rows = new Map(items.map((item) => [item.id, item]));
  const writes = new Map<string, number>();
  return {
    rows,
    writes,
    source: async function* (after: string | undefined) {
      const ids = [...rows.keys()].sort();
      for (const id of ids) if (after === undefined || id > after) yield rows.get(id)!;
    },
    write: async (id: string, envelope: Buffer) => {
      writes.set(id, (writes.get(id) ?? 0) + 1);
      rows.set(id, { ...rows.get(id)!, envelope });
    },
  };
}

function memoryEvidence(): EvidenceLog & { events: EvidenceEvent[] } {
  const events: EvidenceEvent[] = [];
  return {
    events,
    async append(event) {
      events.push(event);
      return { ...event, seq: events.length, time: new Date(0).toISOString(), prevHash: "0".repeat(64), hash: "0".repeat(64) } as EvidenceRecord;
    },
    records: async function* () {},
    close: async () => {},
  };
}

const id = (i: number) => `row-${String(i).padStart(4, "0")}`;
const payloadOf = (envelope: Uint8Array) => {
  const p = parseEnvelope(envelope);
  return Buffer.concat([p.iv, p.ciphertext, p.tag]);
};

describe("rewrapEnvelopes", () => {
  it("re-wraps stale envelopes under the current version, payload byte-identical, one kms.rewrap per data key", async () => {
    const { kms, calls, rotate } = setup();
    const items: StoredEnvelope[] = [];
    for (let i = 0; i < 30; i++) {
      const tenantId = `tenant-${i % 3}`;
      const context = i % 2 === 0 ? { table: "notes" } : undefined;
      items.push({ id: id(i), tenantId, envelope: await kms.encrypt(tenantId, `secret ${i}`, context), context });
    }
    await rotate();
    kms.invalidateTenant("tenant-0"); // its cached data key is under version 1
    for (let i = 30; i < 35; i++) items.push({ id: id(i), tenantId: "tenant-0", envelope: await kms.encrypt("tenant-0", `secret ${i}`) });
    const store = memoryStore(items);
    const before = new Map(items.map((item) => [item.id, item.envelope]));

    const report = await rewrapEnvelopes({ kms, source: store.source, write: store.write });

    expect(report).toEqual({ seen: 35, rewrapped: 30, skipped: 5, failed: 0, cursor: id(34), interrupted: false });
    expect(calls.rewrap).toBe(6); // 3 tenants x 2 contexts: six data keys
    expect(store.writes.size).toBe(30);
    for (const item of store.rows.values()) {
      const old = before.get(item.id)!;
      expect(parseEnvelope(item.envelope).keySection).toMatchObject({ providerId: "local", keyId: "k", keyVersion: "2" });
      expect(payloadOf(item.envelope)).toEqual(payloadOf(old));
      expect((await kms.decrypt(item.tenantId, item.envelope, item.context)).toString()).toBe(`secret ${Number(item.id.slice(4))}`);
    }
  });

  it("reports each failure without stopping, and never passes envelope bytes along", async () => {
    const { kms, rotate } = setup();
    const good = await kms.encrypt("a", "x");
    await rotate();
    const corrupt = Buffer.from(good);
    corrupt[corrupt.length - 1]! ^= 1; // payload tag: caught when core authenticates the envelope
    const store = memoryStore([
      { id: "1", tenantId: "a", envelope: Buffer.from("not an envelope") },
      { id: "2", tenantId: "b", envelope: good }, // another tenant's envelope
      { id: "3", tenantId: "a", envelope: corrupt },
      { id: "4", tenantId: "a", envelope: good, context: { "kms:reserved": "x" } },
      { id: "5", tenantId: "a", envelope: good },
      { id: "6", tenantId: "a", envelope: good },
    ]);
    const failures: [string, string][] = [];
    const messages: string[] = [];
    const write = (rowId: string, envelope: Buffer) => (rowId === "6" ? Promise.reject(new Error("disk full")) : store.write(rowId, envelope));

    const report = await rewrapEnvelopes({
      kms,
      source: store.source,
      write,
      concurrency: 1,
      onFailure: (rowId, error) => {
        failures.push([rowId, isKmsError(error) ? error.code : (error as Error).message]);
        messages.push(JSON.stringify(error), String((error as Error).message));
      },
    });

    expect(report).toEqual({ seen: 6, rewrapped: 1, skipped: 0, failed: 5, cursor: "6", interrupted: false });
    expect(failures).toEqual([
      ["1", "ENVELOPE_MALFORMED"],
      ["2", "ENVELOPE_AUTH_FAILED"],
      ["3", "ENVELOPE_AUTH_FAILED"],
      ["4", "INPUT_INVALID"],
      ["6", "disk full"],
    ]);
    expect([...store.writes.keys()]).toEqual(["5"]);
    const wrapped = Buffer.from(parseEnvelope(good).keySection.wrappedKey);
    for (const text of messages) {
      for (const bytes of [good, wrapped]) for (const enc of ["base64", "hex", "base64url"] as const) expect(text).not.toContain(bytes.toString(enc));
    }
  });

  it("stops at the first failure when asked, saving the cursor before it", async () => {
    const { kms, rotate } = setup();
    const good = await kms.encrypt("a", "x");
    await rotate();
    const store = memoryStore([
      { id: "1", tenantId: "a", envelope: good },
      { id: "2", tenantId: "a", envelope: Buffer.from("bad") },
      { id: "3", tenantId: "a", envelope: good },
    ]);
    const saved: string[] = [];
    const evidence = memoryEvidence();
    const report = await rewrapEnvelopes({
      kms,
      source: store.source,
      write: store.write,
      concurrency: 1,
      stopOnFailure: true,
      evidence,
      checkpoint: { load: async () => undefined, save: async (cursor) => void saved.push(cursor) },
    });
    expect(report).toEqual({ seen: 2, rewrapped: 1, skipped: 0, failed: 1, cursor: "2", interrupted: true });
    expect(saved).toEqual(["2"]);
    expect(evidence.events).toEqual([]); // not completed: no rewrap.completed record
  });

  it("saves the cursor of the finished prefix only, in batches, with progress, however envelopes finish", async () => {
    const { kms, rotate } = setup();
    const items: StoredEnvelope[] = [];
    for (let i = 0; i < 10; i++) items.push({ id: id(i), tenantId: "a", envelope: await kms.encrypt("a", `m${i}`) });
    await rotate();
    const store = memoryStore(items);
    // Row 1's write is held until row 6 has been written: rows 2..6 finish before it.
    let releaseRow1!: () => void;
    const row1Written = new Promise<void>((resolve) => (releaseRow1 = resolve));
    const write = async (rowId: string, envelope: Buffer) => {
      if (rowId === id(1)) await row1Written;
      await store.write(rowId, envelope);
      if (rowId === id(6)) releaseRow1();
    };
    const saved: string[] = [];
    const progress: RewrapProgress[] = [];
    const report = await rewrapEnvelopes({
      kms,
      source: store.source,
      write,
      concurrency: 8,
      batchSize: 3,
      checkpoint: { load: async () => undefined, save: async (cursor) => void saved.push(cursor) },
      onProgress: (p) => progress.push(p),
    });
    expect(report).toMatchObject({ seen: 10, rewrapped: 10, cursor: id(9) });
    // Batches end after 3, 6 and 9 finished envelopes; while row 1 was held, the cursor stayed at row 0.
    expect(saved).toEqual([id(0), id(8), id(9)]);
    // Eight envelopes in flight: the source is read on only as they finish.
    expect(progress.map((p) => `${p.seen}:${p.rewrapped}`)).toEqual(["8:3", "8:6", "10:9", "10:10"]);
  });

  it("resumes after the checkpoint's cursor, and a plain iterable source is read as given", async () => {
    const { kms, calls, rotate } = setup();
    const items: StoredEnvelope[] = [];
    for (let i = 0; i < 4; i++) items.push({ id: id(i), tenantId: "a", envelope: await kms.encrypt("a", `m${i}`) });
    await rotate();
    const store = memoryStore(items);
    const report = await rewrapEnvelopes({
      kms,
      source: store.source,
      write: store.write,
      checkpoint: { load: async () => id(1), save: async () => {} },
    });
    expect(report).toEqual({ seen: 2, rewrapped: 2, skipped: 0, failed: 0, cursor: id(3), interrupted: false });
    expect([...store.writes.keys()].sort()).toEqual([id(2), id(3)]);
    const again = await rewrapEnvelopes({ kms, source: store.rows.values() as unknown as AsyncIterable<StoredEnvelope>, write: store.write });
    expect(again).toMatchObject({ seen: 4, rewrapped: 2, skipped: 2 });
    expect(calls.rewrap).toBe(2);
  });

  it("appends rewrap.completed with the counts at the end of the source, and uses a given isCurrent", async () => {
    const { kms, rotate } = setup();
    const envelope = await kms.encrypt("a", "x");
    await rotate();
    const store = memoryStore([
      { id: "1", tenantId: "a", envelope },
      { id: "2", tenantId: "b", envelope },
    ]);
    const evidence = memoryEvidence();
    const asked: unknown[] = [];
    const report = await rewrapEnvelopes({
      kms,
      source: store.source,
      write: store.write,
      evidence,
      actor: "job:rewrap-2030-01",
      isCurrent: (key) => (asked.push(key), key.tenantId === "b"),
    });
    expect(report).toMatchObject({ rewrapped: 1, skipped: 1 });
    expect(asked).toEqual([
      { tenantId: "a", providerId: "local", keyId: "k", keyVersion: "1" },
      { tenantId: "b", providerId: "local", keyId: "k", keyVersion: "1" },
    ]);
    expect(evidence.events).toEqual([
      { type: "rewrap.completed", actor: "job:rewrap-2030-01", outcome: "success", details: { seen: 2, rewrapped: 1, skipped: 1, failed: 0 } },
    ]);
  });

  it("stops and rejects with the error when a checkpoint save or onFailure throws, after the envelopes in flight", async () => {
    const { kms, rotate } = setup();
    const items: StoredEnvelope[] = [];
    for (let i = 0; i < 6; i++) items.push({ id: id(i), tenantId: "a", envelope: await kms.encrypt("a", `m${i}`) });
    await rotate();
    const store = memoryStore(items);
    const saveFailed = new Error("checkpoint table is gone");
    const saves: string[] = [];
    const save = async (cursor: string) => {
      saves.push(cursor);
      throw saveFailed;
    };
    const run = rewrapEnvelopes({ kms, source: store.source, write: store.write, concurrency: 1, batchSize: 2, checkpoint: { load: async () => undefined, save } });
    await expect(run).rejects.toBe(saveFailed);
    // The first batch's save failed before the next envelope was taken: nothing more was read or written.
    expect(saves).toEqual([id(1)]);
    expect([...store.writes.keys()]).toEqual([id(0), id(1)]);

    const callbackFailed = new Error("logger down");
    const bad = memoryStore([{ id: "1", tenantId: "a", envelope: Buffer.from("bad") }, ...items]);
    const failing = rewrapEnvelopes({ kms, source: bad.source, write: bad.write, concurrency: 1, onFailure: () => { throw callbackFailed; } });
    await expect(failing).rejects.toBe(callbackFailed);
    expect(bad.writes.size).toBe(0);
  });

  it("refuses bad options and a malformed source item with INPUT_INVALID", async () => {
    const { kms } = setup();
    const store = memoryStore([]);
    const code = (p: Promise<unknown>) => p.then(() => "resolved", (e: unknown) => (isKmsError(e) ? e.code : String(e)));
    expect(await code(rewrapEnvelopes({ kms, source: store.source, write: store.write, concurrency: 0 }))).toBe("INPUT_INVALID");
    expect(await code(rewrapEnvelopes({ kms, source: store.source, write: store.write, batchSize: 1.5 }))).toBe("INPUT_INVALID");
    expect(await code(rewrapEnvelopes({ kms, source: store.source, write: undefined as never }))).toBe("INPUT_INVALID");
    const bad = (async function* () {
      yield { id: 1, tenantId: "a", envelope: "text" } as unknown as StoredEnvelope;
    })();
    expect(await code(rewrapEnvelopes({ kms, source: bad, write: store.write }))).toBe("INPUT_INVALID");
  });
});
