/**
 * The embedded `local` provider: a real KMS in one JSON file, for development, tests and the
 * quickstart. Insecure by design (its key-encryption keys sit on this host's disk), and marked so in
 * `capabilities.insecure` and in every health report; core refuses it in production without an
 * explicit opt-in.
 *
 * Key store (docs/setup/LOCAL_PROVIDER.md):
 * - one JSON file, `{ format: "kms-local-keystore", version: 1, keys: { <keyId>: { enabled,
 *   createdAt, currentVersion, versions: { "1": { createdAt, material } } } } }`, where `material` is
 *   the base64 of a 32-byte KEK. It holds KEKs only, never a data key.
 * - created on first write (never in the constructor: no I/O at construction), mode 0600, in a
 *   directory created 0700 when missing; every write is atomic (a 0600 temp file in the same
 *   directory, fsync, rename, fsync of the directory).
 * - writers take turns: each change holds `<path>.lock` (created O_EXCL) while it re-reads the file,
 *   applies the change and renames the new file in, so two processes (or two instances on one file)
 *   never lose each other's keys or versions. A lock older than LOCK_STALE_MS is a crashed writer's
 *   and is broken.
 * - refused, with `KMS_ACCESS_DENIED` naming the path and the fix: a symlink at the path (opened
 *   O_NOFOLLOW), a file owned by another uid, a file readable or writable by group or others. We
 *   refuse rather than repair: a store others could read may already have leaked its keys, which an
 *   operator must know.
 * - read afresh on every call (it is small, and core caches data keys), so there is no in-memory copy
 *   to go stale: a key or version created by another process (the CLI) is seen at once.
 *
 * Wrapping: AES-256-GCM under the key version's KEK, `iv(12) ‖ ct(32) ‖ tag(16)`, with AAD = a
 * canonical, length-prefixed encoding of the key id, the key version and the encryption context
 * (pairs sorted by the UTF-8 bytes of their keys), so a wrapped key moved to another key, version,
 * tenant (core puts the tenant id in the context) or context fails to unwrap.
 */
import { createCipheriv, createDecipheriv, randomBytes, timingSafeEqual } from "node:crypto";
import { constants as fsConstants, promises as fs } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import * as nodePath from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { z } from "zod";
import { type Clock, systemClock } from "./clock";
import { DOCS_BASE_URL, KmsConfigError, KmsError, configIssue, docsUrlFor, isKmsError, type KmsErrorCode } from "./errors";
import {
  DATA_KEY_BYTES,
  type Cancellable,
  type DataKey,
  type DisableKeyOptions,
  type DisableKeyResult,
  type EncryptionContext,
  type GenerateDataKeyRequest,
  type KeyDescription,
  type KmsProvider,
  type PermissionCheck,
  type ProviderCapabilities,
  type ProviderDefinition,
  type ProviderHealth,
  type RotationResult,
  type SettingsResult,
  type UnwrapDataKeyRequest,
  type WrapDataKeyRequest,
  type WrappedDataKey,
} from "./provider";

const PROVIDER_ID = "local";
const STORE_FORMAT = "kms-local-keystore";
const STORE_VERSION = 1;
/** Where the key store goes when no path is given (relative to the working directory). */
export const LOCAL_DEFAULT_PATH = ".kms/local-keys.json";
const LOCAL_DOCS_URL = `${DOCS_BASE_URL}docs/setup/LOCAL_PROVIDER.md`;

const IV_BYTES = 12;
const TAG_BYTES = 16;
const KEK_BYTES = 32;
const WRAPPED_BYTES = IV_BYTES + DATA_KEY_BYTES + TAG_BYTES;
const AAD_LABEL = Buffer.from("kms-local-wrap-v1", "utf8");

const KEY_ID_PATTERN = /^[A-Za-z0-9._/-]{1,256}$/;
const LOCAL_KEY_ID_RULE = "key ids are 1 to 256 characters of A-Z a-z 0-9 . _ / -";
/** Versions are "1", "2", …: decimal, no leading zero. */
const VERSION_PATTERN = /^[1-9][0-9]{0,9}$/;
const BASE64_PATTERN = /^[A-Za-z0-9+/]*={0,2}$/;
/** The synthetic context of the `validatePermissions` round trip. */
const CANARY_CONTEXT: EncryptionContext = { "kms:canary": "validate-permissions" };
/** How long a writer waits for another to release the lock before failing (retryably). */
const LOCK_WAIT_MS = 10_000;
/** A write holds the lock for milliseconds: a lock this old was left by a crashed writer. */
const LOCK_STALE_MS = 30_000;
/** 0 where the platform has no O_NOFOLLOW (Windows): there a link at the path is still followed. */
const O_NOFOLLOW = fsConstants.O_NOFOLLOW ?? 0;

