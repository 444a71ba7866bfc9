/**
 * The shared cache tier: data keys shared between instances through a key-value store (any keyv
 * store; Redis is the documented one), behind each instance's in-process cache. docs/SCALING.md
 * is the reader's version of this comment.
 *
 * - Sealed: every value is AES-256-GCM under a cache-sealing key, with the entry's name as AAD. The
 *   sealing key is a data key of the configured KMS: its wrapped form is in the store (a record named
 *   by its id), each instance unwraps it once. A modified, swapped, moved or forged value fails
 *   authentication: it is counted (`cache.integrity-failure`, tier `shared`), deleted and loaded
 *   from the KMS instead, never used. The store holds no key in the clear and no tenant id (names
 *   are digests).
 * - Sealing keys rotate by epoch (`sealingKeyRotationMs`): one instance creates an epoch's key under
 *   a lock, each instance moves to it at its own random offset into the epoch (no herd), and values
 *   name the key they are sealed under, so keys of past epochs still open their values.
 * - Never in the way: each store operation has a timeout; a failed or late one marks the tier
 *   degraded and it is skipped (the in-process tier and the KMS serve) until `retryAfterMs` has
 *   passed, when one request probes it again. The Redis client reconnects by itself.
 * - Distributed single-flight: a cold key is loaded from the KMS by the one instance holding a short
 *   lock in the store; the others poll the store for its result (stores without `setIfAbsent`: no
 *   lock, each instance loads).
 * - Revocation: `invalidateTenant`/`invalidateKey` also write a marker (the time, kept
 *   `hardMaxAgeMs`) that keeps every instance from using the tenant's (or key's) entries made before
 *   it; entries made after it are shared as usual.
 */
import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes, timingSafeEqual } from "node:crypto";
import type { Clock } from "./clock";
import { type KeySection, fromBase64Url, parseKeySection, toBase64Url } from "./envelope";
import { UNAVAILABLE_NOW_CODES, isKmsError } from "./errors";
import type { CacheSide, KmsEvents } from "./events";
import { type EncryptionContext, copyKeyBytes } from "./provider";

/** What the tier needs of a store. Values are text; `ttlMs` is always set. */
export interface SharedCacheStore {
  /** The values of `names`, in order (undefined where absent): one round trip where the store allows. */
  getMany(names: readonly string[]): Promise<(string | undefined)[]>;
  set(name: string, value: string, ttlMs: number): Promise<void>;
  /** Sets `name` only when it is absent, and says whether it did. Without it the tier takes no locks. */
  setIfAbsent?(name: string, value: string, ttlMs: number): Promise<boolean>;
  delete(name: string): Promise<void>;
  close(): Promise<void>;
  /** Settles when the store's first connection attempt does; until then operations get `connectTimeoutMs`. */
  readonly connecting?: Promise<void>;
}

export interface SharedCacheSettings {
  /** Each store operation's time limit; past it the tier is skipped. */
  timeoutMs: number;
  /** The limit instead while the store's first connection is being made (at start-up). */
  connectTimeoutMs: number;
  /** How long a failed tier is skipped before one request probes it again. */
  retryAfterMs: number;
  /** How long a cold key's loader holds the lock, and so the longest another instance polls for its result. */
  lockTtlMs: number;
  /** A new sealing key per this period. */
  sealingKeyRotationMs: number;
  /** Revocation markers live this long (the in-process tier's hard max age: no entry outlives it). */
  hardMaxAgeMs: number;
}

/** The KMS calls of the sealing key, made by the client through its provider's policy. */
export interface SealingKeyKms {
  /** A new data key under the sealing key's KEK: its plaintext and its encoded key section. */
  generate(context: EncryptionContext): Promise<{ plaintextKey: Buffer; keySection: Buffer }>;
  unwrap(keySection: KeySection, context: EncryptionContext): Promise<Buffer>;
}

/** An entry's contents: the data key and side data (the encrypt side's key section). */
export interface SharedValue {
  dek: Buffer;
  extra: Buffer;
}

