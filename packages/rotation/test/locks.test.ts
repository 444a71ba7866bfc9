import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "@jest/globals";
import { ManualClock } from "@kms/core";
import { Pool } from "pg";
import { createClient } from "redis";
import { embeddedLocks, postgresLocks, redisLocks } from "../src";
import type { LockProvider } from "../src/types";

const DATABASE_URL = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const suffix = randomBytes(6).toString("hex");

/** Takes the lock once its (short) lease has expired by the server's clock: polls, never sleeps a fixed time. */
async function acquireWhenFree(locks: LockProvider, name: string, ttlMs: number) {
  for (;;) {
    const lease = await locks.tryAcquire(name, ttlMs);
    if (lease) return lease;
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

/** The contract every lock provider meets. */
function lockContract(label: string, make: (clock: ManualClock) => LockProvider) {
  describe(`${label} locks`, () => {
    it("gives a lock to one holder at a time, with increasing tokens", async () => {
      const clock = new ManualClock();
      const locks = make(clock);
      const name = `contract-${suffix}-a`;
      const first = await locks.tryAcquire(name, 60_000);
      expect(first).toBeDefined();
      expect(first!.isValid()).toBe(true);
      expect(await locks.tryAcquire(name, 60_000)).toBeUndefined();
      expect(await locks.tryAcquire(`${name}-other`, 60_000)).toBeDefined();
      await first!.release();
      expect(first!.isValid()).toBe(false);
      const second = await locks.tryAcquire(name, 60_000);
      expect(second!.token).toBeGreaterThan(first!.token);
      await second!.release();
    });

    it("hands an expired lease on; the stale holder knows, and its release frees nothing", async () => {
      const clock = new ManualClock();
      const locks = make(clock);
      const name = `contract-${suffix}-b`;
      const stale = await locks.tryAcquire(name, 5);
      await clock.advance(5);
      expect(stale!.isValid()).toBe(false);
      const current = await acquireWhenFree(locks, name, 60_000);
      expect(current.token).toBeGreaterThan(stale!.token);
      await stale!.release();
      expect(await locks.tryAcquire(name, 60_000)).toBeUndefined();
      expect(current.isValid()).toBe(true);
      await current.release();
    });

    it("refuses a bad name or TTL", async () => {
      const locks = make(new ManualClock());
      await expect(locks.tryAcquire("", 1000)).rejects.toThrow(RangeError);
      await expect(locks.tryAcquire("x", 0)).rejects.toThrow(RangeError);
      await expect(locks.tryAcquire("x", 1.5)).rejects.toThrow(RangeError);
    });
  });
}

lockContract("embedded", (clock) => embeddedLocks({ clock }));

const table = `kms_rotation_locks_${suffix}`;
const pool = new Pool({ connectionString: DATABASE_URL, max: 4 });
lockContract("PostgreSQL", (clock) => postgresLocks({ pool, table, clock }));

const redis = createClient({ url: REDIS_URL });
const prefix = `kms:test:${suffix}:`;
lockContract("Redis", (clock) => redisLocks({ client: redis, prefix, clock }));

describe("lock set-up", () => {
  it("PostgreSQL refuses a table name that is not a plain identifier", () => {
    expect(() => postgresLocks({ pool, table: 'x"; drop table y; --' })).toThrow(RangeError);
  });

  it("PostgreSQL creates its table once, even when two providers race to create it", async () => {
    const shared = `kms_rotation_locks_race_${suffix}`;
    const [a, b] = [postgresLocks({ pool, table: shared }), postgresLocks({ pool, table: shared })];
    const leases = await Promise.all([a.tryAcquire("race", 60_000), b.tryAcquire("race", 60_000)]);
    expect(leases.filter(Boolean)).toHaveLength(1);
    await pool.query(`DROP TABLE "${shared}"`);
  });
});

beforeAll(async () => {
  await redis.connect();
});

afterAll(async () => {
  await pool.query(`DROP TABLE IF EXISTS "${table}"`);
  await pool.end();
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length > 0) await redis.del(keys);
  await redis.quit();
});