/**
 * The time source and the pause of the lock wait. A seam for tests, which replace them with spies to
 * drive the wait without real time passing; not part of the package's API (not exported from the
 * index). `now` is wall-clock time, not the injected clock: it is compared with the lock file's mtime.
 */
export const lockWait = {
  now: (): number => Date.now(),
  sleep: (ms: number): Promise<void> => sleep(ms),
};

export interface LocalKmsOptions {
  /** The key store file. Relative paths resolve against the working directory at construction. */
  path: string;
  /** Create a key (version "1") the first time an unknown key id is used to encrypt. Default true. */
  autoCreateKeys?: boolean;
  /** Source of the key store's timestamps. */
  clock?: Clock;
}

/** Settings of `providers.local` in configuration. */
export interface LocalKmsSettings {
  /** Default `.kms/local-keys.json`. */
  path: string;
  /** Default true. */
  autoCreateKeys?: boolean;
}

export interface LocalKmsProvider extends KmsProvider {
  /** The key store's absolute path. */
  readonly path: string;
  generateDataKey(req: GenerateDataKeyRequest): Promise<DataKey>;
  /** Creates the key (version "1") if it does not exist; either way, describes it. */
  createKey(keyId: string): Promise<KeyDescription>;
  /**
   * Disables a key: it no longer wraps or unwraps until enabled again. Mode `disable` only (the
   * default here): the key store has no waiting period, so `schedule-destruction` is INPUT_INVALID.
   */
  disableKey(keyId: string, options?: Partial<DisableKeyOptions>): Promise<DisableKeyResult>;
  enableKey(keyId: string): Promise<void>;
}

const settingsSchema = z.strictObject({
  path: z.string({ error: "must be a file path" }).min(1, { error: "must be a non-empty file path" }).default(LOCAL_DEFAULT_PATH),
  autoCreateKeys: z.boolean({ error: "must be true or false" }).optional(),
});

/** The `local` provider for configuration-driven set-up: `createKms({ registry: [localKms], … })`. */
export const localKms: ProviderDefinition<LocalKmsSettings> = {
  id: PROVIDER_ID,
  packageName: "@kms/core",
  keyIdProblem: (keyId) => (KEY_ID_PATTERN.test(keyId) ? undefined : LOCAL_KEY_ID_RULE),
  parseSettings(raw: unknown): SettingsResult<LocalKmsSettings> {
    const parsed = settingsSchema.safeParse(raw === undefined ? {} : raw);
    if (parsed.success) return { ok: true, settings: parsed.data };
    return {
      ok: false,
      issues: parsed.error.issues.map((issue) => ({ path: issue.path.map(String).join("."), message: issue.message })),
    };
  },
  create(settings: LocalKmsSettings): LocalKmsProvider {
    return localKmsProvider({ path: settings.path, autoCreateKeys: settings.autoCreateKeys });
  },
};

export function localKmsProvider(options: LocalKmsOptions): LocalKmsProvider {
  const issues = [];
  if (typeof options?.path !== "string" || options.path.length === 0) {
    issues.push(configIssue("path", "KMS_CONFIG_INVALID", "must be a non-empty file path"));
  }
  if (options?.autoCreateKeys !== undefined && typeof options.autoCreateKeys !== "boolean") {
    issues.push(configIssue("autoCreateKeys", "KMS_CONFIG_INVALID", "must be true or false"));
  }
  if (issues.length > 0) throw new KmsConfigError(issues);
  return new LocalKms(nodePath.resolve(options.path), options.autoCreateKeys ?? true, options.clock ?? systemClock);
}

// ---------------------------------------------------------------------------------------------
// The key store in memory. Maps, not plain objects, so key ids like "constructor" or "__proto__"
// are just strings.

interface KeyVersion {
  createdAt: string;
  material: Buffer;
}

interface KeyEntry {
  enabled: boolean;
  createdAt: string;
  currentVersion: string;
  versions: Map<string, KeyVersion>;
}

type Store = Map<string, KeyEntry>;

