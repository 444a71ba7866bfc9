import { type Clock, systemClock } from "@kms/core";
import type { LockLease, LockProvider } from "../types";
import { checkLockRequest } from "./embedded";

/** What the lock needs of a `pg.Pool` (structural: this package never imports `pg`). */
export interface PostgresLocksPool {
  query(text: string, values?: unknown[]): Promise<{ rows: Record<string, unknown>[]; rowCount: number | null }>;
}

export interface PostgresLocksOptions {
  /** The app's `pg.Pool` (or client). */
  pool: PostgresLocksPool;
  /** The lease table, created on first use. Default `kms_rotation_locks`. */
  table?: string;
  /** Measures the lease locally for `isValid()`; expiry between instances is the database's clock. */
  clock?: Clock;
}

const TABLE_PATTERN = /^[a-z_][a-z0-9_]{0,62}$/;
/**
 * A concurrent CREATE TABLE IF NOT EXISTS may lose the race on the catalog, with unique_violation
 * (23505), duplicate_table (42P07) or duplicate_object (42710: the table's row type): it exists then.
 */
const ALREADY_CREATED = new Set(["23505", "42P07", "42710"]);

/**
 * Leases in a PostgreSQL table: one row per lock name, taken by a single atomic upsert when free or
 * expired (by the database's clock, so instances' clock skew does not matter). The row stays after
 * release, so its `token` only ever increases: a fencing token.
 */
export function postgresLocks(options: PostgresLocksOptions): LockProvider {
  const table = options.table ?? "kms_rotation_locks";
  if (!TABLE_PATTERN.test(table)) throw new RangeError("table must be a lower-case SQL identifier ([a-z_][a-z0-9_]{0,62})");
  const { pool } = options;
  const clock = options.clock ?? systemClock;
  let created: Promise<void> | undefined;
  const ensureTable = () =>
    (created ??= pool
      .query(`CREATE TABLE IF NOT EXISTS "${table}" (name text PRIMARY KEY, token bigint NOT NULL, expires_at timestamptz NOT NULL)`)
      .then(
        () => undefined,
        (error: { code?: string }) => {
          if (ALREADY_CREATED.has(error?.code ?? "")) return;
          created = undefined;
          throw error;
        },
      ));
  return {
    async tryAcquire(name, ttlMs) {
      checkLockRequest(name, ttlMs);
      await ensureTable();
      const startedAt = clock.now();
      const { rows } = await pool.query(
        `INSERT INTO "${table}" AS l (name, token, expires_at) VALUES ($1, 1, now() + $2 * interval '1 millisecond')
         ON CONFLICT (name) DO UPDATE SET token = l.token + 1, expires_at = EXCLUDED.expires_at WHERE l.expires_at <= now()
         RETURNING token`,
        [name, ttlMs],
      );
      if (rows.length === 0) return undefined;
      const token = Number(rows[0]!.token);
      // Counted from before the query: locally the lease ends no later than in the database.
      const expiresAt = startedAt + ttlMs;
      let released = false;
      return {
        token,
        isValid: () => !released && clock.now() < expiresAt,
        async release() {
          if (released) return;
          released = true;
          await pool.query(`UPDATE "${table}" SET expires_at = '-infinity' WHERE name = $1 AND token = $2`, [name, token]);
        },
      } satisfies LockLease;
    },
    async close() {
      // The pool is the app's: it closes it.
    },
  };
}
