import { type Clock, systemClock } from "@kms/core";
import type { LockLease, LockProvider } from "../types";

/**
 * The default lock: an in-process map. Enough for one scheduler instance (it keeps two passes or two
 * tenants sharing a key from rotating it at once); several instances need `postgresLocks` or
 * `redisLocks`.
 */
export function embeddedLocks(options: { clock?: Clock } = {}): LockProvider {
  const clock = options.clock ?? systemClock;
  const held = new Map<string, { token: number; expiresAt: number }>();
  /** Last token handed out per name; kept after release so tokens keep increasing. */
  const lastToken = new Map<string, number>();
  return {
    async tryAcquire(name, ttlMs) {
      checkLockRequest(name, ttlMs);
      const current = held.get(name);
      if (current && clock.now() < current.expiresAt) return undefined;
      const token = (lastToken.get(name) ?? 0) + 1;
      lastToken.set(name, token);
      const entry = { token, expiresAt: clock.now() + ttlMs };
      held.set(name, entry);
      return {
        token,
        isValid: () => held.get(name) === entry && clock.now() < entry.expiresAt,
        async release() {
          if (held.get(name) === entry) held.delete(name);
        },
      } satisfies LockLease;
    },
    async close() {
      held.clear();
    },
  };
}

/** Lock names are built by the scheduler; a bad one or a bad TTL is a programming error. */
export function checkLockRequest(name: string, ttlMs: number): void {
  if (typeof name !== "string" || name.length === 0 || name.length > 1024) throw new RangeError("lock name must be 1 to 1024 characters");
  if (!Number.isInteger(ttlMs) || ttlMs < 1) throw new RangeError("lock ttlMs must be an integer >= 1");
}
