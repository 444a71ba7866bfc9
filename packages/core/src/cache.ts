/**
 * The data-key cache: one instance per side (encrypt, decrypt), in-process LRU.
 *
 * - Encrypt side: entries keyed by (tenant, key, context); each data key is retired after
 *   `maxAgeMs` (shortened by up to `jitter` at random), `maxMessages` or `maxBytes`, like the AWS
 *   Encryption SDK's caching materials manager. A message larger than `maxBytes` gets a data key of
 *   its own that is never cached.
 * - Decrypt side: entries keyed by (tenant, exact key section of the envelope); age limits only.
 * - Single-flight: concurrent misses for one entry share one load; a failed load is not remembered.
 * - Stale-if-error: when a refresh fails because the KMS is unavailable (timeout, outage, open
 *   circuit, throttling, overload), the expired entry keeps serving until `hardMaxAgeMs`.
 * - Key material is zeroed when an entry leaves the cache. Entries are used only inside `withKey`'s
 *   synchronous callback, so no caller can hold a key across an await while it is being zeroed.
 * - Tracing: a lookup is an OpenTelemetry span `kms.cache.lookup` (side, provider, hit; on a miss the
 *   KMS operation's span is its child): every miss, and every hit inside a recorded trace. Attributes
 *   never hold a tenant id, key or context.
 */
import { createHash } from "node:crypto";
import { type Span, SpanStatusCode, context, trace } from "@opentelemetry/api";
import type { Clock } from "./clock";
import { UNAVAILABLE_NOW_CODES, isKmsError } from "./errors";
import { type DataKeyMaterial, zeroMaterial } from "./envelope";
import type { CacheSide, EvictionReason, KmsEvents } from "./events";

export interface CacheLimits {
  maxAgeMs: number;
  hardMaxAgeMs: number;
  capacity: number;
  jitter: number;
  /** Encrypt side only. */
  maxMessages?: number;
  /** Encrypt side only. */
  maxBytes?: number;
}

/** Whose data key an entry holds: the tenant, and the key (provider and key id) that wraps it. */
export interface EntryOwner {
  readonly tenantId: string;
  readonly provider: string;
  readonly keyId: string;
}

export interface CacheEntry<T> extends EntryOwner {
  readonly value: T;
  readonly material: DataKeyMaterial;
  readonly createdAt: number;
  readonly freshUntil: number;
  readonly hardExpiry: number;
  messages: number;
  bytes: number;
}

export interface Loaded<T> {
  value: T;
  material: DataKeyMaterial;
  /** When the key was loaded from the KMS, if before now (the shared tier's entries): its age counts from then. */
  createdAt?: number;
}

const SWEEP_INTERVAL_MS = 60_000;

/** The tracer of core (a proxy: it follows whatever provider the app registers, or none). */
const tracer = trace.getTracer("@kms/core");
export const CACHE_LOOKUP_SPAN = "kms.cache.lookup";

/** Keys longer than this are stored as their SHA-256: a long context or key id costs 65 bytes per entry, not kilobytes. */
const MAX_PLAIN_KEY_LENGTH = 512;

/**
 * The form a key is stored under. Callers' keys start with a digit or a provider id, never "#", so
 * a hashed key cannot equal a plain one; hashing is idempotent here (a hashed key is short). UTF-16
 * code units are hashed, not UTF-8: a key may hold an unpaired surrogate (an input not validated
 * yet), which UTF-8 would turn into U+FFFD and so into another key's digest.
 */
function compactKey(key: string): string {
  return key.length <= MAX_PLAIN_KEY_LENGTH ? key : `#${createHash("sha256").update(key, "utf16le").digest("hex")}`;
}

/** One load in flight, shared by every concurrent miss for its key. */
interface Flight {
  done: Promise<void>;
  readonly owner: EntryOwner;
  /** Set by invalidation: the loaded key is zeroed instead of installed. */
  discarded: boolean;
}

