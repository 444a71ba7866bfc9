import { type Clock, systemClock } from "@kms/core";
import type { LockLease, LockProvider } from "../types";
import { checkLockRequest } from "./embedded";

/** What the lock needs of a node-redis client (structural: this package never imports `redis`). */
export interface RedisCommandable {
  sendCommand(args: string[]): Promise<unknown>;
}

export interface RedisLocksOptions {
  /** The app's connected node-redis client. */
  client: RedisCommandable;
  /** Prefix of the lock keys. Default `kms:rotation:lock:`. */
  prefix?: string;
  /** Measures the lease locally for `isValid()`; expiry between instances is Redis's. */
  clock?: Clock;
}

/** Deletes the lock only if it still holds our token, so a holder whose lease expired frees nothing. */
const RELEASE_SCRIPT = `if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) else return 0 end`;

/**
 * Leases in Redis: `SET <prefix>lease:<name> <token> NX PX <ttl>`, where the token comes from `INCR` on
 * `<prefix>token:<name>`, a counter that is never deleted, so tokens only increase (fencing). Released by a
 * compare-and-delete script.
 */
export function redisLocks(options: RedisLocksOptions): LockProvider {
  const { client } = options;
  const prefix = options.prefix ?? "kms:rotation:lock:";
  const clock = options.clock ?? systemClock;
  return {
    async tryAcquire(name, ttlMs) {
      checkLockRequest(name, ttlMs);
      const key = `${prefix}lease:${name}`;
      const startedAt = clock.now();
      const token = Number(await client.sendCommand(["INCR", `${prefix}token:${name}`]));
      const set = await client.sendCommand(["SET", key, String(token), "NX", "PX", String(ttlMs)]);
      if (set !== "OK") return undefined;
      const expiresAt = startedAt + ttlMs;
      let released = false;
      return {
        token,
        isValid: () => !released && clock.now() < expiresAt,
        async release() {
          if (released) return;
          released = true;
          await client.sendCommand(["EVAL", RELEASE_SCRIPT, "1", key, String(token)]);
        },
      } satisfies LockLease;
    },
    async close() {
      // The client is the app's: it closes it.
    },
  };
}
