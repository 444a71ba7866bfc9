/**
 * What several server instances share besides the KMS: the rotation leases (`KMS_ROTATION_LOCKS_URL`,
 * Redis or PostgreSQL) and the evidence log (`KMS_EVIDENCE_DATABASE_URL`, PostgreSQL). The clients
 * are the server's own: @kms/rotation takes them structurally and never closes them, so `close()`
 * here does, once the scheduler has stopped and the evidence log is closed.
 *
 * URLs hold credentials: nothing here logs one or puts one in a message.
 */
import { createClient } from "@keyv/redis";
import { redisClientOptions } from "@kms/core";
import { postgresLocks, redisLocks, type LockProvider, type PgEvidenceStore, pgEvidenceStore } from "@kms/rotation";
import { Pool } from "pg";
import type { RotationLocksConfig } from "./config";

/** The evidence table (in the schema the connection's `search_path` names first). */
export const EVIDENCE_TABLE = "kms_evidence";
/** How long a connection attempt may take, and how long start-up waits for the lock store. */
const CONNECT_TIMEOUT_MS = 5_000;

type RedisClient = ReturnType<typeof createClient>;

/** One client per distinct URL: the evidence log and the locks share a pool when their URLs are equal. */
export interface SharedConnections {
  postgres(url: string): Pool;
  redis(url: string): RedisClient;
  /** Ends every pool and destroys every Redis client; idempotent. */
  close(): Promise<void>;
}

export function createSharedConnections(): SharedConnections {
  const pools = new Map<string, Pool>();
  const clients = new Map<string, RedisClient>();
  let closed: Promise<void> | undefined;
  return {
    postgres(url) {
      let pool = pools.get(url);
      if (pool === undefined) {
        // The URL's own parameters (application_name, sslmode, options=-c search_path=…) win.
        pool = new Pool({ connectionString: url, application_name: "kms-server", max: 5, connectionTimeoutMillis: CONNECT_TIMEOUT_MS });
        // An idle connection's error (the database restarted) would crash the process unlistened; the
        // pool replaces the connection, and a query's own failure reaches its caller.
        pool.on("error", () => undefined);
        pools.set(url, pool);
      }
      return pool;
    },
    redis(url) {
      let client = clients.get(url);
      if (client === undefined) {
        // The shared cache tier's client options: reconnects by itself, fails commands at once while
        // disconnected instead of queueing them (a lease is then not taken).
        client = createClient(redisClientOptions(url, CONNECT_TIMEOUT_MS));
        // Failures reach the locks' callers through their commands; an unlistened "error" would crash the process.
        client.on("error", () => undefined);
        clients.set(url, client);
      }
      return client;
    },
    close() {
      closed ??= (async () => {
        for (const client of clients.values()) client.destroy();
        await Promise.all([...pools.values()].map((pool) => pool.end().catch(() => undefined)));
      })();
      return closed;
    },
  };
}

/**
 * The rotation leases for `KMS_ROTATION_LOCKS_URL` (`undefined`: the caller's default, the in-process
 * lock). Start-up waits up to 5 s for the store; unreachable, it is a warning, not a failure: the
 * clients keep trying, encrypt and decrypt do not need it, and a rotation meanwhile fails (the
 * scheduler retries with backoff, on demand answers 500).
 */
export async function openRotationLocks(
  config: RotationLocksConfig | undefined,
  connections: SharedConnections,
): Promise<{ locks: LockProvider | undefined; warning?: string }> {
  if (config === undefined) return { locks: undefined };
  let probe: Promise<unknown>;
  let locks: LockProvider;
  if (config.kind === "redis") {
    const client = connections.redis(config.url);
    // connect() settles only once connected (the client keeps trying): its first failure is an "error" event.
    probe = Promise.race([client.connect(), new Promise((_, reject) => client.once("error", reject))]);
    locks = redisLocks({ client });
  } else {
    const pool = connections.postgres(config.url);
    probe = pool.query("SELECT 1");
    locks = postgresLocks({ pool });
  }
  const store = config.kind === "redis" ? "Redis" : "PostgreSQL";
  const reached = await Promise.race([
    probe.then(
      () => true,
      () => false,
    ),
    new Promise<boolean>((resolve) => setTimeout(() => resolve(false), CONNECT_TIMEOUT_MS).unref()),
  ]);
  return reached
    ? { locks }
    : { locks, warning: `KMS_ROTATION_LOCKS_URL: ${store} is not reachable at start-up; rotations fail until it is (the client keeps trying)` };
}

/**
 * The PostgreSQL evidence store for `KMS_EVIDENCE_DATABASE_URL`. The table is created (with the
 * triggers that refuse UPDATE, DELETE and TRUNCATE) only when it does not exist yet: a table created
 * beforehand by another role, with this one granted SELECT and INSERT only, is used as it is.
 */
export async function openPgEvidenceStore(url: string, connections: SharedConnections): Promise<PgEvidenceStore> {
  const pool = connections.postgres(url);
  const store = pgEvidenceStore({ pool, table: EVIDENCE_TABLE });
  try {
    const { rows } = await pool.query("SELECT to_regclass($1) IS NOT NULL AS present", [EVIDENCE_TABLE]);
    if (rows[0]?.present !== true) await store.migrate();
  } catch (error) {
    // pg's messages name the host or the user at most, never the password.
    throw new Error(`KMS_EVIDENCE_DATABASE_URL: cannot open the evidence log in PostgreSQL: ${(error as Error).message}`, { cause: error });
  }
  return store;
}