export class KeyCache<T> {
  readonly #side: CacheSide;
  readonly #limits: CacheLimits;
  readonly #clock: Clock;
  readonly #events: KmsEvents;
  readonly #random: () => number;
  readonly #entries = new Map<string, CacheEntry<T>>();
  readonly #inFlight = new Map<string, Flight>();
  /** The entry at the LRU's young end: a hit on it needs no move (the hot path's common case). */
  #youngest: CacheEntry<T> | undefined;
  #cancelSweep: (() => void) | undefined;
  hits = 0;
  misses = 0;

  constructor(side: CacheSide, limits: CacheLimits, deps: { clock: Clock; events: KmsEvents; random?: () => number }) {
    this.#side = side;
    this.#limits = limits;
    this.#clock = deps.clock;
    this.#events = deps.events;
    this.#random = deps.random ?? Math.random;
    this.#scheduleSweep();
  }

  get size(): number {
    return this.#entries.size;
  }

  /** Entries (fresh or kept for stale-if-error) from `provider`. Walks the cache: for health checks, not hot paths. */
  countFrom(provider: string): number {
    let n = 0;
    for (const entry of this.#entries.values()) if (entry.provider === provider) n++;
    return n;
  }

  /**
   * Runs `use` synchronously with a usable entry for `key` (counting `bytes` and one message
   * against it), loading the entry with `load` when there is none.
   */
  withKey<R>(
    key: string,
    meta: EntryOwner & { bytes: number },
    load: () => Promise<Loaded<T>>,
    use: (entry: CacheEntry<T>) => R,
  ): Promise<R> {
    if (this.#limits.maxBytes !== undefined && meta.bytes > this.#limits.maxBytes) {
      return this.#withOneOff(meta, load, use);
    }
    key = compactKey(key);
    const hit = this.take(key, meta.bytes);
    if (hit === undefined) return this.#withLoaded(key, meta, load, use);
    try {
      return Promise.resolve(use(hit));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * The hit path alone, synchronous: a fresh entry within its limits (counted as a hit, and against
   * its limits), or undefined. Use the entry before the next await; `withKey` does the rest.
   */
  take(key: string, bytes: number): CacheEntry<T> | undefined {
    if (this.#limits.maxBytes !== undefined && bytes > this.#limits.maxBytes) return undefined;
    // Timed only for listeners (metrics), on the wall clock: the injected clock is for expiry.
    const started = this.#events.active ? performance.now() : 0;
    const hit = this.#take(compactKey(key), bytes);
    if (hit === undefined) return undefined;
    this.hits++;
    if (this.#events.active) this.#emitHit(hit, false, performance.now() - started);
    // A hit is a span only inside a recorded trace (a request's): a root span per in-memory hit would
    // flood any tracing backend and cost more than the hit itself. Misses are always spans.
    if (trace.getActiveSpan()?.isRecording() === true) {
      tracer.startSpan(CACHE_LOOKUP_SPAN, { attributes: { "kms.cache.side": this.#side, "kms.provider": hit.provider, "kms.cache.hit": true } }).end();
    }
    return hit;
  }

  /**
   * Runs a miss under its lookup span: the load's KMS span becomes its child; the outcome (error code,
   * coalesced into another load, stale) is recorded on it.
   */
  async #traced<R>(provider: string, run: (span: Span) => Promise<R>): Promise<R> {
    const span = tracer.startSpan(CACHE_LOOKUP_SPAN, { attributes: { "kms.cache.side": this.#side, "kms.provider": provider, "kms.cache.hit": false } });
    try {
      return await context.with(trace.setSpan(context.active(), span), run, undefined, span);
    } catch (error) {
      const code = isKmsError(error) ? error.code : "KMS_PROVIDER_ERROR";
      span.setAttribute("kms.error.code", code);
      span.setStatus({ code: SpanStatusCode.ERROR, message: code });
      throw error;
    } finally {
      span.end();
    }
  }

  #withLoaded<R>(
    key: string,
    meta: EntryOwner & { bytes: number },
    load: () => Promise<Loaded<T>>,
    use: (entry: CacheEntry<T>) => R,
  ): Promise<R> {
    this.misses++;
    return this.#traced(meta.provider, async (span) => {
      let coalesced = false;
      for (;;) {
        const flight = this.#inFlight.get(key)?.done;
        if (flight !== undefined) span.setAttribute("kms.cache.coalesced", true);
        if (this.#events.active) {
          this.#events.emit({ type: "cache.miss", side: this.#side, tenantId: meta.tenantId, provider: meta.provider, coalesced: coalesced || flight !== undefined });
        }
        try {
          await (flight ?? this.#fill(key, meta, load));
        } catch (error) {
          const stale = this.#takeStale(key, meta.bytes, error);
          if (!stale) throw error;
          span.setAttribute("kms.cache.stale", true);
          if (this.#events.active) this.#emitHit(meta, true);
          return use(stale);
        }
        const entry = this.#take(key, meta.bytes);
        if (entry) return use(entry);
        // Another waiter exhausted or invalidated the new entry first: load again.
        coalesced = false;
      }
    });
  }

  /** Drops every entry of the tenant (zeroing keys); its loads in flight will not install. Other tenants' are untouched. */
  invalidateTenant(tenantId: string): void {
    this.#invalidateWhere((owner) => owner.tenantId === tenantId);
  }

  /** Drops every entry wrapped under the key, whichever tenant's (zeroing keys); its loads in flight will not install. */
  invalidateKey(provider: string, keyId: string): void {
    this.#invalidateWhere((owner) => owner.provider === provider && owner.keyId === keyId);
  }

  #invalidateWhere(matches: (owner: EntryOwner) => boolean): void {
    for (const [key, flight] of this.#inFlight) {
      if (matches(flight.owner)) this.#discard(key, flight);
    }
    for (const [key, entry] of this.#entries) {
      if (matches(entry)) this.#evict(key, entry, "invalidated");
    }
  }

  clear(): void {
    for (const [key, flight] of this.#inFlight) this.#discard(key, flight);
    for (const [key, entry] of this.#entries) this.#evict(key, entry, "invalidated");
    this.#cancelSweep?.();
    this.#cancelSweep = undefined;
  }

  /** A fresh entry within its limits, counted and moved to the LRU's young end; else undefined. */
  #take(key: string, bytes: number): CacheEntry<T> | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    const now = this.#clock.now();
    if (now >= entry.hardExpiry) {
      this.#evict(key, entry, "hard-max-age");
      return undefined;
    }
    if (now >= entry.freshUntil) return undefined; // kept for stale-if-error until replaced
    const limits = this.#limits;
    if (limits.maxMessages !== undefined && entry.messages >= limits.maxMessages) {
      this.#evict(key, entry, "max-messages");
      return undefined;
    }
    if (limits.maxBytes !== undefined && entry.bytes + bytes > limits.maxBytes) {
      this.#evict(key, entry, "max-bytes");
      return undefined;
    }
    entry.messages++;
    entry.bytes += bytes;
    if (entry !== this.#youngest) {
      this.#entries.delete(key);
      this.#entries.set(key, entry);
      this.#youngest = entry;
    }
    return entry;
  }

  #takeStale(key: string, bytes: number, error: unknown): CacheEntry<T> | undefined {
    if (!isKmsError(error) || !UNAVAILABLE_NOW_CODES.has(error.code)) return undefined;
    const entry = this.#entries.get(key);
    if (entry === undefined || this.#clock.now() >= entry.hardExpiry) return undefined;
    const limits = this.#limits;
    if (limits.maxMessages !== undefined && entry.messages >= limits.maxMessages) return undefined;
    if (limits.maxBytes !== undefined && entry.bytes + bytes > limits.maxBytes) return undefined;
    entry.messages++;
    entry.bytes += bytes;
    return entry;
  }

  #fill(key: string, meta: EntryOwner, load: () => Promise<Loaded<T>>): Promise<void> {
    const flight: Flight = { done: Promise.resolve(), owner: { tenantId: meta.tenantId, provider: meta.provider, keyId: meta.keyId }, discarded: false };
    const settle = () => {
      if (this.#inFlight.get(key) === flight) this.#inFlight.delete(key);
    };
    flight.done = load().then(
      (loaded) => {
        settle();
        if (flight.discarded) zeroMaterial(loaded.material);
        else this.#install(key, meta, loaded);
      },
      (error: unknown) => {
        settle();
        throw error;
      },
    );
    this.#inFlight.set(key, flight);
    return flight.done;
  }

  /** An invalidated load: its result will be zeroed, not installed; new callers start a load of their own. */
  #discard(key: string, flight: Flight): void {
    flight.discarded = true;
    this.#inFlight.delete(key);
  }

  #install(key: string, meta: EntryOwner, loaded: Loaded<T>): void {
    const now = this.#clock.now();
    const { maxAgeMs, hardMaxAgeMs, jitter } = this.#limits;
    const previous = this.#entries.get(key);
    if (previous) this.#evict(key, previous, "max-age");
    const born = Math.min(loaded.createdAt ?? now, now);
    const entry: CacheEntry<T> = {
      value: loaded.value,
      material: loaded.material,
      tenantId: meta.tenantId,
      provider: meta.provider,
      keyId: meta.keyId,
      createdAt: born,
      // Fresh for at least this turn: an entry installed already stale would be loaded again and again.
      freshUntil: Math.max(born + Math.floor(maxAgeMs * (1 - jitter * this.#random())), now + 1),
      hardExpiry: born + hardMaxAgeMs,
      messages: 0,
      bytes: 0,
    };
    this.#entries.set(key, entry);
    this.#youngest = entry;
    while (this.#entries.size > this.#limits.capacity) {
      const [oldestKey, oldest] = this.#entries.entries().next().value as [string, CacheEntry<T>];
      this.#evict(oldestKey, oldest, "capacity");
    }
  }

  #withOneOff<R>(meta: EntryOwner & { bytes: number }, load: () => Promise<Loaded<T>>, use: (entry: CacheEntry<T>) => R): Promise<R> {
    this.misses++;
    if (this.#events.active) {
      this.#events.emit({ type: "cache.miss", side: this.#side, tenantId: meta.tenantId, provider: meta.provider, coalesced: false });
    }
    return this.#traced(meta.provider, async () => {
      const loaded = await load();
      const now = this.#clock.now();
      try {
        return use({ ...loaded, ...meta, createdAt: now, freshUntil: now, hardExpiry: now, messages: 1 });
      } finally {
        zeroMaterial(loaded.material);
      }
    });
  }

  #evict(key: string, entry: CacheEntry<T>, reason: EvictionReason): void {
    this.#entries.delete(key);
    if (entry === this.#youngest) this.#youngest = undefined;
    zeroMaterial(entry.material);
    if (this.#events.active) this.#events.emit({ type: "cache.evict", side: this.#side, provider: entry.provider, reason });
  }

  #emitHit(meta: { tenantId: string; provider: string }, stale: boolean, lookupMs?: number): void {
    this.#events.emit({
      type: "cache.hit",
      side: this.#side,
      tenantId: meta.tenantId,
      provider: meta.provider,
      stale,
      ...(lookupMs === undefined ? {} : { lookupMs }),
    });
  }

  /** Zeroes entries past their hard max age even when nobody asks for them again. */
  #scheduleSweep(): void {
    this.#cancelSweep = this.#clock.setTimer(SWEEP_INTERVAL_MS, () => {
      const now = this.#clock.now();
      for (const [key, entry] of this.#entries) {
        if (now >= entry.hardExpiry) this.#evict(key, entry, "hard-max-age");
      }
      this.#scheduleSweep();
    });
  }
}
