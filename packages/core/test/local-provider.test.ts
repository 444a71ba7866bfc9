import { randomBytes } from "node:crypto";
import { promises as fsp, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it, jest } from "@jest/globals";
import { ManualClock } from "../src/clock";
import { KmsConfigError, type KmsError, type KmsErrorCode, isKmsError } from "../src/errors";
import { type LocalKmsOptions, type LocalKmsProvider, localKms, localKmsProvider, lockWait } from "../src/local-provider";
import type { EncryptionContext, KmsProvider } from "../src/provider";

/** For the tests that do many fsync'd writes: generous, so a loaded machine (turbo runs packages in parallel) cannot time them out. */
const MANY_WRITES_TIMEOUT_MS = 60_000;

let root: string;
let counter = 0;
const open: LocalKmsProvider[] = [];

beforeAll(async () => {
  root = await fsp.mkdtemp(join(tmpdir(), "kms-local-provider-"));
});

afterEach(async () => {
  jest.restoreAllMocks();
  await Promise.all(open.splice(0).map((p) => p.close()));
});

afterAll(async () => {
  await fsp.rm(root, { recursive: true, force: true });
});

/** A fresh store path in a directory that does not exist yet. */
function storePath(): string {
  counter += 1;
  return join(root, `case-${counter}`, "nested", "keys.json");
}

function make(options: Partial<LocalKmsOptions> = {}): LocalKmsProvider {
  const provider = localKmsProvider({ path: storePath(), ...options });
  open.push(provider);
  return provider;
}

/** A store holding key "k" (version 1), its file content, and its lock file as another writer would hold it. */
async function storeWithHeldLock(): Promise<{ provider: LocalKmsProvider; lock: string; before: string }> {
  const provider = make();
  await provider.createKey("k");
  const before = await fsp.readFile(provider.path, "utf8");
  const lock = `${provider.path}.lock`;
  await fsp.writeFile(lock, "", { mode: 0o600 });
  return { provider, lock, before };
}

async function failure(promise: Promise<unknown> | (() => unknown)): Promise<KmsError> {
  try {
    await (typeof promise === "function" ? promise() : promise);
  } catch (error) {
    if (!isKmsError(error)) throw new Error(`expected a KmsError, got ${String(error)}`);
    return error;
  }
  throw new Error("expected a failure, got success");
}

async function expectCode(promise: Promise<unknown> | (() => unknown), code: KmsErrorCode): Promise<KmsError> {
  const error = await failure(promise);
  expect(error.code).toBe(code);
  return error;
}

function encodings(bytes: Uint8Array): string[] {
  const b = Buffer.from(bytes);
  return [b.toString("hex"), b.toString("hex").toUpperCase(), b.toString("base64"), b.toString("base64url")];
}

/** Every string a KmsError exposes: message, JSON form, stack, and its cause chain. */
function errorText(error: unknown): string {
  const parts: string[] = [];
  let current: unknown = error;
  for (let depth = 0; current !== undefined && current !== null && depth < 10; depth++) {
    if (current instanceof Error) {
      parts.push(current.message, current.stack ?? "");
      if (isKmsError(current)) parts.push(JSON.stringify(current));
      current = current.cause;
    } else {
      parts.push(String(current));
      break;
    }
  }
  return parts.join("\n");
}

const ctx: EncryptionContext = { "kms:tenant": "tenant-a", purpose: "test" };

describe("localKmsProvider: construction and settings", () => {
  it("does no I/O at construction", () => {
    const path = storePath();
    localKmsProvider({ path });
    expect(existsSync(join(path, "..", ".."))).toBe(false);
  });

  it("is the insecure local provider with every capability", () => {
    const provider = make();
    expect(provider.id).toBe("local");
    expect(provider.capabilities).toEqual({ encryptionContext: true, rotation: true, generatesDataKeys: true, insecure: true, keyDisabling: ["disable"] });
  });

  it("rejects an empty path with a KmsConfigError", () => {
    expect(() => localKmsProvider({ path: "" })).toThrow(KmsConfigError);
  });

  it("resolves a relative path against the working directory", () => {
    expect(localKmsProvider({ path: "rel/keys.json" }).path).toBe(join(process.cwd(), "rel/keys.json"));
  });

  it("parses settings with defaults", () => {
    expect(localKms.id).toBe("local");
    expect(localKms.packageName).toBe("@kms/core");
    expect(localKms.parseSettings({})).toEqual({ ok: true, settings: { path: ".kms/local-keys.json" } });
    expect(localKms.parseSettings(undefined)).toEqual({ ok: true, settings: { path: ".kms/local-keys.json" } });
    expect(localKms.parseSettings({ path: "/x/keys.json", autoCreateKeys: false })).toEqual({
      ok: true,
      settings: { path: "/x/keys.json", autoCreateKeys: false },
    });
  });

  it("reports every bad setting with its path", () => {
    const result = localKms.parseSettings({ path: "", autoCreateKeys: "yes", extra: 1 });
    expect(result.ok).toBe(false);
    if (result.ok) return;
    const paths = result.issues.map((i) => i.path).sort();
    expect(paths).toEqual(["", "autoCreateKeys", "path"]);
    expect(result.issues.find((i) => i.path === "")!.message).toMatch(/extra/);
    expect(localKms.parseSettings("nope").ok).toBe(false);
  });

  it("creates a provider from settings", async () => {
    const path = storePath();
    const provider = localKms.create({ path, autoCreateKeys: false });
    open.push(provider as LocalKmsProvider);
    expect(provider.id).toBe("local");
    await expectCode(provider.describeKey("k"), "KMS_KEY_NOT_FOUND");
  });
});

