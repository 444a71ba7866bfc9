/**
 * Stores for the shared cache tier: keyv over any keyv adapter (`keyvSharedCacheStore`), and the documented
 * one, Redis through keyv and @keyv/redis (`redisSharedCacheStore`, what `cache.shared.url` builds).
 * `keyv` and `@keyv/redis` are optional peer dependencies: loaded only when a shared tier is set up.
 */
import { createRequire } from "node:module";
import { KmsConfigError, configIssue } from "./errors";
import type { SharedCacheStore } from "./shared-cache";

/** The part of a keyv instance the tier uses. */
interface KeyvLike {
  getMany(keys: string[]): Promise<unknown[]>;
  set(key: string, value: string, ttl?: number): Promise<unknown>;
  delete(key: string): Promise<unknown>;
  disconnect?(): Promise<void>;
}

export interface KeyvSharedCacheOptions {
  /** Namespace of every name (default `kms`). */
  namespace?: string;
  /** The store's own set-if-absent (keyv has none), for locks: Redis's is `SET NX PX`. Without it no locks. */
  setIfAbsent?: SharedCacheStore["setIfAbsent"];
  /** Closes the store; default: keyv's `disconnect`. */
  close?: () => Promise<void>;
  connecting?: Promise<void>;
}

/**
 * A shared-cache store on keyv over any keyv storage adapter (`@keyv/redis`, `@keyv/postgres`, a
 * `Map` for tests...). Values are stored as the sealed text itself (no JSON wrapper), and store
 * errors reach the tier (which then skips the store) rather than read as "absent".
 */
export function keyvSharedCacheStore(adapter: object, options: KeyvSharedCacheOptions = {}): SharedCacheStore {
  const { Keyv } = load<{ Keyv: new (options: Record<string, unknown>) => KeyvLike }>("keyv");
  const keyv = new Keyv({
    store: adapter,
    namespace: options.namespace ?? "kms",
    useKeyPrefix: false,
    serialize: (data: { value?: unknown }) => String(data.value),
    deserialize: (text: string) => ({ value: text }),
    throwOnErrors: true,
  });
  return {
    async getMany(names) {
      const values = await keyv.getMany([...names]);
      return names.map((_, i) => (typeof values[i] === "string" ? (values[i] as string) : undefined));
    },
    async set(name, value, ttlMs) {
      await keyv.set(name, value, ttlMs);
    },
    ...(options.setIfAbsent === undefined ? {} : { setIfAbsent: options.setIfAbsent }),
    async delete(name) {
      await keyv.delete(name);
    },
    close: options.close ?? (async () => keyv.disconnect?.()),
    ...(options.connecting === undefined ? {} : { connecting: options.connecting }),
  };
}

export interface RedisSharedCacheOptions {
  /** `redis://` or `rediss://` (TLS) URL, credentials included if any. */
  url: string;
  /** Namespace of every name in Redis (`<keyPrefix>::<name>`). */
  keyPrefix: string;
  /** Time limit of a connection attempt. */
  connectTimeoutMs: number;
}

interface RedisClient {
  connect(): Promise<unknown>;
  on(event: "error", listener: (error: unknown) => void): unknown;
  set(key: string, value: string, options: { NX: true; PX: number }): Promise<string | null>;
  destroy?(): void;
  quit?(): Promise<unknown>;
  close?(): Promise<unknown>;
}

const requireHere = createRequire(__filename);

/**
 * node-redis client options for a client that must never be in the way: it reconnects by itself
 * (backoff up to 2 s) and fails commands at once while disconnected instead of queueing them. The
 * shared tier's client uses them; so can an app's own client for the same Redis (rotation leases).
 */
export function redisClientOptions(url: string, connectTimeoutMs: number) {
  return {
    url,
    disableOfflineQueue: true,
    socket: { connectTimeout: connectTimeoutMs, reconnectStrategy: (attempts: number) => Math.min(100 * 2 ** attempts, 2_000) },
  };
}

function load<T>(packageName: string): T {
  try {
    return requireHere(packageName) as T;
  } catch {
    throw new KmsConfigError([
      configIssue("cache.shared", "KMS_PROVIDER_NOT_INSTALLED", `the shared cache tier needs keyv and @keyv/redis: install them (pnpm add keyv @keyv/redis)`),
    ]);
  }
}

/**
 * Redis through keyv and @keyv/redis. The client reconnects by itself (backoff up to 2 s) and does
 * not queue commands while disconnected (they fail at once, and the tier skips Redis); locks are
 * `SET NX PX` on the same client.
 */
export function redisSharedCacheStore(options: RedisSharedCacheOptions): SharedCacheStore {
  const keyvRedis = load<{
    default: new (client: unknown, options: Record<string, unknown>) => object;
    createClient: (options: Record<string, unknown>) => RedisClient;
  }>("@keyv/redis");
  const client = keyvRedis.createClient(redisClientOptions(options.url, options.connectTimeoutMs));
  // Failures reach the tier through its operations; an unlistened "error" would crash the process.
  client.on("error", () => undefined);
  // Operations wait for the first connection (the tier allows them connectTimeoutMs meanwhile);
  // after it, a disconnected client fails them at once.
  // With Redis down at start-up the client keeps trying: the first attempt counts as over after connectTimeoutMs.
  const connected = Promise.race([
    client.connect().then(
      () => undefined,
      () => undefined,
    ),
    new Promise<void>((resolve) => setTimeout(resolve, options.connectTimeoutMs).unref()),
  ]);
  const store = new keyvRedis.default(client, { namespace: options.keyPrefix, throwOnConnectError: false, throwOnErrors: true });
  const shared = keyvSharedCacheStore(store, {
    namespace: options.keyPrefix,
    async setIfAbsent(name, value, ttlMs) {
      return (await client.set(`${options.keyPrefix}::${name}`, value, { NX: true, PX: ttlMs })) === "OK";
    },
    async close() {
      if (client.destroy) client.destroy();
      else await (client.close ?? client.quit)?.call(client).catch(() => undefined);
    },
  });
  const afterConnect =
    <A extends unknown[], R>(op: (...args: A) => Promise<R>) =>
    async (...args: A): Promise<R> => {
      await connected;
      return op(...args);
    };
  return {
    getMany: afterConnect(shared.getMany),
    set: afterConnect(shared.set),
    setIfAbsent: afterConnect(shared.setIfAbsent!),
    delete: afterConnect(shared.delete),
    close: shared.close,
    connecting: connected,
  };
}
