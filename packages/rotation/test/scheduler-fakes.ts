/**
 * Test doubles for the scheduler's tests: a fast in-memory provider with call counts, and evidence
 * logs (in memory; JSON Lines with fsync for the crash tests) that implement only the shared
 * `EvidenceLog` contract, so these tests do not depend on the evidence part's internals.
 */
import { createHash } from "node:crypto";
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, writeSync } from "node:fs";
import { type Clock, KmsError, type KmsErrorCode, type KeyDescription, type KmsProvider, type RotationResult } from "@kms/core";
import type { EvidenceEvent, EvidenceFilter, EvidenceLog, EvidenceRecord } from "../src/types";

const DAY_MS = 86_400_000;
export { DAY_MS };

interface FakeKey {
  version: number;
  createdAt: number;
  rotatedAt: number;
}

export interface FakeRotationProvider extends KmsProvider {
  readonly keys: Map<string, FakeKey>;
  /** rotateKey calls per key id. */
  readonly rotations: Map<string, number>;
  describeCalls: number;
  /** The next `count` rotateKey calls of `keyId` fail with `code`. */
  failRotations(keyId: string, code: KmsErrorCode, count?: number): void;
}

/** A provider whose keys live in a Map; rotateKey yields to the event loop so instances interleave. */
export function fakeRotationProvider(clock: Clock, id = "fake"): FakeRotationProvider {
  const keys = new Map<string, FakeKey>();
  const rotations = new Map<string, number>();
  const failures = new Map<string, { code: KmsErrorCode; count: number }>();
  const notFound = (keyId: string) => new KmsError("KMS_KEY_NOT_FOUND", `no key ${keyId}`, { provider: id });
  const provider: FakeRotationProvider = {
    id,
    capabilities: { encryptionContext: true, rotation: true, generatesDataKeys: false, insecure: true },
    keys,
    rotations,
    describeCalls: 0,
    failRotations(keyId, code, count = 1) {
      failures.set(keyId, { code, count });
    },
    async describeKey(keyId): Promise<KeyDescription> {
      provider.describeCalls++;
      const key = keys.get(keyId);
      if (!key) throw notFound(keyId);
      return { keyId, enabled: true, currentVersion: String(key.version), createdAt: new Date(key.createdAt), rotatedAt: new Date(key.rotatedAt) };
    },
    async rotateKey(keyId): Promise<RotationResult> {
      await new Promise<void>((resolve) => setImmediate(resolve));
      const key = keys.get(keyId);
      if (!key) throw notFound(keyId);
      rotations.set(keyId, (rotations.get(keyId) ?? 0) + 1);
      const failure = failures.get(keyId);
      if (failure && failure.count > 0) {
        failure.count--;
        throw new KmsError(failure.code, "rotation refused", { provider: id, requestId: "req-fail" });
      }
      const previousVersion = String(key.version);
      key.version++;
      key.rotatedAt = clock.now();
      return { keyId, previousVersion, currentVersion: String(key.version) };
    },
    wrapDataKey: () => Promise.reject(new Error("not used")),
    unwrapDataKey: () => Promise.reject(new Error("not used")),
    checkHealth: async () => ({ healthy: true, insecure: true }),
    validatePermissions: async () => [],
    close: async () => {},
  };
  return provider;
}

/** Adds a key whose current version is `ageMs` old. */
export function addKey(provider: FakeRotationProvider, clock: Clock, keyId: string, ageMs: number): void {
  const at = clock.now() - ageMs;
  provider.keys.set(keyId, { version: 1, createdAt: at, rotatedAt: at });
}

const GENESIS = "0".repeat(64);

function matches(record: EvidenceRecord, filter: EvidenceFilter = {}): boolean {
  return (
    (filter.tenantId === undefined || record.tenantId === filter.tenantId) &&
    (filter.provider === undefined || record.provider === filter.provider) &&
    (filter.keyId === undefined || record.keyId === filter.keyId) &&
    (filter.types === undefined || filter.types.includes(record.type))
  );
}

function chain(previous: EvidenceRecord | undefined, event: EvidenceEvent, time: string): EvidenceRecord {
  const body = { ...event, seq: (previous?.seq ?? 0) + 1, time, prevHash: previous?.hash ?? GENESIS };
  return { ...body, hash: createHash("sha256").update(JSON.stringify(body)).digest("hex") };
}

export interface MemoryEvidenceLog extends EvidenceLog {
  readonly all: EvidenceRecord[];
  /** The next append of this type rejects (a store outage). */
  failNext(type: EvidenceEvent["type"]): void;
}

export function memoryEvidenceLog(clock: Clock): MemoryEvidenceLog {
  const all: EvidenceRecord[] = [];
  const failing = new Set<string>();
  return {
    all,
    failNext: (type) => void failing.add(type),
    async append(event) {
      if (failing.delete(event.type)) throw new Error("evidence store unavailable");
      const record = chain(all.at(-1), event, new Date(clock.now()).toISOString());
      all.push(record);
      return record;
    },
    async *records(filter) {
      yield* all.filter((r) => matches(r, filter));
    },
    async close() {},
  };
}

/** JSON Lines, one record per line, fsync'ed before `append` resolves: a crash loses no acknowledged record. */
export function fileEvidenceLog(path: string): EvidenceLog {
  const read = (): EvidenceRecord[] =>
    existsSync(path)
      ? readFileSync(path, "utf8")
          .split("\n")
          .filter((line) => line.length > 0)
          .map((line) => JSON.parse(line) as EvidenceRecord)
      : [];
  const fd = openSync(path, "a", 0o600);
  let last = read().at(-1);
  return {
    async append(event) {
      const record = chain(last, event, new Date().toISOString());
      writeSync(fd, `${JSON.stringify(record)}\n`);
      fsyncSync(fd);
      last = record;
      return record;
    },
    async *records(filter) {
      yield* read().filter((r) => matches(r, filter));
    },
    async close() {
      closeSync(fd);
    },
  };
}

/** Collects values from an async iterable. */
export async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}

/**
 * Each rotation start with its outcome, as [start seq, outcome seq or undefined when open], in start
 * order: per key, an outcome closes the latest open start and must name the same previous version.
 * Written apart from the scheduler's own pairing, which the tests check against it.
 */
export function rotationPairs(records: readonly EvidenceRecord[]): Array<[number, number | undefined]> {
  const pairs = new Map<number, number | undefined>();
  const open = new Map<string, EvidenceRecord[]>();
  for (const record of records) {
    const key = `${record.provider}:${record.keyId}`;
    const stack = open.get(key) ?? [];
    open.set(key, stack);
    if (record.type === "key.rotation-started") {
      stack.push(record);
      pairs.set(record.seq, undefined);
    } else if (record.type === "key.rotated" || record.type === "key.rotation-failed") {
      const started = stack.pop();
      if (!started || started.previousVersion !== record.previousVersion) throw new Error(`outcome ${record.seq} closes no start of version ${record.previousVersion}`);
      pairs.set(started.seq, record.seq);
    }
  }
  return [...pairs];
}