class LocalKms implements LocalKmsProvider {
  readonly id = PROVIDER_ID;
  readonly capabilities: ProviderCapabilities = Object.freeze({
    encryptionContext: true,
    rotation: true,
    generatesDataKeys: true,
    insecure: true,
    keyDisabling: Object.freeze(["disable"] as const),
  });
  readonly path: string;
  readonly #dir: string;
  readonly #autoCreate: boolean;
  readonly #clock: Clock;
  /** Tail of the in-process write queue; never rejects. */
  #writes: Promise<unknown> = Promise.resolve();
  #closed = false;

  constructor(path: string, autoCreate: boolean, clock: Clock) {
    this.path = path;
    this.#dir = nodePath.dirname(path);
    this.#autoCreate = autoCreate;
    this.#clock = clock;
  }

  // --- data keys ------------------------------------------------------------------------------

  async generateDataKey(req: GenerateDataKeyRequest): Promise<DataKey> {
    this.#enter(req);
    const keyId = checkKeyId(req.keyId);
    const aadContext = checkContext(req.context);
    const plaintextKey = randomBytes(DATA_KEY_BYTES);
    try {
      const wrapped = await this.#wrap(keyId, plaintextKey, aadContext);
      return { ...wrapped, plaintextKey };
    } catch (error) {
      plaintextKey.fill(0);
      throw error;
    }
  }

  async wrapDataKey(req: WrapDataKeyRequest): Promise<WrappedDataKey> {
    this.#enter(req);
    const keyId = checkKeyId(req.keyId);
    if (!(req.plaintextKey instanceof Uint8Array) || req.plaintextKey.length !== DATA_KEY_BYTES) {
      throw this.#error("INPUT_INVALID", `the data key to wrap must be ${DATA_KEY_BYTES} bytes`);
    }
    const aadContext = checkContext(req.context);
    return this.#wrap(keyId, req.plaintextKey, aadContext);
  }

  async unwrapDataKey(req: UnwrapDataKeyRequest): Promise<Uint8Array> {
    this.#enter(req);
    const keyId = checkKeyId(req.keyId);
    if (typeof req.keyVersion !== "string") throw this.#error("INPUT_INVALID", "the key version must be a string");
    if (!(req.wrappedKey instanceof Uint8Array)) throw this.#error("INPUT_INVALID", "the wrapped key must be bytes (Uint8Array)");
    const aadContext = checkContext(req.context);
    const store = await this.#read();
    const entry = store?.get(keyId);
    // Never auto-created: a key that wrapped this data key must already exist.
    if (!entry) throw this.#notFound(keyId);
    if (!entry.enabled) throw this.#disabled(keyId);
    const version = entry.versions.get(req.keyVersion);
    if (!version) {
      throw this.#error("KMS_KEY_NOT_FOUND", `key "${keyId}" has no version "${printable(req.keyVersion)}" in the local key store`);
    }
    const wrapped = req.wrappedKey;
    if (wrapped.length !== WRAPPED_BYTES) throw this.#authFailed();
    const decipher = createDecipheriv("aes-256-gcm", version.material, wrapped.subarray(0, IV_BYTES), { authTagLength: TAG_BYTES });
    decipher.setAAD(wrapAad(keyId, req.keyVersion, aadContext));
    decipher.setAuthTag(wrapped.subarray(IV_BYTES + DATA_KEY_BYTES));
    const plaintextKey = decipher.update(wrapped.subarray(IV_BYTES, IV_BYTES + DATA_KEY_BYTES));
    try {
      decipher.final();
    } catch {
      plaintextKey.fill(0);
      throw this.#authFailed();
    }
    return plaintextKey;
  }