describe("localKmsProvider: the key store file", () => {
  it("is created on first use, 0600 in a 0700 directory, in the documented format", async () => {
    const clock = new ManualClock(Date.UTC(2030, 0, 2, 3, 4, 5));
    const provider = make({ clock });
    expect(existsSync(provider.path)).toBe(false);
    await provider.generateDataKey({ keyId: "app/key-1", context: ctx });
    const stat = await fsp.stat(provider.path);
    expect(stat.mode & 0o777).toBe(0o600);
    // Both directories it had to create.
    expect((await fsp.stat(join(provider.path, ".."))).mode & 0o777).toBe(0o700);
    expect((await fsp.stat(join(provider.path, "..", ".."))).mode & 0o777).toBe(0o700);
    const content = JSON.parse(await fsp.readFile(provider.path, "utf8"));
    expect(content).toEqual({
      format: "kms-local-keystore",
      version: 1,
      keys: {
        "app/key-1": {
          enabled: true,
          createdAt: "2030-01-02T03:04:05.000Z",
          currentVersion: "1",
          versions: { "1": { createdAt: "2030-01-02T03:04:05.000Z", material: expect.any(String) } },
        },
      },
    });
    expect(Buffer.from(content.keys["app/key-1"].versions["1"].material, "base64")).toHaveLength(32);
  });

  it("keeps 0600 and 0700 even with a permissive umask", async () => {
    const previous = process.umask(0);
    try {
      const provider = make();
      await provider.createKey("k");
      await provider.rotateKey("k");
      expect((await fsp.stat(provider.path)).mode & 0o777).toBe(0o600);
      expect((await fsp.stat(join(provider.path, ".."))).mode & 0o777).toBe(0o700);
    } finally {
      process.umask(previous);
    }
  });

  it("never contains a data key, in any encoding", async () => {
    const provider = make();
    const deks: Uint8Array[] = [];
    const wrapped: Uint8Array[] = [];
    for (let i = 0; i < 40; i++) {
      const keyId = `key-${i % 4}`;
      const generated = await provider.generateDataKey({ keyId, context: { ...ctx, i: String(i) } });
      deks.push(Buffer.from(generated.plaintextKey));
      wrapped.push(generated.wrappedKey);
      const own = randomBytes(32);
      wrapped.push((await provider.wrapDataKey({ keyId, plaintextKey: own, context: ctx })).wrappedKey);
      deks.push(own);
      if (i % 10 === 9) await provider.rotateKey(keyId);
    }
    const raw = await fsp.readFile(provider.path);
    const text = raw.toString("utf8");
    for (const dek of deks) {
      for (const encoded of encodings(dek)) expect(text.includes(encoded)).toBe(false);
      expect(raw.includes(Buffer.from(dek))).toBe(false);
    }
    for (const w of wrapped) for (const encoded of encodings(w)) expect(text.includes(encoded)).toBe(false);
  });

  it("refuses a store readable by others, naming the path and the fix", async () => {
    const provider = make();
    await provider.createKey("k");
    for (const mode of [0o644, 0o640, 0o604, 0o660]) {
      await fsp.chmod(provider.path, mode);
      const error = await expectCode(provider.describeKey("k"), "KMS_ACCESS_DENIED");
      expect(error.message).toContain(provider.path);
      expect(error.message).toContain("chmod 600");
      expect(error.provider).toBe("local");
      const health = await provider.checkHealth(["k"]);
      expect(health).toMatchObject({ healthy: false, insecure: true });
      expect(health.detail).toContain("KMS_ACCESS_DENIED");
    }
    // Not repaired behind the operator's back.
    expect((await fsp.stat(provider.path)).mode & 0o777).toBe(0o660);
    await fsp.chmod(provider.path, 0o600);
    await expect(provider.describeKey("k")).resolves.toMatchObject({ keyId: "k" });
  });

  it("refuses a symlink at the store path instead of following it, for reads and writes", async () => {
    const target = make();
    await target.createKey("k");
    const before = await fsp.readFile(target.path, "utf8");
    const material: string = JSON.parse(before).keys.k.versions["1"].material;
    const link = storePath();
    await fsp.mkdir(dirname(link), { recursive: true, mode: 0o700 });
    await fsp.symlink(target.path, link);
    const provider = make({ path: link });
    const calls: (() => Promise<unknown>)[] = [
      () => provider.describeKey("k"),
      () => provider.generateDataKey({ keyId: "k", context: ctx }),
      () => provider.rotateKey("k"),
      () => provider.createKey("other"),
    ];
    for (const call of calls) {
      const error = await expectCode(call, "KMS_ACCESS_DENIED");
      expect(error.message).toContain(link);
      expect(error.message).toContain("symbolic link");
      expect(error.retryable).toBe(false);
      expect(errorText(error)).not.toContain(material);
    }
    const [read] = await provider.validatePermissions("k");
    expect(read).toMatchObject({ permission: "local:read-keystore", ok: false });
    expect(read!.remediation).toBe("point path at the real file, not a link");
    // Neither the link nor the file it points to was touched.
    expect((await fsp.lstat(link)).isSymbolicLink()).toBe(true);
    expect(await fsp.readFile(target.path, "utf8")).toBe(before);
  });

  it("refuses a store owned by another user, naming the path and the fix", async () => {
    const provider = make();
    await provider.createKey("k");
    const uid = process.getuid!();
    jest.spyOn(process, "getuid").mockReturnValue(uid + 1);
    const error = await expectCode(provider.describeKey("k"), "KMS_ACCESS_DENIED");
    expect(error.message).toContain(provider.path);
    expect(error.message).toContain(`owned by uid ${uid}, not by this process (uid ${uid + 1})`);
    expect(error.message).toContain(`chmod 600 ${provider.path}`);
    await expectCode(provider.rotateKey("k"), "KMS_ACCESS_DENIED");
    jest.restoreAllMocks();
    expect((await provider.describeKey("k")).currentVersion).toBe("1");
  });

  it(
    "two instances on one file, writing at once, lose no key and no version",
    async () => {
      const path = storePath();
      const a = make({ path });
      const b = make({ path });
      await a.createKey("shared");
      // Both instances start out waiting for a lock held here, so their writes contend from the first.
      // A writer that finds the lock held waits until a lock is next removed (the provider and this
      // test remove it with fs.rm), not for a timed pause.
      const lock = `${path}.lock`;
      await fsp.writeFile(lock, "", { mode: 0o600 });
      const waiting = new Set<() => void>();
      let bothWaiting!: () => void;
      const bothParked = new Promise<void>((resolve) => (bothWaiting = resolve));
      const realRm = fsp.rm;
      jest.spyOn(fsp, "rm").mockImplementation(async (...args: Parameters<typeof fsp.rm>) => {
        try {
          await realRm(...args);
        } finally {
          for (const wake of waiting) wake();
          waiting.clear();
        }
      });
      jest.spyOn(lockWait, "sleep").mockImplementation(() => {
        if (!existsSync(lock)) return Promise.resolve();
        return new Promise<void>((resolve) => {
          waiting.add(resolve);
          // Each instance queues its own writes, so it waits for the lock at most once at a time:
          // while the test holds it, two waits are one from each instance.
          if (waiting.size === 2) bothWaiting();
        });
      });

      const wrapped: { keyId: string; keyVersion: string; wrappedKey: Uint8Array; plaintextKey: Uint8Array }[] = [];
      const keep = async (provider: LocalKmsProvider, keyId: string) => {
        wrapped.push({ keyId, ...(await provider.generateDataKey({ keyId, context: ctx })) });
      };
      // Per instance, 4 concurrent tasks of 3 writes each: create and rotate a key of its own, rotate the shared key.
      const work = (provider: LocalKmsProvider, name: string) =>
        Array.from({ length: 4 }, async (_, i) => {
          await provider.createKey(`${name}-${i}`);
          await keep(provider, `${name}-${i}`);
          await provider.rotateKey(`${name}-${i}`);
          await keep(provider, `${name}-${i}`);
          await provider.rotateKey("shared");
          await keep(provider, "shared");
        });
      const all = Promise.all([...work(a, "a"), ...work(b, "b")]);
      const first = await Promise.race([bothParked.then(() => "both waiting"), all.then(() => "all done", () => "failed")]);
      if (first === "failed") await all; // throws its error
      expect(first).toBe("both waiting");
      await fsp.rm(lock);
      await all;

      const content = JSON.parse(await fsp.readFile(path, "utf8"));
      expect(Object.keys(content.keys).sort()).toEqual(
        ["shared", ...Array.from({ length: 4 }, (_, i) => [`a-${i}`, `b-${i}`]).flat()].sort(),
      );
      // 1 + one rotation per task (8 tasks).
      expect(Object.keys(content.keys.shared.versions).sort((x, y) => Number(x) - Number(y))).toEqual(
        Array.from({ length: 9 }, (_, i) => String(i + 1)),
      );
      expect(content.keys.shared.currentVersion).toBe("9");
      for (const name of ["a", "b"]) {
        for (let i = 0; i < 4; i++) {
          expect(content.keys[`${name}-${i}`]).toMatchObject({ currentVersion: "2" });
          expect(Object.keys(content.keys[`${name}-${i}`].versions).sort()).toEqual(["1", "2"]);
        }
      }
      // Every data key wrapped along the way still unwraps, read back by an instance that saw none of it.
      expect(wrapped).toHaveLength(24);
      const fresh = make({ path, autoCreateKeys: false });
      for (const { keyId, keyVersion, wrappedKey, plaintextKey } of wrapped) {
        expect(Buffer.from(await fresh.unwrapDataKey({ keyId, keyVersion, wrappedKey, context: ctx }))).toEqual(Buffer.from(plaintextKey));
      }
      expect(await fsp.readdir(dirname(path))).toEqual(["keys.json"]);
    },
    MANY_WRITES_TIMEOUT_MS,
  );

  it("waits while another writer holds the lock, backing off from 5 ms doubling up to 100 ms, then writes", async () => {
    const { provider, lock, before } = await storeWithHeldLock();
    jest.spyOn(Math, "random").mockReturnValue(0.5); // a jitter factor of exactly 1
    // The lock-wait's pauses are recorded, not slept; the sixth is held until the lock is released.
    const pauses: number[] = [];
    let sixthPause!: () => void;
    const polledSixTimes = new Promise<void>((resolve) => (sixthPause = resolve));
    let resume!: () => void;
    const resumed = new Promise<void>((resolve) => (resume = resolve));
    jest.spyOn(lockWait, "sleep").mockImplementation(async (ms) => {
      pauses.push(ms);
      if (pauses.length === 6) {
        sixthPause();
        await resumed;
      }
    });
    const rotation = provider.rotateKey("k");
    const first = await Promise.race([polledSixTimes.then(() => "sixth pause"), rotation.then(() => "rotated", () => "failed")]);
    if (first === "failed") await rotation; // throws its error
    // Six attempts found the lock held and the rotation is still waiting; the file is as it was.
    expect(first).toBe("sixth pause");
    expect(pauses).toEqual([5, 10, 20, 40, 80, 100]);
    expect(await fsp.readFile(provider.path, "utf8")).toBe(before);
    expect(existsSync(lock)).toBe(true);
    await fsp.rm(lock);
    resume();
    await expect(rotation).resolves.toEqual({ keyId: "k", previousVersion: "1", currentVersion: "2" });
    // The next attempt after the release took the lock: no further pause.
    expect(pauses).toHaveLength(6);
    expect(existsSync(lock)).toBe(false);
  });

  it("jitters each pause between half and one and a half times the backoff", async () => {
    const { provider, lock } = await storeWithHeldLock();
    const random = jest.spyOn(Math, "random");
    for (const r of [0, 0.25, 0.75]) random.mockReturnValueOnce(r);
    const pauses: number[] = [];
    jest.spyOn(lockWait, "sleep").mockImplementation(async (ms) => {
      pauses.push(ms);
      if (pauses.length === 3) await fsp.rm(lock);
    });
    await expect(provider.rotateKey("k")).resolves.toMatchObject({ currentVersion: "2" });
    expect(pauses).toEqual([5 * 0.5, 10 * 0.75, 20 * 1.25]);
  });

  it("breaks a lock left over 30 s ago by a crashed writer", async () => {
    const { provider, lock } = await storeWithHeldLock();
    const old = new Date(Date.now() - 31_000);
    await fsp.utimes(lock, old, old);
    const pause = jest.spyOn(lockWait, "sleep");
    await expect(provider.rotateKey("k")).resolves.toMatchObject({ currentVersion: "2" });
    // Broken at the first look, without waiting.
    expect(pause).not.toHaveBeenCalled();
    expect(existsSync(lock)).toBe(false);
  });

  it("gives up on a lock held too long with a retryable KMS_UNAVAILABLE naming it, and leaves it", async () => {
    const { provider, lock, before } = await storeWithHeldLock();
    // Time passes only while the writer pauses, 4 s a pause: past the 10 s wait, short of 30 s stale.
    let now = Date.now();
    jest.spyOn(lockWait, "now").mockImplementation(() => now);
    const pause = jest.spyOn(lockWait, "sleep").mockImplementation(async () => {
      now += 4_000;
    });
    const error = await expectCode(provider.rotateKey("k"), "KMS_UNAVAILABLE");
    // Attempts at 0, 4 and 8 s pause; the one at 12 s gives up.
    expect(pause).toHaveBeenCalledTimes(3);
    jest.restoreAllMocks();
    expect(error.retryable).toBe(true);
    expect(error.message).toContain(`another writer has held the lock ${lock} of the local key store for over 10 s`);
    expect(existsSync(lock)).toBe(true);
    expect(await fsp.readFile(provider.path, "utf8")).toBe(before);
    await fsp.rm(lock);
    await expect(provider.rotateKey("k")).resolves.toMatchObject({ currentVersion: "2" });
  });

  it("leaves no temporary files and loses no update under concurrent writes", async () => {
    const provider = make();
    await provider.createKey("k");
    // One instance queues its own writes: it never finds its own lock held.
    const pause = jest.spyOn(lockWait, "sleep");
    const results = await Promise.all([
      ...Array.from({ length: 15 }, () => provider.rotateKey("k")),
      ...Array.from({ length: 10 }, (_, i) => provider.createKey(`other-${i}`)),
    ]);
    const versions = results.slice(0, 15).map((r) => ("currentVersion" in r ? r.currentVersion : ""));
    expect(new Set(versions).size).toBe(15);
    expect((await provider.describeKey("k")).currentVersion).toBe("16");
    const content = JSON.parse(await fsp.readFile(provider.path, "utf8"));
    expect(Object.keys(content.keys["k"].versions)).toHaveLength(16);
    expect(Object.keys(content.keys)).toHaveLength(11);
    expect(await fsp.readdir(join(provider.path, ".."))).toEqual(["keys.json"]);
    expect(pause).not.toHaveBeenCalled();
  }, MANY_WRITES_TIMEOUT_MS);

  it("sees changes written by another instance (another process, the CLI)", async () => {
    const a = make();
    const b = make({ path: a.path });
    const wrapped = await a.generateDataKey({ keyId: "k", context: ctx });
    await b.rotateKey("k");
    const next = await a.generateDataKey({ keyId: "k", context: ctx });
    expect(next.keyVersion).toBe("2");
    await expect(b.unwrapDataKey({ keyId: "k", keyVersion: "1", wrappedKey: wrapped.wrappedKey, context: ctx })).resolves.toEqual(
      Buffer.from(wrapped.plaintextKey),
    );
  });

  const corruptions: [string, (valid: StoreJson) => unknown][] = [
    ["not JSON", () => "{ this is not json SECRET-CONTENT-abc123"],
    ["another format", (v) => ({ ...v, format: "other" })],
    ["a future version", (v) => ({ ...v, version: 2 })],
    ["keys as an array", (v) => ({ ...v, keys: [] })],
    ["a short KEK", (v) => withMaterial(v, Buffer.alloc(16, 7).toString("base64"))],
    ["a KEK that is not base64", (v) => withMaterial(v, "SECRET-CONTENT-abc123!!")],
    ["a current version that does not exist", (v) => ({ ...v, keys: { k: { ...v.keys.k, currentVersion: "9" } } })],
    ["a bad version name", (v) => ({ ...v, keys: { k: { ...v.keys.k, versions: { "01": v.keys.k.versions["1"] } } } })],
    ["an invalid key id", (v) => ({ ...v, keys: { "SECRET-CONTENT abc123": v.keys.k } })],
    ["enabled not a boolean", (v) => ({ ...v, keys: { k: { ...v.keys.k, enabled: "SECRET-CONTENT-abc123" } } })],
    ["a bad date", (v) => ({ ...v, keys: { k: { ...v.keys.k, createdAt: "SECRET-CONTENT-abc123" } } })],
  ];

  it.each(corruptions)("reports a corrupt store (%s) as KMS_PROVIDER_ERROR without echoing it", async (_name, corrupt) => {
    const provider = make();
    await provider.createKey("k");
    const valid = JSON.parse(await fsp.readFile(provider.path, "utf8"));
    const material: string = valid.keys.k.versions["1"].material;
    const bad = corrupt(valid);
    await fsp.writeFile(provider.path, typeof bad === "string" ? bad : JSON.stringify(bad), { mode: 0o600 });
    const error = await expectCode(provider.describeKey("k"), "KMS_PROVIDER_ERROR");
    expect(error.message).toContain(provider.path);
    const text = errorText(error);
    expect(text).not.toContain("SECRET-CONTENT");
    expect(text).not.toContain(material);
    expect(error.cause).toBeUndefined();
    await expectCode(provider.generateDataKey({ keyId: "k", context: ctx }), "KMS_PROVIDER_ERROR");
  });

  it("treats key ids like __proto__ and constructor as plain names", async () => {
    const provider = make({ autoCreateKeys: false });
    await expectCode(provider.describeKey("constructor"), "KMS_KEY_NOT_FOUND");
    await expectCode(provider.describeKey("__proto__"), "KMS_KEY_NOT_FOUND");
    await provider.createKey("__proto__");
    await expectCode(provider.describeKey("constructor"), "KMS_KEY_NOT_FOUND");
    const dk = await provider.generateDataKey({ keyId: "__proto__", context: ctx });
    const again = localKmsProvider({ path: provider.path, autoCreateKeys: false });
    open.push(again);
    await expect(again.unwrapDataKey({ keyId: "__proto__", keyVersion: "1", wrappedKey: dk.wrappedKey, context: ctx })).resolves.toEqual(
      Buffer.from(dk.plaintextKey),
    );
    const content = JSON.parse(await fsp.readFile(provider.path, "utf8"));
    expect(Object.keys(content.keys)).toEqual(["__proto__"]);
  });
});

