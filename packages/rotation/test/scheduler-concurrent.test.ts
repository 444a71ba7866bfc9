/**
 * Acceptance: two scheduler instances, each with its own connection, run a pass over the same
 * 10,000 tenants at once on a shared PostgreSQL or Redis lock: every due key is rotated exactly once.
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "@jest/globals";
import { ManualClock } from "@kms/core";
import { Pool } from "pg";
import { createClient } from "redis";
import { type TenantKey, createRotationScheduler, postgresLocks, redisLocks } from "../src";
import type { LockProvider } from "../src/types";
import { DAY_MS, addKey, fakeRotationProvider, memoryEvidenceLog } from "./scheduler-fakes";

const DATABASE_URL = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const TENANTS = 10_000;
const suffix = randomBytes(6).toString("hex");
const table = `kms_rotation_locks_${suffix}`;
const prefix = `kms:test:${suffix}:`;
const pools = [new Pool({ connectionString: DATABASE_URL, max: 8 }), new Pool({ connectionString: DATABASE_URL, max: 8 })];
const redisClients = [createClient({ url: REDIS_URL }), createClient({ url: REDIS_URL })];

async function twoInstancesRotateEachDueKeyOnce(locksOf: (instance: number, clock: ManualClock) => LockProvider): Promise<void> {
  const clock = new ManualClock();
  const provider = fakeRotationProvider(clock);
  const evidence = memoryEvidenceLog(clock);
  let seed = 42;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const tenants: TenantKey[] = [];
  const due = new Set<string>();
  for (let i = 0; i < TENANTS; i++) {
    const ageMs = Math.floor(random() * 180 * DAY_MS);
    addKey(provider, clock, `k${i}`, ageMs);
    tenants.push({ tenantId: `t${i}`, provider: "fake", keyId: `k${i}` });
    if (ageMs >= 90 * DAY_MS) due.add(`k${i}`);
  }
  const instances = [0, 1].map((instance) =>
    createRotationScheduler({ providers: { fake: provider }, tenants, evidence, clock, locks: locksOf(instance, clock), concurrency: 16, actor: `scheduler@${instance}` }),
  );
  const [a, b] = await Promise.all(instances.map((s) => s.runOnce()));

  expect(new Set(provider.rotations.keys())).toEqual(due);
  expect([...provider.rotations.values()].filter((n) => n !== 1)).toEqual([]);
  expect(a!.rotated + b!.rotated).toBe(due.size);
  expect(a!.failed + b!.failed).toBe(0);
  const rotated = evidence.all.filter((r) => r.type === "key.rotated");
  expect(rotated).toHaveLength(due.size);
  expect(new Set(rotated.map((r) => r.keyId)).size).toBe(due.size);
  expect(evidence.all).toHaveLength(2 * due.size);
  // Both did part of the work: they really ran side by side (each rotates about half).
  expect(a!.rotated).toBeGreaterThan(0);
  expect(b!.rotated).toBeGreaterThan(0);
}

describe("two scheduler instances on a shared lock", () => {
  it("PostgreSQL: rotate each due key of 10,000 tenants once", async () => {
    await twoInstancesRotateEachDueKeyOnce((i, clock) => postgresLocks({ pool: pools[i]!, table, clock }));
  });

  it("Redis: rotate each due key of 10,000 tenants once", async () => {
    await twoInstancesRotateEachDueKeyOnce((i, clock) => redisLocks({ client: redisClients[i]!, prefix, clock }));
  });
});

beforeAll(async () => {
  await Promise.all(redisClients.map((c) => c.connect()));
});

afterAll(async () => {
  await pools[0]!.query(`DROP TABLE IF EXISTS "${table}"`);
  await Promise.all(pools.map((p) => p.end()));
  const keys = await redisClients[0]!.keys(`${prefix}*`);
  if (keys.length > 0) await redisClients[0]!.del(keys);
  await Promise.all(redisClients.map((c) => c.quit()));
});