  async #wrap(keyId: string, plaintextKey: Uint8Array, context: EncryptionContext): Promise<WrappedDataKey> {
    const entry = await this.#usableKey(keyId);
    const keyVersion = entry.currentVersion;
    const version = entry.versions.get(keyVersion)!;
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv("aes-256-gcm", version.material, iv, { authTagLength: TAG_BYTES });
    cipher.setAAD(wrapAad(keyId, keyVersion, context));
    const ct = Buffer.concat([cipher.update(plaintextKey), cipher.final()]);
    const wrappedKey = Buffer.concat([iv, ct, cipher.getAuthTag()]);
    return { wrappedKey, keyVersion };
  }

  /** An existing enabled key, or a new one when auto-creation is on. */
  async #usableKey(keyId: string): Promise<KeyEntry> {
    let entry = (await this.#read())?.get(keyId);
    if (!entry) {
      if (!this.#autoCreate) throw this.#notFound(keyId);
      entry = await this.#mutate((store) => this.#ensureKey(store, keyId));
    }
    if (!entry.enabled) throw this.#disabled(keyId);
    return entry;
  }

  // --- key management -------------------------------------------------------------------------

  async describeKey(keyId: string, options?: Cancellable): Promise<KeyDescription> {
    this.#enter(options);
    checkKeyId(keyId);
    let entry = (await this.#read())?.get(keyId);
    if (!entry) {
      if (!this.#autoCreate) throw this.#notFound(keyId);
      entry = await this.#mutate((store) => this.#ensureKey(store, keyId));
    }
    return describeEntry(keyId, entry);
  }

  async createKey(keyId: string): Promise<KeyDescription> {
    this.#enter();
    checkKeyId(keyId);
    return describeEntry(keyId, await this.#mutate((store) => this.#ensureKey(store, keyId)));
  }

  async rotateKey(keyId: string, options?: Cancellable): Promise<RotationResult> {
    this.#enter(options);
    checkKeyId(keyId);
    return this.#mutate((store) => {
      const entry = store.get(keyId);
      // Never created here, whatever autoCreateKeys says: rotating a key that does not exist is most
      // likely a wrong id, which creating version 1 only to rotate it to 2 would hide.
      if (!entry) throw this.#notFound(keyId);
      if (!entry.enabled) throw this.#disabled(keyId);
      const previousVersion = entry.currentVersion;
      const next = Math.max(...[...entry.versions.keys()].map(Number)) + 1;
      const currentVersion = String(next);
      entry.versions.set(currentVersion, { createdAt: this.#now(), material: randomBytes(KEK_BYTES) });
      entry.currentVersion = currentVersion;
      return { keyId, previousVersion, currentVersion };
    });
  }

  async disableKey(keyId: string, options?: Partial<DisableKeyOptions>): Promise<DisableKeyResult> {
    this.#enter(options);
    const mode = options?.mode ?? "disable";
    if (mode !== "disable") {
      throw this.#error("INPUT_INVALID", `mode "${printable(String(mode))}" is not supported: the local key store can only disable a key`);
    }
    await this.#setEnabled(keyId, false);
    return {}; // no service, so no request id
  }

  async enableKey(keyId: string): Promise<void> {
    await this.#setEnabled(keyId, true);
  }

  async #setEnabled(keyId: string, enabled: boolean): Promise<void> {
    this.#enter();
    checkKeyId(keyId);
    await this.#mutate((store) => {
      const entry = store.get(keyId);
      if (!entry) throw this.#notFound(keyId);
      entry.enabled = enabled;
    });
  }

  #ensureKey(store: Store, keyId: string): KeyEntry {
    const existing = store.get(keyId);
    if (existing) return existing;
    const now = this.#now();
    const entry: KeyEntry = {
      enabled: true,
      createdAt: now,
      currentVersion: "1",
      versions: new Map([["1", { createdAt: now, material: randomBytes(KEK_BYTES) }]]),
    };
    store.set(keyId, entry);
    return entry;
  }

  // --- operations -----------------------------------------------------------------------------

  async checkHealth(keyIds: readonly string[], options?: Cancellable): Promise<ProviderHealth> {
    this.#enter(options);
    const unhealthy = (detail: string): ProviderHealth => ({ healthy: false, insecure: true, detail });
    let store: Store | undefined;
    try {
      store = await this.#read();
      await this.#checkWritable(store !== undefined);
    } catch (error) {
      const code = isKmsError(error) ? error.code : "KMS_UNAVAILABLE";
      return unhealthy(`key store ${code === "KMS_ACCESS_DENIED" ? "not accessible" : "unusable"} (${code})`);
    }
    for (const keyId of keyIds) {
      if (typeof keyId !== "string" || !KEY_ID_PATTERN.test(keyId)) return unhealthy("invalid key id (INPUT_INVALID)");
      const entry = store?.get(keyId);
      if (!entry && !this.#autoCreate) return unhealthy(`key "${keyId}" not found (KMS_KEY_NOT_FOUND)`);
      if (entry && !entry.enabled) return unhealthy(`key "${keyId}" is disabled (KMS_KEY_DISABLED)`);
    }
    return { healthy: true, insecure: true, detail: store === undefined ? "local key store (not created yet)" : "local key store" };
  }

  async validatePermissions(keyId: string, options?: Cancellable): Promise<PermissionCheck[]> {
    this.#enter(options);
    checkKeyId(keyId);
    const access = `chmod 600 ${this.path} and chmod 700 ${this.#dir}, and make sure the process user owns both`;
    const check = async (permission: string, remediation: string, fn: () => Promise<void>): Promise<PermissionCheck> => {
      try {
        await fn();
        return { permission, ok: true, docsUrl: LOCAL_DOCS_URL };
      } catch (error) {
        const e = isKmsError(error) ? error : this.#error("KMS_PROVIDER_ERROR", "unexpected failure", error);
        return { permission, ok: false, remediation: remediationFor(e, remediation, keyId), docsUrl: e.docsUrl, error: e };
      }
    };
    const results: PermissionCheck[] = [];
    results.push(await check("local:read-keystore", access, async () => void (await this.#read())));
    results.push(await check("local:write-keystore", access, async () => this.#checkWritable(await fileExists(this.path))));
    let canary: DataKey | undefined;
    results.push(
      await check("local:generateDataKey", access, async () => {
        canary = await this.generateDataKey({ keyId, context: CANARY_CONTEXT });
      }),
    );
    results.push(
      await check("local:decrypt", access, async () => {
        if (!canary) throw this.#error("KMS_PROVIDER_ERROR", "not checked: generateDataKey failed");
        const { plaintextKey, wrappedKey, keyVersion } = canary;
        const unwrapped = await this.unwrapDataKey({ keyId, keyVersion, wrappedKey, context: CANARY_CONTEXT });
        const same = unwrapped.length === plaintextKey.length && timingSafeEqual(unwrapped, plaintextKey);
        unwrapped.fill(0);
        plaintextKey.fill(0);
        if (!same) throw this.#error("KMS_PROVIDER_ERROR", "the round trip returned a different data key");
      }),
    );
    return results;
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#writes;
  }

  // --- the file -------------------------------------------------------------------------------

  /** The store, or undefined when the file does not exist yet. */
  async #read(): Promise<Store | undefined> {
    let handle: FileHandle;
    try {
      // O_NOFOLLOW: a link planted at the path could point the keys (and our writes) anywhere.
      handle = await fs.open(this.path, fsConstants.O_RDONLY | O_NOFOLLOW);
    } catch (error) {
      const code = errnoCode(error);
      if (code === "ENOENT") return undefined;
      if (code === "ELOOP" && O_NOFOLLOW !== 0) {
        throw this.#failure("KMS_ACCESS_DENIED", `the local key store ${this.path} is a symbolic link`, "point path at the real file, not a link");
      }
      throw this.#fsError(error, "read");
    }
    let text: string;
    try {
      // Checked on the open handle, so the file checked is the file read.
      const stat = await handle.stat();
      if (!stat.isFile()) throw this.#error("KMS_PROVIDER_ERROR", `the local key store ${this.path} is not a regular file`);
      const uid = process.getuid?.();
      if (uid !== undefined && stat.uid !== uid) {
        throw this.#failure(
          "KMS_ACCESS_DENIED",
          `the local key store ${this.path} is owned by uid ${stat.uid}, not by this process (uid ${uid})`,
          `run as its owner, or check who could read it, then chown it to uid ${uid} and chmod 600 ${this.path}`,
        );
      }
      if (process.platform !== "win32" && (stat.mode & 0o077) !== 0) {
        const mode = (stat.mode & 0o777).toString(8).padStart(4, "0");
        throw this.#failure(
          "KMS_ACCESS_DENIED",
          `the local key store ${this.path} is accessible by other users (mode ${mode}) and its keys may have leaked`,
          `check who could read it, then chmod 600 ${this.path}`,
        );
      }
      text = await handle.readFile("utf8");
    } catch (error) {
      throw isKmsError(error) ? error : this.#fsError(error, "read");
    } finally {
      await handle.close().catch(() => {});
    }
    return this.#parse(text);
  }

  /** Parses defensively; errors name the path and never echo the content (it holds keys). */
  #parse(text: string): Store {
    const corrupt = (what: string) =>
      this.#error("KMS_PROVIDER_ERROR", `the local key store ${this.path} is corrupt (${what}); restore it from a backup`);
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch {
      throw corrupt("not valid JSON"); // SyntaxError messages quote the input: not kept as cause.
    }
    if (!isRecord(raw) || raw.format !== STORE_FORMAT) throw corrupt(`not a ${STORE_FORMAT} file`);
    if (raw.version !== STORE_VERSION) throw corrupt(`unsupported version; this release reads version ${STORE_VERSION}`);
    if (!isRecord(raw.keys)) throw corrupt('"keys" is not an object');
    const store: Store = new Map();
    for (const keyId of Object.keys(raw.keys)) {
      const where = KEY_ID_PATTERN.test(keyId) ? `key "${keyId}"` : "a key with an invalid id";
      const value = raw.keys[keyId];
      if (!KEY_ID_PATTERN.test(keyId) || !isRecord(value)) throw corrupt(where);
      const { enabled, createdAt, currentVersion, versions } = value;
      if (typeof enabled !== "boolean" || !isIsoDate(createdAt) || typeof currentVersion !== "string" || !isRecord(versions)) {
        throw corrupt(where);
      }
      const entry: KeyEntry = { enabled, createdAt, currentVersion, versions: new Map() };
      for (const v of Object.keys(versions)) {
        const version = versions[v];
        if (!VERSION_PATTERN.test(v) || !isRecord(version) || !isIsoDate(version.createdAt)) throw corrupt(where);
        const { material } = version;
        if (typeof material !== "string" || !BASE64_PATTERN.test(material)) throw corrupt(where);
        const bytes = Buffer.from(material, "base64");
        if (bytes.length !== KEK_BYTES) throw corrupt(where);
        entry.versions.set(v, { createdAt: version.createdAt, material: bytes });
      }
      if (!entry.versions.has(currentVersion)) throw corrupt(where);
      store.set(keyId, entry);
    }
    return store;
  }

  /**
   * Runs `fn` on the store as it is on disk, holding the lock, then writes the store if `fn` changed
   * it (and returned without throwing). The in-process queue keeps one instance from contending with
   * itself; the lock orders it against other instances and processes. Writes queued before `close()`
   * complete; none start after.
   */
  #mutate<T>(fn: (store: Store) => T): Promise<T> {
    if (this.#closed) return Promise.reject(this.#closedError());
    const run = this.#writes.then(() =>
      this.#locked(async () => {
        // Read under the lock, never from an earlier read: another writer may have changed the file
        // since, and writing back an older copy would drop its keys.
        const store: Store = (await this.#read()) ?? new Map();
        const before = serialize(store);
        const result = fn(store);
        const after = serialize(store);
        if (after !== before) await this.#write(after);
        return result;
      }),
    );
    this.#writes = run.catch(() => {});
    return run;
  }

  /** Runs `fn` holding `<path>.lock`, created O_EXCL: only one writer at a time can create it. */
  async #locked<T>(fn: () => Promise<T>): Promise<T> {
    try {
      await fs.mkdir(this.#dir, { recursive: true, mode: 0o700 });
    } catch (error) {
      throw this.#fsError(error, "write");
    }
    const lock = `${this.path}.lock`;
    const deadline = lockWait.now() + LOCK_WAIT_MS;
    for (let attempt = 0; ; attempt++) {
      try {
        const handle = await fs.open(lock, "wx", 0o600);
        await handle.close();
        break;
      } catch (error) {
        if (errnoCode(error) !== "EEXIST") throw this.#fsError(error, "lock");
      }
      try {
        if (lockWait.now() - (await fs.lstat(lock)).mtimeMs > LOCK_STALE_MS) {
          // Its writer crashed (or sat paused for LOCK_STALE_MS, e.g. at a breakpoint). Not airtight:
          // two waiters breaking the same stale lock at once could both proceed; a narrow window,
          // once per crash, which this development provider accepts.
          await fs.rm(lock, { force: true });
          continue;
        }
      } catch (error) {
        if (errnoCode(error) === "ENOENT") continue; // released meanwhile: try again at once
        throw this.#fsError(error, "lock");
      }
      if (lockWait.now() >= deadline) {
        throw this.#failure(
          "KMS_UNAVAILABLE",
          `another writer has held the lock ${lock} of the local key store for over ${LOCK_WAIT_MS / 1000} s`,
          `try again; if no other process is using the store, delete ${lock} (it is broken anyway once ${LOCK_STALE_MS / 1000} s old)`,
        );
      }
      await lockWait.sleep(Math.min(5 * 2 ** attempt, 100) * (0.5 + Math.random())); // jittered, so waiters do not march in step
    }
    try {
      return await fn();
    } finally {
      await fs.rm(lock, { force: true }).catch(() => {}); // left behind, it goes stale and is broken
    }
  }

  async #write(text: string): Promise<void> {
    const temp = nodePath.join(this.#dir, `.${nodePath.basename(this.path)}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`);
    try {
      const handle = await fs.open(temp, "wx", 0o600);
      try {
        await handle.chmod(0o600); // the umask may have narrowed it further; make it exact
        await handle.writeFile(text, "utf8");
        await handle.sync();
      } finally {
        await handle.close();
      }
      await fs.rename(temp, this.path);
    } catch (error) {
      await fs.rm(temp, { force: true }).catch(() => {});
      throw this.#fsError(error, "write");
    }
    await syncDirectory(this.#dir);
  }

  /** Throws unless the store could be written (it exists and its directory is writable, or it can be created). */
  async #checkWritable(exists: boolean): Promise<void> {
    let dir = this.#dir;
    if (!exists) {
      // The nearest existing ancestor must let us create what is missing.
      for (;;) {
        try {
          const stat = await fs.stat(dir);
          if (!stat.isDirectory()) {
            throw this.#failure("KMS_UNAVAILABLE", `${dir} is not a directory`, "point path at a file in a directory", undefined, false);
          }
          break;
        } catch (error) {
          if (isKmsError(error)) throw error;
          if (errnoCode(error) !== "ENOENT" || nodePath.dirname(dir) === dir) throw this.#fsError(error, "write");
          dir = nodePath.dirname(dir);
        }
      }
    }
    try {
      await fs.access(dir, fsConstants.W_OK | fsConstants.X_OK);
    } catch (error) {
      throw this.#fsError(error, "write");
    }
  }

  // --- helpers --------------------------------------------------------------------------------

  #enter(options?: Cancellable): void {
    if (this.#closed) throw this.#closedError();
    const signal = options?.signal;
    if (signal?.aborted) {
      throw isKmsError(signal.reason) ? signal.reason : this.#error("KMS_TIMEOUT", "the call was cancelled before it started");
    }
  }

  #now(): string {
    return new Date(this.#clock.now()).toISOString();
  }

  #error(code: KmsErrorCode, message: string, cause?: unknown, retryable?: boolean): KmsError {
    return new KmsError(code, `local: ${message}`, { provider: PROVIDER_ID, cause, retryable });
  }

  #notFound(keyId: string): KmsError {
    return this.#error("KMS_KEY_NOT_FOUND", `key "${keyId}" does not exist in the local key store`);
  }

  #disabled(keyId: string): KmsError {
    return this.#error("KMS_KEY_DISABLED", `key "${keyId}" is disabled`);
  }

  #authFailed(): KmsError {
    return this.#error("ENVELOPE_AUTH_FAILED", "the data key could not be unwrapped with this key and context");
  }

  #closedError(): KmsError {
    return this.#error("KMS_CLOSED", "this provider has been closed");
  }

  /** An error whose message ends with `fix`; validatePermissions reports the same fix as its remediation. */
  #failure(code: KmsErrorCode, problem: string, fix: string, cause?: unknown, retryable?: boolean): KmsError {
    const error = this.#error(code, `${problem}: ${fix}`, cause, retryable);
    FIXES.set(error, fix);
    return error;
  }

  #fsError(error: unknown, action: "read" | "write" | "lock"): KmsError {
    const code = errnoCode(error);
    if (code === "EACCES" || code === "EPERM") {
      return this.#failure(
        "KMS_ACCESS_DENIED",
        `permission denied to ${action} the local key store ${this.path}`,
        `chmod 600 ${this.path} and chmod 700 ${this.#dir}, and run as the user that owns both`,
        error,
      );
    }
    const permanent = code !== undefined && PERMANENT_FS_ERRORS.has(code);
    return this.#failure(
      "KMS_UNAVAILABLE",
      `cannot ${action} the local key store ${this.path}${code ? ` (${code})` : ""}`,
      fsFix(code, this.path, this.#dir),
      error,
      permanent ? false : undefined,
    );
  }
}