/** The parsed store, loosely typed for surgery. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- JSON of a known shape, edited by hand
type StoreJson = Record<string, any>;

function withMaterial(v: StoreJson, material: string): unknown {
  return { ...v, keys: { k: { ...v.keys.k, versions: { "1": { ...v.keys.k.versions["1"], material } } } } };
}

describe("localKmsProvider: file-system errors", () => {
  function systemError(code: string): NodeJS.ErrnoException {
    return Object.assign(new Error(`${code}: simulated, open '/somewhere'`), { code });
  }

  it("maps EACCES and EPERM to KMS_ACCESS_DENIED naming the path", async () => {
    for (const code of ["EACCES", "EPERM"]) {
      const provider = make();
      jest.spyOn(fsp, "open").mockRejectedValueOnce(systemError(code));
      const error = await expectCode(provider.describeKey("k"), "KMS_ACCESS_DENIED");
      expect(error.message).toContain(provider.path);
      expect(error.message).toContain("chmod 600");
      expect(error.retryable).toBe(false);
      expect((error.cause as NodeJS.ErrnoException).code).toBe(code);
    }
  });

  it("maps a denied write to KMS_ACCESS_DENIED", async () => {
    const provider = make();
    jest.spyOn(fsp, "mkdir").mockRejectedValueOnce(systemError("EACCES"));
    await expectCode(provider.generateDataKey({ keyId: "k", context: ctx }), "KMS_ACCESS_DENIED");
    // The failed write left nothing behind and the next one works.
    await expect(provider.generateDataKey({ keyId: "k", context: ctx })).resolves.toMatchObject({ keyVersion: "1" });
  });

  it("maps other errors to KMS_UNAVAILABLE with the cause", async () => {
    const provider = make();
    jest.spyOn(fsp, "open").mockRejectedValueOnce(systemError("EIO"));
    const error = await expectCode(provider.describeKey("k"), "KMS_UNAVAILABLE");
    expect(error.retryable).toBe(true);
    expect((error.cause as NodeJS.ErrnoException).code).toBe("EIO");
  });

  it("gives other file-system errors a fix that fits them, not a chmod", async () => {
    const realOpen = fsp.open;
    const cases: [string, string, boolean][] = [
      ["ENOSPC", "free space (or quota) on the file system that holds", true],
      ["EROFS", "is on a read-only file system: point path at a writable location", false],
      ["EISDIR", "is a directory: point path at a file", false],
      ["EIO", "check the file system that holds", true],
    ];
    for (const [code, fix, retryable] of cases) {
      const provider = make();
      // Only the temporary file of the write fails, as a full or read-only disk would.
      jest.spyOn(fsp, "open").mockImplementation(((path: string, ...rest: never[]) =>
        String(path).endsWith(".tmp") ? Promise.reject(systemError(code)) : realOpen(path, ...rest)) as typeof fsp.open);
      const error = await expectCode(provider.createKey("k"), "KMS_UNAVAILABLE");
      jest.restoreAllMocks();
      expect(error.message).toContain(`(${code})`);
      expect(error.message).toContain(fix);
      expect(error.message).not.toContain("chmod");
      expect(error.retryable).toBe(retryable);
      expect(await fsp.readdir(dirname(provider.path))).toEqual([]);
    }
  });

  it("validatePermissions gives a fix that fits the file-system error", async () => {
    const provider = make();
    jest.spyOn(fsp, "access").mockRejectedValue(systemError("EROFS"));
    const [, write] = await provider.validatePermissions("k");
    expect(write).toMatchObject({ permission: "local:write-keystore", ok: false });
    expect(write!.error!.code).toBe("KMS_UNAVAILABLE");
    expect(write!.remediation).toMatch(/is on a read-only file system: point path at a writable location$/);
    expect(write!.remediation).not.toContain("chmod");
    jest.restoreAllMocks();

    jest.spyOn(fsp, "access").mockRejectedValue(systemError("EACCES"));
    const [, denied] = await provider.validatePermissions("k");
    expect(denied!.error!.code).toBe("KMS_ACCESS_DENIED");
    expect(denied!.remediation).toContain("chmod 600");
  });

  it("reports a path under a regular file as a permanent KMS_UNAVAILABLE", async () => {
    const file = join(root, `plain-file-${++counter}`);
    await fsp.writeFile(file, "x");
    const provider = make({ path: join(file, "keys.json") });
    const error = await expectCode(provider.generateDataKey({ keyId: "k", context: ctx }), "KMS_UNAVAILABLE");
    expect(error.retryable).toBe(false);
    expect(await provider.checkHealth(["k"])).toMatchObject({ healthy: false, insecure: true });
  });
});

describe("localKmsProvider: data keys", () => {
  it("generates a 32-byte key wrapped as iv ‖ ct ‖ tag under the current version", async () => {
    const provider = make();
    const dk = await provider.generateDataKey({ keyId: "k", context: ctx });
    expect(dk.plaintextKey).toHaveLength(32);
    expect(dk.wrappedKey).toHaveLength(60);
    expect(dk.keyVersion).toBe("1");
    const other = await provider.generateDataKey({ keyId: "k", context: ctx });
    expect(Buffer.from(other.plaintextKey).equals(Buffer.from(dk.plaintextKey))).toBe(false);
    expect(Buffer.from(other.wrappedKey.subarray(0, 12)).equals(Buffer.from(dk.wrappedKey.subarray(0, 12)))).toBe(false);
    const unwrapped = await provider.unwrapDataKey({ keyId: "k", keyVersion: "1", wrappedKey: dk.wrappedKey, context: ctx });
    expect(Buffer.from(unwrapped)).toEqual(Buffer.from(dk.plaintextKey));
  });

  it("wraps a given key and unwraps it", async () => {
    const provider = make();
    const key = randomBytes(32);
    const { wrappedKey, keyVersion } = await provider.wrapDataKey({ keyId: "k", plaintextKey: key, context: ctx });
    expect(wrappedKey).toHaveLength(60);
    expect(Buffer.from(wrappedKey).includes(key)).toBe(false);
    expect(Buffer.from(await provider.unwrapDataKey({ keyId: "k", keyVersion, wrappedKey, context: ctx }))).toEqual(key);
  });

  it("rejects a data key to wrap that is not 32 bytes as INPUT_INVALID", async () => {
    const provider = make();
    const key = randomBytes(33);
    for (const plaintextKey of [key.subarray(0, 31), key, new Uint8Array(0), "x".repeat(32) as unknown as Uint8Array]) {
      const error = await expectCode(provider.wrapDataKey({ keyId: "k", plaintextKey, context: ctx }), "INPUT_INVALID");
      for (const encoded of encodings(key)) expect(errorText(error)).not.toContain(encoded);
    }
  });

  it("binds the encryption context: any change fails with a vague ENVELOPE_AUTH_FAILED", async () => {
    const provider = make();
    const dk = await provider.generateDataKey({ keyId: "k", context: ctx });
    const others: EncryptionContext[] = [
      {},
      { "kms:tenant": "tenant-b", purpose: "test" },
      { "kms:tenant": "tenant-a" },
      { ...ctx, extra: "" },
      { "kms:tenant": "tenant-a", purpose: "test " },
    ];
    const messages = new Set<string>();
    for (const context of others) {
      const error = await expectCode(provider.unwrapDataKey({ keyId: "k", keyVersion: "1", wrappedKey: dk.wrappedKey, context }), "ENVELOPE_AUTH_FAILED");
      messages.add(error.message);
      expect(error.cause).toBeUndefined();
    }
    expect(messages.size).toBe(1);
  });

  it("encodes the context canonically: order does not matter, boundaries do", async () => {
    const provider = make();
    const dk = await provider.generateDataKey({ keyId: "k", context: { b: "2", a: "1", "é": "3", z: "" } });
    const reordered = { z: "", "é": "3", a: "1", b: "2" };
    await expect(provider.unwrapDataKey({ keyId: "k", keyVersion: "1", wrappedKey: dk.wrappedKey, context: reordered })).resolves.toHaveLength(32);

    const split = await provider.generateDataKey({ keyId: "k", context: { a: "bc" } });
    await expectCode(
      provider.unwrapDataKey({ keyId: "k", keyVersion: "1", wrappedKey: split.wrappedKey, context: { ab: "c" } }),
      "ENVELOPE_AUTH_FAILED",
    );
    await expectCode(
      provider.unwrapDataKey({ keyId: "k", keyVersion: "1", wrappedKey: split.wrappedKey, context: { a: "b", c: "" } }),
      "ENVELOPE_AUTH_FAILED",
    );
  });

  it("binds the key id and version even when two keys share a KEK", async () => {
    const provider = make();
    const dk = await provider.generateDataKey({ keyId: "a", context: ctx });
    await provider.createKey("b");
    await provider.rotateKey("a");
    // Give key "b" (and version "2" of "a") the very KEK of a/1, by hand.
    const content = JSON.parse(await fsp.readFile(provider.path, "utf8"));
    content.keys.b.versions["1"].material = content.keys.a.versions["1"].material;
    content.keys.a.versions["2"].material = content.keys.a.versions["1"].material;
    await fsp.writeFile(provider.path, JSON.stringify(content), { mode: 0o600 });
    await expectCode(provider.unwrapDataKey({ keyId: "b", keyVersion: "1", wrappedKey: dk.wrappedKey, context: ctx }), "ENVELOPE_AUTH_FAILED");
    await expectCode(provider.unwrapDataKey({ keyId: "a", keyVersion: "2", wrappedKey: dk.wrappedKey, context: ctx }), "ENVELOPE_AUTH_FAILED");
    await expect(provider.unwrapDataKey({ keyId: "a", keyVersion: "1", wrappedKey: dk.wrappedKey, context: ctx })).resolves.toHaveLength(32);
  });

  it("fails ENVELOPE_AUTH_FAILED on any tampered byte or wrong length", async () => {
    const provider = make();
    const { wrappedKey } = await provider.generateDataKey({ keyId: "k", context: ctx });
    for (let i = 0; i < wrappedKey.length; i++) {
      const tampered = Buffer.from(wrappedKey);
      tampered[i] = tampered[i]! ^ 0x01;
      await expectCode(provider.unwrapDataKey({ keyId: "k", keyVersion: "1", wrappedKey: tampered, context: ctx }), "ENVELOPE_AUTH_FAILED");
    }
    for (const bad of [wrappedKey.subarray(0, 59), Buffer.concat([wrappedKey, Buffer.alloc(1)]), new Uint8Array(0)]) {
      await expectCode(provider.unwrapDataKey({ keyId: "k", keyVersion: "1", wrappedKey: bad, context: ctx }), "ENVELOPE_AUTH_FAILED");
    }
  });

  it("unwrap of an unknown key or version is KMS_KEY_NOT_FOUND and creates nothing, even with autoCreateKeys", async () => {
    const provider = make({ autoCreateKeys: true });
    const { wrappedKey } = await provider.generateDataKey({ keyId: "k", context: ctx });
    const before = await fsp.readFile(provider.path, "utf8");
    await expectCode(provider.unwrapDataKey({ keyId: "missing", keyVersion: "1", wrappedKey, context: ctx }), "KMS_KEY_NOT_FOUND");
    for (const keyVersion of ["2", "0", "", "01", "constructor", "__proto__", "x".repeat(500)]) {
      const error = await expectCode(provider.unwrapDataKey({ keyId: "k", keyVersion, wrappedKey, context: ctx }), "KMS_KEY_NOT_FOUND");
      expect(error.message.length).toBeLessThan(400);
    }
    expect(await fsp.readFile(provider.path, "utf8")).toBe(before);
    const fresh = make();
    await expectCode(fresh.unwrapDataKey({ keyId: "k", keyVersion: "1", wrappedKey, context: ctx }), "KMS_KEY_NOT_FOUND");
    expect(existsSync(fresh.path)).toBe(false);
  });

  it("rejects invalid key ids and contexts as INPUT_INVALID", async () => {
    const provider = make();
    for (const keyId of ["", "x".repeat(257), "has space", "ü", "a\0b", 42 as unknown as string]) {
      await expectCode(provider.generateDataKey({ keyId, context: ctx }), "INPUT_INVALID");
      await expectCode(provider.describeKey(keyId), "INPUT_INVALID");
    }
    await expect(provider.describeKey("a-Z_0.9/x")).resolves.toMatchObject({ keyId: "a-Z_0.9/x" });
    await expect(provider.describeKey("x".repeat(256))).resolves.toMatchObject({ currentVersion: "1" });
    for (const context of [null, "ctx", { a: 1 }, ["a"]]) {
      await expectCode(provider.generateDataKey({ keyId: "k", context: context as unknown as EncryptionContext }), "INPUT_INVALID");
    }
  });

  it("never puts a data key in an error", async () => {
    const provider = make({ autoCreateKeys: false });
    await provider.createKey("k");
    const key = randomBytes(32);
    const { wrappedKey } = await provider.wrapDataKey({ keyId: "k", plaintextKey: key, context: ctx });
    const errors = [
      await failure(provider.wrapDataKey({ keyId: "missing", plaintextKey: key, context: ctx })),
      await failure(provider.wrapDataKey({ keyId: "k", plaintextKey: Buffer.concat([key, Buffer.alloc(1)]), context: ctx })),
      await failure(provider.unwrapDataKey({ keyId: "k", keyVersion: "1", wrappedKey, context: {} })),
      await failure(provider.unwrapDataKey({ keyId: "k", keyVersion: "9", wrappedKey, context: ctx })),
    ];
    await provider.disableKey("k");
    errors.push(await failure(provider.wrapDataKey({ keyId: "k", plaintextKey: key, context: ctx })));
    for (const error of errors) {
      for (const encoded of [...encodings(key), ...encodings(wrappedKey)]) expect(errorText(error)).not.toContain(encoded);
    }
  });

  it("honours an aborted signal before starting", async () => {
    const provider = make();
    const controller = new AbortController();
    controller.abort(new Error("gone"));
    await expectCode(provider.generateDataKey({ keyId: "k", context: ctx, signal: controller.signal }), "KMS_TIMEOUT");
    expect(existsSync(provider.path)).toBe(false);
  });
});

describe("localKmsProvider: key lifecycle", () => {
  it("auto-creates keys by default on generate, wrap and describe", async () => {
    const provider = make();
    await expect(provider.generateDataKey({ keyId: "g", context: ctx })).resolves.toMatchObject({ keyVersion: "1" });
    await expect(provider.wrapDataKey({ keyId: "w", plaintextKey: randomBytes(32), context: ctx })).resolves.toMatchObject({ keyVersion: "1" });
    await expect(provider.describeKey("d")).resolves.toMatchObject({ keyId: "d", enabled: true, currentVersion: "1" });
  });

  it("never creates a key on rotateKey: an unknown key is KMS_KEY_NOT_FOUND, even with autoCreateKeys", async () => {
    const provider = make({ autoCreateKeys: true });
    const error = await expectCode(provider.rotateKey("r"), "KMS_KEY_NOT_FOUND");
    expect(error.message).toContain('key "r" does not exist');
    expect(existsSync(provider.path)).toBe(false);
    await provider.createKey("k");
    const before = await fsp.readFile(provider.path, "utf8");
    await expectCode(provider.rotateKey("r"), "KMS_KEY_NOT_FOUND");
    expect(await fsp.readFile(provider.path, "utf8")).toBe(before);
    expect(await fsp.readdir(dirname(provider.path))).toEqual(["keys.json"]);
  });

  it("without autoCreateKeys, unknown keys are KMS_KEY_NOT_FOUND and nothing is written", async () => {
    const provider = make({ autoCreateKeys: false });
    await expectCode(provider.generateDataKey({ keyId: "k", context: ctx }), "KMS_KEY_NOT_FOUND");
    await expectCode(provider.wrapDataKey({ keyId: "k", plaintextKey: randomBytes(32), context: ctx }), "KMS_KEY_NOT_FOUND");
    await expectCode(provider.describeKey("k"), "KMS_KEY_NOT_FOUND");
    await expectCode(provider.rotateKey("k"), "KMS_KEY_NOT_FOUND");
    await expectCode(provider.disableKey("k"), "KMS_KEY_NOT_FOUND");
    expect(existsSync(provider.path)).toBe(false);
    const created = await provider.createKey("k");
    expect(created).toMatchObject({ keyId: "k", enabled: true, currentVersion: "1" });
    expect(await provider.createKey("k")).toEqual(created);
  });

  it("rotates: the new version wraps, every old version still unwraps", async () => {
    const clock = new ManualClock(Date.UTC(2030, 0, 1));
    const provider = make({ clock });
    const v1 = await provider.generateDataKey({ keyId: "k", context: ctx });
    await clock.advance(86_400_000);
    expect(await provider.rotateKey("k")).toEqual({ keyId: "k", previousVersion: "1", currentVersion: "2" });
    const v2 = await provider.generateDataKey({ keyId: "k", context: ctx });
    expect(v2.keyVersion).toBe("2");
    await clock.advance(86_400_000);
    expect(await provider.rotateKey("k")).toEqual({ keyId: "k", previousVersion: "2", currentVersion: "3" });
    const description = await provider.describeKey("k");
    expect(description).toEqual({
      keyId: "k",
      enabled: true,
      currentVersion: "3",
      createdAt: new Date(Date.UTC(2030, 0, 1)),
      rotatedAt: new Date(Date.UTC(2030, 0, 3)),
    });
    for (const dk of [v1, v2]) {
      const key = await provider.unwrapDataKey({ keyId: "k", keyVersion: dk.keyVersion, wrappedKey: dk.wrappedKey, context: ctx });
      expect(Buffer.from(key)).toEqual(Buffer.from(dk.plaintextKey));
    }
    await expectCode(provider.unwrapDataKey({ keyId: "k", keyVersion: "2", wrappedKey: v1.wrappedKey, context: ctx }), "ENVELOPE_AUTH_FAILED");
  });

  it("disableKey through the provider contract: mode disable only, no request id", async () => {
    const provider: KmsProvider = make();
    const dk = await (provider as LocalKmsProvider).generateDataKey({ keyId: "k", context: ctx });
    const before = await fsp.readFile((provider as LocalKmsProvider).path, "utf8");
    const refused = await expectCode(provider.disableKey!("k", { mode: "schedule-destruction" }), "INPUT_INVALID");
    expect(refused.message).toContain('mode "schedule-destruction" is not supported');
    expect(await fsp.readFile((provider as LocalKmsProvider).path, "utf8")).toBe(before);
    await expect(provider.disableKey!("k", { mode: "disable" })).resolves.toEqual({});
    await expectCode(provider.unwrapDataKey({ keyId: "k", keyVersion: "1", wrappedKey: dk.wrappedKey, context: ctx }), "KMS_KEY_DISABLED");
    const controller = new AbortController();
    controller.abort();
    await expectCode(provider.disableKey!("k", { mode: "disable", signal: controller.signal }), "KMS_TIMEOUT");
  });

  it("disables and enables keys", async () => {
    const provider = make();
    const dk = await provider.generateDataKey({ keyId: "k", context: ctx });
    await provider.disableKey("k");
    await expectCode(provider.generateDataKey({ keyId: "k", context: ctx }), "KMS_KEY_DISABLED");
    await expectCode(provider.wrapDataKey({ keyId: "k", plaintextKey: randomBytes(32), context: ctx }), "KMS_KEY_DISABLED");
    await expectCode(provider.unwrapDataKey({ keyId: "k", keyVersion: "1", wrappedKey: dk.wrappedKey, context: ctx }), "KMS_KEY_DISABLED");
    await expectCode(provider.rotateKey("k"), "KMS_KEY_DISABLED");
    expect(await provider.describeKey("k")).toMatchObject({ enabled: false });
    const health = await provider.checkHealth(["k"]);
    expect(health).toMatchObject({ healthy: false, insecure: true });
    expect(health.detail).toContain("KMS_KEY_DISABLED");
    await provider.enableKey("k");
    await expect(provider.unwrapDataKey({ keyId: "k", keyVersion: "1", wrappedKey: dk.wrappedKey, context: ctx })).resolves.toHaveLength(32);
  });
});

describe("localKmsProvider: health, permissions, close", () => {
  it("is healthy (and insecure) before the store exists, without creating it", async () => {
    const provider = make();
    const health = await provider.checkHealth(["a", "b"]);
    expect(health.healthy).toBe(true);
    expect(health.insecure).toBe(true);
    expect(health.detail!.length).toBeLessThan(120);
    expect(existsSync(join(provider.path, "..", ".."))).toBe(false);
  });

  it("is unhealthy when a key is missing and cannot be created", async () => {
    const provider = make({ autoCreateKeys: false });
    await provider.createKey("a");
    expect(await provider.checkHealth(["a"])).toEqual({ healthy: true, insecure: true, detail: "local key store" });
    const health = await provider.checkHealth(["a", "b"]);
    expect(health).toMatchObject({ healthy: false, insecure: true });
    expect(health.detail).toContain("KMS_KEY_NOT_FOUND");
  });

  it("validates each permission with a real round trip", async () => {
    const provider = make();
    const checks = await provider.validatePermissions("k");
    expect(checks.map((c) => c.permission)).toEqual([
      "local:read-keystore",
      "local:write-keystore",
      "local:generateDataKey",
      "local:decrypt",
    ]);
    for (const check of checks) {
      expect(check.ok).toBe(true);
      expect(check.docsUrl).toMatch(/^https:\/\//);
      expect(check.error).toBeUndefined();
    }
  });

  it("validatePermissions writes only to create a missing key, and only with autoCreateKeys", async () => {
    const strict = make({ autoCreateKeys: false });
    const checks = await strict.validatePermissions("k");
    expect(checks.map((c) => [c.permission, c.ok, c.error?.code])).toEqual([
      ["local:read-keystore", true, undefined],
      ["local:write-keystore", true, undefined],
      ["local:generateDataKey", false, "KMS_KEY_NOT_FOUND"],
      ["local:decrypt", false, "KMS_PROVIDER_ERROR"],
    ]);
    expect(existsSync(join(strict.path, "..", ".."))).toBe(false);

    await strict.createKey("k");
    await strict.rotateKey("k");
    const before = await fsp.readFile(strict.path, "utf8");
    expect((await strict.validatePermissions("k")).every((c) => c.ok)).toBe(true);
    expect(await fsp.readFile(strict.path, "utf8")).toBe(before);

    // With autoCreateKeys, a missing key is created (version 1), as the first encrypt would.
    const auto = make({ path: strict.path });
    expect((await auto.validatePermissions("new")).every((c) => c.ok)).toBe(true);
    const content = JSON.parse(await fsp.readFile(strict.path, "utf8"));
    expect(Object.keys(content.keys).sort()).toEqual(["k", "new"]);
    expect(content.keys.k).toEqual(JSON.parse(before).keys.k);
    expect(content.keys.new.currentVersion).toBe("1");
  });

  it("reports failing permissions with remediation and the code's docs", async () => {
    const provider = make();
    await provider.createKey("k");
    await provider.disableKey("k");
    const checks = await provider.validatePermissions("k");
    expect(checks.map((c) => [c.permission, c.ok, c.error?.code])).toEqual([
      ["local:read-keystore", true, undefined],
      ["local:write-keystore", true, undefined],
      ["local:generateDataKey", false, "KMS_KEY_DISABLED"],
      ["local:decrypt", false, "KMS_PROVIDER_ERROR"],
    ]);
    expect(checks[2]!.remediation).toContain("enableKey");
    expect(checks[2]!.docsUrl).toMatch(/#kms_key_disabled$/);

    await provider.enableKey("k");
    await fsp.chmod(provider.path, 0o644);
    const denied = await provider.validatePermissions("k");
    expect(denied[0]).toMatchObject({ permission: "local:read-keystore", ok: false });
    expect(denied[0]!.error!.code).toBe("KMS_ACCESS_DENIED");
    expect(denied[0]!.remediation).toContain(`chmod 600 ${provider.path}`);
    expect(denied[0]!.docsUrl).toMatch(/#kms_access_denied$/);
  });

  it("close waits for pending writes, then every call fails with KMS_CLOSED", async () => {
    const provider = localKmsProvider({ path: storePath() });
    const creation = provider.createKey("k");
    const rotation = provider.rotateKey("k");
    await provider.close();
    await expect(creation).resolves.toMatchObject({ currentVersion: "1" });
    await expect(rotation).resolves.toMatchObject({ currentVersion: "2" });
    expect(JSON.parse(await fsp.readFile(provider.path, "utf8")).keys.k.currentVersion).toBe("2");
    const calls: (() => Promise<unknown>)[] = [
      () => provider.generateDataKey({ keyId: "k", context: ctx }),
      () => provider.wrapDataKey({ keyId: "k", plaintextKey: randomBytes(32), context: ctx }),
      () => provider.unwrapDataKey({ keyId: "k", keyVersion: "1", wrappedKey: new Uint8Array(60), context: ctx }),
      () => provider.describeKey("k"),
      () => provider.rotateKey("k"),
      () => provider.checkHealth(["k"]),
      () => provider.validatePermissions("k"),
      () => provider.createKey("k"),
      () => provider.disableKey("k"),
      () => provider.enableKey("k"),
    ];
    for (const call of calls) await expectCode(call, "KMS_CLOSED");
    await expect(provider.close()).resolves.toBeUndefined();
  });
});