export interface SharedLoaded extends SharedValue {
  /** When the data key was loaded from the KMS (by whichever instance): its age counts from here. */
  createdAt: number;
  /** Read from the store (so already shared), rather than loaded from the KMS. */
  fromStore?: boolean;
}

/** Whose entry, for revocation markers and events. */
export interface SharedOwner {
  tenantId: string;
  provider: string;
  keyId: string;
}

export interface SharedLookup {
  side: CacheSide;
  /** The in-process cache key: the entry's name is its digest. */
  cacheKey: string;
  owner: SharedOwner;
  /** Entries older than this are not taken (they would expire before use). */
  maxAgeMs: number;
  /** The caller's own check of a value (e.g. against the envelope's commitment); false is an integrity failure. */
  check?: (value: SharedValue) => boolean;
}

export type SharedTierStatus = "up" | "degraded";

export interface SharedTierHealth {
  status: SharedTierStatus;
  /** The last failed store operation: a short reason (never a value) and when (ms since epoch). */
  lastError?: { reason: string; at: number };
}

const VALUE_VERSION = "v1";
const SEAL_INFO = Buffer.from("kms-cache-seal-v1");
const IV_BYTES = 12;
const TAG_BYTES = 16;
const KEY_ID_BYTES = 16;
const DEK_BYTES = 32;
const CREATED_AT_BYTES = 8;
/** A value's creation time may be this far in this instance's future (clock skew between instances). */
const MAX_CLOCK_SKEW_MS = 60_000;
/** Into each epoch, each instance moves to the epoch's key at a random offset up to this fraction of it. */
const SWITCH_SPREAD = 0.05;
const MAX_SWITCH_SPREAD_MS = 60_000;
/** Sealing keys held per instance (current, previous, and those met in values). */
const MAX_SEALING_KEYS = 8;
const POLL_MIN_MS = 5;
const REPUBLISH_MS = 60_000;
const POLL_MAX_MS = 50;
const PURPOSE_CONTEXT_KEY = "kms:purpose";
/** The KMS refuses this instance the sealing key: a configuration problem, not a forged value. */
const NO_ACCESS_CODES: ReadonlySet<string> = new Set(["KMS_ACCESS_DENIED", "KMS_KEY_DISABLED"]);
const EPOCH_CONTEXT_KEY = "kms:epoch";

/** The store failed or was late, or the KMS could not unwrap a sealing key just now: skip the tier. */
class StoreUnavailable extends Error {}

/** An unwrapped sealing key: what seals, and the value its record claims (checked on unwrap). */
interface SealingKey {
  readonly id: string;
  readonly epoch: number;
  readonly key: Buffer;
  /** Its record as stored (`<epoch>.<wrapped key>.<check value>`: nothing secret), to write it again. */
  readonly record: string;
  /** When this instance last wrote or read the record (performance.now()). */
  recordSeenAt: number;
}

function digest(text: string): string {
  // UTF-16 code units, as the in-process cache does: a key may hold an unpaired surrogate.
  return createHash("sha256").update(text, "utf16le").digest("base64url");
}

export class SharedTier {
  readonly #store: SharedCacheStore;
  readonly #settings: SharedCacheSettings;
  readonly #kms: SealingKeyKms;
  readonly #clock: Clock;
  readonly #events: KmsEvents;
  /** This instance's offset into each epoch before it seals under the epoch's key. */
  readonly #switchOffsetMs: number;
  readonly #sealingKeys = new Map<string, SealingKey>();
  readonly #sealingLoads = new Map<string, Promise<SealingKey | undefined>>();
  readonly #epochLoads = new Map<number, Promise<SealingKey>>();
  readonly #pending = new Set<Promise<unknown>>();
  #status: SharedTierStatus = "up";
  #skipUntil = 0;
  #lastError: { reason: string; at: number } | undefined;
  #closed = false;
  #connecting: boolean;