/** File-system errors that will not go away by retrying. */
const PERMANENT_FS_ERRORS: ReadonlySet<string> = new Set(["EISDIR", "ENOTDIR", "EROFS", "ENAMETOOLONG", "ELOOP", "EEXIST"]);

/** The fix recorded with each error that has its own (see `#failure`). */
const FIXES = new WeakMap<KmsError, string>();

/** What to do about a file-system error other than a permission error: a chmod would not help. */
function fsFix(code: string | undefined, path: string, dir: string): string {
  switch (code) {
    case "ENOSPC":
    case "EDQUOT":
      return `free space (or quota) on the file system that holds ${dir}`;
    case "EROFS":
      return `${dir} is on a read-only file system: point path at a writable location`;
    case "EISDIR":
      return `${path} is a directory: point path at a file`;
    case "ENOTDIR":
      return `part of ${dir} is a file, not a directory: point path at a file in a directory`;
    case "ENAMETOOLONG":
      return "point path at a shorter path";
    case "ELOOP":
      return `a directory on the way to ${path} is a symbolic link loop: point path at the real location`;
    case "EMFILE":
    case "ENFILE":
      return "the process is out of file descriptors: raise its limit (ulimit -n) or close some";
    default:
      return `check the file system that holds ${path}, then try again`;
  }
}

function remediationFor(error: KmsError, access: string, keyId: string): string {
  switch (error.code) {
    case "KMS_KEY_NOT_FOUND":
      return `create key "${keyId}" (localKmsProvider(...).createKey, or enable autoCreateKeys)`;
    case "KMS_KEY_DISABLED":
      return `enable key "${keyId}" (localKmsProvider(...).enableKey)`;
    case "KMS_PROVIDER_ERROR":
      return `the key store is unusable: see ${docsUrlFor(error.code)}`;
    default:
      return FIXES.get(error) ?? access;
  }
}

function checkKeyId(keyId: unknown): string {
  if (typeof keyId !== "string" || !KEY_ID_PATTERN.test(keyId)) {
    throw new KmsError("INPUT_INVALID", `local: ${LOCAL_KEY_ID_RULE}`, { provider: PROVIDER_ID });
  }
  return keyId;
}

function checkContext(context: unknown): EncryptionContext {
  if (!isRecord(context)) {
    throw new KmsError("INPUT_INVALID", "local: the encryption context must be an object of strings", { provider: PROVIDER_ID });
  }
  for (const key of Object.keys(context)) {
    if (typeof context[key] !== "string") {
      throw new KmsError("INPUT_INVALID", "local: encryption context values must be strings", { provider: PROVIDER_ID });
    }
  }
  return context as EncryptionContext;
}