  constructor(store: SharedCacheStore, settings: SharedCacheSettings, deps: { kms: SealingKeyKms; clock: Clock; events: KmsEvents; random: () => number }) {
    this.#store = store;
    this.#settings = settings;
    this.#kms = deps.kms;
    this.#clock = deps.clock;
    this.#events = deps.events;
    this.#connecting = store.connecting !== undefined;
    void store.connecting?.finally(() => (this.#connecting = false));
    this.#switchOffsetMs = Math.floor(deps.random() * Math.min(settings.sealingKeyRotationMs * SWITCH_SPREAD, MAX_SWITCH_SPREAD_MS));
  }

  health(): SharedTierHealth {
    return { status: this.#status, ...(this.#lastError === undefined ? {} : { lastError: { ...this.#lastError } }) };
  }

  /**
   * The entry for `lookup`: from the store when it holds an authentic, fresh one; else from `load`
   * (the KMS), under the store's lock for the entry when it has one, and then shared. `load`'s
   * buffers become the caller's; the caller zeroes `dek`.
   */
  async load(lookup: SharedLookup, load: () => Promise<SharedValue>): Promise<SharedLoaded> {
    if (!this.#usable()) return this.#fromKms(load);
    const name = `${lookup.side === "encrypt" ? "e" : "d"}:${digest(lookup.cacheKey)}`;
    const markers = [revocationName("t", lookup.owner.tenantId), revocationName("k", `${lookup.owner.provider}\0${lookup.owner.keyId}`)];
    try {
      const found = await this.#read(lookup, name, markers);
      if (found !== undefined) return found;
      if (this.#store.setIfAbsent === undefined) return this.#loadAndShare(lookup, name, load);
      const lockName = `lock:${name}`;
      const deadline = performance.now() + this.#settings.lockTtlMs;
      for (let pause = POLL_MIN_MS; ; pause = Math.min(pause * 2, POLL_MAX_MS)) {
        if (await this.#op(this.#store.setIfAbsent(lockName, toBase64Url(randomBytes(12)), this.#settings.lockTtlMs))) {
          // The previous holder may have written the entry and let go between our read and our lock.
          const written = await this.#read(lookup, name, markers, false);
          if (written === undefined) return await this.#loadAndShare(lookup, name, load, lockName);
          this.#track(this.#op(this.#store.delete(lockName)));
          return written;
        }
        if (performance.now() >= deadline) break; // the holder is slow or gone: load without the lock
        await new Promise((resolve) => setTimeout(resolve, pause));
        const polled = await this.#read(lookup, name, markers);
        if (polled !== undefined) return polled;
      }
      return this.#loadAndShare(lookup, name, load);
    } catch (error) {
      if (!(error instanceof StoreUnavailable)) throw error;
      return this.#fromKms(load);
    }
  }

  /** Keeps every instance from using the tenant's entries made before now (the marker lives `hardMaxAgeMs`). */
  revokeTenant(tenantId: string): void {
    this.#revoke(revocationName("t", tenantId));
  }

  /** Keeps every instance from using entries of the key made before now (the marker lives `hardMaxAgeMs`). */
  revokeKey(provider: string, keyId: string): void {
    this.#revoke(revocationName("k", `${provider}\0${keyId}`));
  }

  #revoke(name: string): void {
    if (!this.#usable()) return;
    this.#track(this.#op(this.#store.set(name, String(this.#clock.now()), this.#settings.hardMaxAgeMs)));
  }

  /** Shares an entry loaded elsewhere (the decrypt side of a key the encrypt side just made). */
  share(lookup: Pick<SharedLookup, "side" | "cacheKey">, value: SharedValue, createdAt: number, ttlMs: number): void {
    if (!this.#usable()) return;
    const name = `${lookup.side === "encrypt" ? "e" : "d"}:${digest(lookup.cacheKey)}`;
    this.#track(this.#seal(name, value, createdAt).then((sealed) => this.#op(this.#store.set(name, sealed, ttlMs))));
  }

  /** Waits for writes under way, then closes the store. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.allSettled([...this.#pending]);
    for (const key of this.#sealingKeys.values()) key.key.fill(0);
    this.#sealingKeys.clear();
    await this.#store.close().catch(() => undefined);
  }

  async #fromKms(load: () => Promise<SharedValue>): Promise<SharedLoaded> {
    const value = await load();
    return { ...value, createdAt: this.#clock.now() };
  }

  async #loadAndShare(lookup: SharedLookup, name: string, load: () => Promise<SharedValue>, lockName?: string): Promise<SharedLoaded> {
    let loaded: SharedLoaded;
    try {
      loaded = await this.#fromKms(load);
    } catch (error) {
      if (lockName !== undefined) this.#track(this.#op(this.#store.delete(lockName)));
      throw error;
    }
    // Sealed now (the copy of the key lives no longer than this call); written in the background.
    const sealing = this.#seal(name, loaded, loaded.createdAt);
    this.#track(
      sealing
        .then((sealed) => this.#op(this.#store.set(name, sealed, lookup.maxAgeMs)))
        .finally(() => (lockName === undefined ? undefined : this.#op(this.#store.delete(lockName)))),
    );
    return loaded;
  }

  /**
   * The entry if present, authentic, fresh and not revoked; undefined otherwise (an inauthentic one
   * is counted and deleted). `count`: emit the lookup's outcome (not for a second look under the lock).
   */
  async #read(lookup: SharedLookup, name: string, markers: readonly string[], count = true): Promise<SharedLoaded | undefined> {
    const [value, ...marks] = await this.#op(this.#store.getMany([name, ...markers]));
    if (value === undefined) {
      if (count) this.#emitLookup(lookup.side, "miss");
      return undefined;
    }
    const opened = await this.#open(name, value);
    // Revoked: made before (or, clocks being what they are, shortly after) a marker's time.
    const revokedAt = Math.max(...marks.map((m) => (m !== undefined && /^\d{1,15}$/.test(m) ? Number(m) + MAX_CLOCK_SKEW_MS : m === undefined ? -Infinity : Infinity)));
    if (opened !== undefined && (this.#clock.now() - opened.createdAt >= lookup.maxAgeMs || opened.createdAt <= revokedAt)) {
      opened.dek.fill(0);
      if (count) this.#emitLookup(lookup.side, "miss");
      return undefined; // too old for this instance, or revoked: load anew (the new entry replaces it)
    }
    // The caller's check runs last: what it builds from an entry that passes is what gets used.
    if (opened === undefined || (lookup.check !== undefined && !lookup.check(opened))) {
      opened?.dek.fill(0);
      this.#integrityFailure(lookup, name);
      return undefined;
    }
    this.#emitLookup(lookup.side, "hit");
    return { ...opened, fromStore: true };
  }

  #integrityFailure(lookup: SharedLookup, name: string): void {
    this.#emitLookup(lookup.side, "integrity-failure");
    if (this.#events.active) this.#events.emit({ type: "cache.integrity-failure", side: lookup.side, provider: lookup.owner.provider, tier: "shared" });
    this.#track(this.#op(this.#store.delete(name)));
  }

  /**
   * `v1.<sealing key id>.<iv | ciphertext | tag>` (base64url), the plaintext being the creation time
   * (8 bytes), the data key and the side data; the AAD is the version, the sealing key id and the name.
   */
  async #seal(name: string, value: SharedValue, createdAt: number): Promise<string> {
    const plaintext = Buffer.alloc(CREATED_AT_BYTES + DEK_BYTES + value.extra.length);
    try {
      plaintext.writeDoubleBE(createdAt, 0);
      plaintext.set(value.dek, CREATED_AT_BYTES);
      plaintext.set(value.extra, CREATED_AT_BYTES + DEK_BYTES);
      const sealing = await this.#currentSealingKey();
      await this.#republish(sealing);
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv("aes-256-gcm", sealing.key, iv);
      cipher.setAAD(aadOf(sealing.id, name));
      const body = Buffer.concat([iv, cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
      return `${VALUE_VERSION}.${sealing.id}.${toBase64Url(body)}`;
    } finally {
      plaintext.fill(0);
    }
  }

  /** The value's contents when it is authentic for `name`; undefined when it is not (or cannot be told). */
  async #open(name: string, value: string): Promise<SharedLoaded | undefined> {
    const parts = value.split(".");
    if (parts.length !== 3 || parts[0] !== VALUE_VERSION || !/^[0-9a-f]{32}$/.test(parts[1]!) || !/^[A-Za-z0-9_-]+$/.test(parts[2]!)) return undefined;
    const id = parts[1]!;
    const body = fromBase64Url(parts[2]!);
    if (body.length < IV_BYTES + CREATED_AT_BYTES + DEK_BYTES + TAG_BYTES) return undefined;
    const sealing = await this.#sealingKeyById(id);
    if (sealing === undefined) return undefined;
    const decipher = createDecipheriv("aes-256-gcm", sealing.key, body.subarray(0, IV_BYTES));
    decipher.setAAD(aadOf(id, name));
    decipher.setAuthTag(body.subarray(body.length - TAG_BYTES));
    const plaintext = decipher.update(body.subarray(IV_BYTES, body.length - TAG_BYTES));
    try {
      decipher.final();
    } catch {
      plaintext.fill(0);
      return undefined;
    }
    try {
      const createdAt = plaintext.readDoubleBE(0);
      if (!Number.isFinite(createdAt) || createdAt > this.#clock.now() + MAX_CLOCK_SKEW_MS) return undefined;
      return {
        createdAt,
        dek: copyKeyBytes(plaintext.subarray(CREATED_AT_BYTES, CREATED_AT_BYTES + DEK_BYTES)),
        extra: Buffer.from(plaintext.subarray(CREATED_AT_BYTES + DEK_BYTES)),
      };
    } finally {
      plaintext.fill(0);
    }
  }

  /** The key this instance seals under now: its current epoch's (past its switch offset), made or fetched once. */
  #currentSealingKey(): Promise<SealingKey> {
    const epoch = Math.floor((this.#clock.now() - this.#switchOffsetMs) / this.#settings.sealingKeyRotationMs);
    for (const key of this.#sealingKeys.values()) if (key.epoch === epoch) return Promise.resolve(key);
    let loading = this.#epochLoads.get(epoch);
    if (loading === undefined) {
      loading = this.#sealingKeyOfEpoch(epoch).finally(() => this.#epochLoads.delete(epoch));
      this.#epochLoads.set(epoch, loading);
    }
    return loading;
  }

  /** The epoch's key: the one its pointer names, or a new one made under the epoch's lock. */
  async #sealingKeyOfEpoch(epoch: number): Promise<SealingKey> {
    const pointer = `seal-epoch:${epoch}`;
    const lockName = `lock:${pointer}`;
    const ttl = 3 * this.#settings.sealingKeyRotationMs + this.#settings.hardMaxAgeMs;
    const deadline = performance.now() + this.#settings.lockTtlMs;
    for (let pause = POLL_MIN_MS; ; pause = Math.min(pause * 2, POLL_MAX_MS)) {
      const [id] = await this.#op(this.#store.getMany([pointer]));
      if (id !== undefined) {
        const key = await this.#sealingKeyById(id);
        if (key !== undefined && key.epoch === epoch) return key;
      }
      if (this.#store.setIfAbsent === undefined || performance.now() >= deadline) break;
      if (await this.#op(this.#store.setIfAbsent(lockName, "1", this.#settings.lockTtlMs))) {
        // Another instance may have made the key and let go between our read and our lock.
        const [made] = await this.#op(this.#store.getMany([pointer]));
        const key = made === undefined ? undefined : await this.#sealingKeyById(made);
        if (key === undefined || key.epoch !== epoch) break;
        this.#track(this.#op(this.#store.delete(lockName)));
        return key;
      }
      await new Promise((resolve) => setTimeout(resolve, pause));
    }
    let made: { plaintextKey: Buffer; keySection: Buffer };
    try {
      made = await this.#kms.generate(sealingContext(epoch));
    } catch (error) {
      if (this.#store.setIfAbsent !== undefined) this.#track(this.#op(this.#store.delete(lockName)));
      const code = isKmsError(error) ? error.code : undefined;
      if (code !== undefined && NO_ACCESS_CODES.has(code)) this.#fail(`the sealing key could not be made: ${code}`);
      throw error;
    }
    const { plaintextKey, keySection } = made;
    try {
      const id = sealingKeyId(epoch, keySection);
      const derived = deriveSealing(plaintextKey, id);
      const key: SealingKey = { id, epoch, key: derived.key, record: `${epoch}.${toBase64Url(keySection)}.${toBase64Url(derived.check)}`, recordSeenAt: performance.now() };
      try {
        await this.#op(this.#store.set(`seal:${id}`, key.record, ttl));
      } catch (error) {
        derived.key.fill(0);
        throw error;
      }
      // Sealed under only once its record is in the store: other instances must be able to open what it seals.
      this.#remember(key);
      await this.#op(this.#store.set(pointer, id, ttl));
      if (this.#store.setIfAbsent !== undefined) this.#track(this.#op(this.#store.delete(lockName)));
      return key;
    } finally {
      plaintextKey.fill(0);
    }
  }

  /** The sealing key with this id: held, or fetched from its record and unwrapped once; undefined when there is no authentic one. */
  #sealingKeyById(id: string): Promise<SealingKey | undefined> {
    const held = this.#sealingKeys.get(id);
    if (held !== undefined) return Promise.resolve(held);
    let loading = this.#sealingLoads.get(id);
    if (loading === undefined) {
      loading = this.#fetchSealingKey(id).finally(() => this.#sealingLoads.delete(id));
      this.#sealingLoads.set(id, loading);
    }
    return loading;
  }

  async #fetchSealingKey(id: string): Promise<SealingKey | undefined> {
    if (!/^[0-9a-f]{32}$/.test(id)) return undefined;
    const [record] = await this.#op(this.#store.getMany([`seal:${id}`]));
    if (record === undefined) return undefined;
    const parts = record.split(".");
    if (parts.length !== 3 || !/^\d{1,15}$/.test(parts[0]!) || !/^[A-Za-z0-9_-]+$/.test(parts[1]!) || !/^[A-Za-z0-9_-]+$/.test(parts[2]!)) return undefined;
    const epoch = Number(parts[0]);
    const keySectionBytes = fromBase64Url(parts[1]!);
    // The id is a digest of the epoch and the wrapped key: a record cannot be moved to another id.
    if (sealingKeyId(epoch, keySectionBytes) !== id) return undefined;
    const keySection = parseKeySection(keySectionBytes);
    if (keySection === undefined) return undefined;
    let plaintextKey: Buffer;
    try {
      plaintextKey = await this.#kms.unwrap(keySection, sealingContext(epoch));
    } catch (error) {
      // This instance cannot unwrap now (an outage), or at all (no access): not the value's fault;
      // skip the tier for this lookup, keep the value for the instances that can.
      const code = isKmsError(error) ? error.code : undefined;
      if (code !== undefined && UNAVAILABLE_NOW_CODES.has(code)) throw new StoreUnavailable("the sealing key could not be unwrapped now");
      if (code !== undefined && NO_ACCESS_CODES.has(code)) throw this.#fail(`the sealing key could not be unwrapped: ${code}`);
      return undefined; // not a key the KMS made for this epoch: the value naming it is not authentic
    }
    try {
      // The check value binds the unwrapped key to the id, for providers that bind no context to a wrap.
      const derived = deriveSealing(plaintextKey, id);
      const check = fromBase64Url(parts[2]!);
      if (check.length !== derived.check.length || !timingSafeEqual(check, derived.check)) {
        derived.key.fill(0);
        return undefined;
      }
      const key: SealingKey = { id, epoch, key: derived.key, record, recordSeenAt: performance.now() };
      this.#remember(key);
      return key;
    } finally {
      plaintextKey.fill(0);
    }
  }

  /**
   * Writes the sealing key's record again (the same text) when this instance has not written or read
   * it for `REPUBLISH_MS`: a Redis restarted empty, flushed or evicting must not leave values sealed
   * under a key no other instance can find. At most one write a minute.
   */
  async #republish(key: SealingKey): Promise<void> {
    if (performance.now() - key.recordSeenAt < REPUBLISH_MS) return;
    key.recordSeenAt = performance.now();
    await this.#op(this.#store.set(`seal:${key.id}`, key.record, 3 * this.#settings.sealingKeyRotationMs + this.#settings.hardMaxAgeMs));
  }

  #remember(key: SealingKey): void {
    this.#sealingKeys.set(key.id, key);
    while (this.#sealingKeys.size > MAX_SEALING_KEYS) {
      const oldest = [...this.#sealingKeys.values()].reduce((a, b) => (b.epoch < a.epoch ? b : a));
      oldest.key.fill(0);
      this.#sealingKeys.delete(oldest.id);
    }
  }

  /**
   * Whether to use the store now: up, or degraded for `retryAfterMs`, when this one request probes it
   * (the next probe is another `retryAfterMs` away, whatever becomes of this one).
   */
  #usable(): boolean {
    if (this.#closed) return false;
    if (this.#status === "up") return true;
    const now = performance.now();
    if (now < this.#skipUntil) return false;
    this.#skipUntil = now + this.#settings.retryAfterMs;
    return true;
  }

  /** A store operation under the timeout; any failure marks the tier degraded and throws StoreUnavailable. */
  async #op<T>(operation: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const limit = this.#connecting ? Math.max(this.#settings.timeoutMs, this.#settings.connectTimeoutMs) : this.#settings.timeoutMs;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new StoreUnavailable(`no answer within ${limit} ms`)), limit);
    });
    try {
      const result = await Promise.race([operation, timeout]);
      this.#setStatus("up");
      return result;
    } catch (error) {
      void operation.catch(() => undefined); // a late failure is not unhandled
      // The store's own message (a connection or protocol error: never a value) helps the operator.
      throw this.#fail(error instanceof StoreUnavailable ? error.message : `store error: ${String((error as Error)?.message ?? error).slice(0, 160)}`);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Marks the tier degraded (skipped for `retryAfterMs`) for `reason`; returns the error that skips this lookup. */
  #fail(reason: string): StoreUnavailable {
    this.#lastError = { reason, at: this.#clock.now() };
    this.#skipUntil = performance.now() + this.#settings.retryAfterMs;
    this.#setStatus("degraded");
    return new StoreUnavailable(reason);
  }

  #setStatus(status: SharedTierStatus): void {
    if (status === this.#status) return;
    const from = this.#status;
    this.#status = status;
    // Back from a failure: the store may have restarted empty; write each sealing key's record again before sealing under it.
    if (status === "up") for (const key of this.#sealingKeys.values()) key.recordSeenAt = -Infinity;
    if (this.#events.active) this.#events.emit({ type: "cache.shared.state", from, to: status });
  }

  #emitLookup(side: CacheSide, outcome: "hit" | "miss" | "integrity-failure"): void {
    if (this.#events.active) this.#events.emit({ type: "cache.shared.lookup", side, outcome });
  }

  #track(work: Promise<unknown>): void {
    const settled = work.catch(() => undefined); // failures are counted by #op; nothing waits on them
    this.#pending.add(settled);
    void settled.finally(() => this.#pending.delete(settled));
  }
}

function revocationName(kind: "t" | "k", of: string): string {
  return `revoked:${kind}:${digest(of)}`;
}

function aadOf(sealingKeyId: string, name: string): Buffer {
  return Buffer.from(`${VALUE_VERSION}\0${sealingKeyId}\0${name}`, "utf8");
}

function sealingContext(epoch: number): EncryptionContext {
  return { [PURPOSE_CONTEXT_KEY]: "cache-sealing", [EPOCH_CONTEXT_KEY]: String(epoch) };
}

function sealingKeyId(epoch: number, keySection: Buffer): string {
  return createHash("sha256").update(`kms-cache-sealing-key\0${epoch}\0`).update(keySection).digest("hex").slice(0, 2 * KEY_ID_BYTES);
}

/** The sealing AES key and the record's check value, both from the data key by HKDF, bound to the id. */
function deriveSealing(dek: Buffer, id: string): { key: Buffer; check: Buffer } {
  const okm = Buffer.from(hkdfSync("sha256", dek, Buffer.from(id, "hex"), SEAL_INFO, 64));
  const key = copyKeyBytes(okm.subarray(0, 32));
  const check = copyKeyBytes(okm.subarray(32));
  okm.fill(0);
  return { key, check };
}