/**
 * The AAD of a wrapped data key: a domain label, the key id, the key version and the context pairs
 * sorted by the UTF-8 bytes of their keys, every field prefixed with its 4-byte big-endian length.
 */
function wrapAad(keyId: string, keyVersion: string, context: EncryptionContext): Buffer {
  const pairs = Object.keys(context)
    .map((k) => [Buffer.from(k, "utf8"), Buffer.from(context[k]!, "utf8")] as const)
    .sort((a, b) => Buffer.compare(a[0], b[0]));
  const fields = [AAD_LABEL, Buffer.from(keyId, "utf8"), Buffer.from(keyVersion, "utf8")];
  const count = Buffer.alloc(4);
  count.writeUInt32BE(pairs.length);
  const parts: Buffer[] = [];
  const push = (field: Buffer) => {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(field.length);
    parts.push(length, field);
  };
  for (const field of fields) push(field);
  parts.push(count);
  for (const [k, v] of pairs) {
    push(k);
    push(v);
  }
  return Buffer.concat(parts);
}

function serialize(store: Store): string {
  const keys: Record<string, unknown> = {};
  for (const [keyId, entry] of store) {
    const versions: Record<string, unknown> = {};
    for (const [v, version] of entry.versions) {
      defineEntry(versions, v, { createdAt: version.createdAt, material: version.material.toString("base64") });
    }
    defineEntry(keys, keyId, { enabled: entry.enabled, createdAt: entry.createdAt, currentVersion: entry.currentVersion, versions });
  }
  return `${JSON.stringify({ format: STORE_FORMAT, version: STORE_VERSION, keys }, null, 2)}\n`;
}

function describeEntry(keyId: string, entry: KeyEntry): KeyDescription {
  return {
    keyId,
    enabled: entry.enabled,
    currentVersion: entry.currentVersion,
    createdAt: new Date(entry.createdAt),
    rotatedAt: new Date(entry.versions.get(entry.currentVersion)!.createdAt),
  };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isIsoDate(value: unknown): value is string {
  return typeof value === "string" && value.length <= 64 && !Number.isNaN(Date.parse(value));
}

/** Sets an own property even for names like "__proto__". */
function defineEntry(target: Record<string, unknown>, name: string, value: unknown): void {
  Object.defineProperty(target, name, { value, enumerable: true, writable: true, configurable: true });
}

/** A caller-supplied version string, safe and short enough to quote in a message. */
function printable(value: string): string {
  return value.length <= 32 && /^[\x20-\x7e]*$/.test(value) ? value : "(invalid)";
}

function errnoCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

async function fileExists(path: string): Promise<boolean> {
  try {
    await fs.stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Makes a rename durable; best effort (not every platform can open a directory). */
async function syncDirectory(dir: string): Promise<void> {
  try {
    const handle = await fs.open(dir, "r");
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch {
    // Windows and some file systems refuse: the rename itself is still atomic.
  }
}
