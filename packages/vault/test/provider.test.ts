import { randomBytes } from "node:crypto";
import { type IncomingMessage, type Server, type ServerResponse, createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, beforeEach, describe, expect, it } from "@jest/globals";
import { type Clock, KmsConfigError, KmsError, TROUBLESHOOTING_URL, createKms, isKmsError } from "@kms/core";
import { type Fault, VaultEmulator, type VaultEmulatorOptions } from "@kms/testkit/emulators";
import { VAULT_POLICY_DOCS_URL, VAULT_RUNTIME_GRANTS, type VaultKmsOptions, vaultGrantPath, type VaultKmsProvider, encodeVaultContext, vaultKms, vaultKmsProvider } from "../src";

const TOKEN = "s.very-secret-token-value";
const CONTEXT = { "kms:tenant": "tenant-context-secret", purpose: "context-value-secret" };
const KEY = "tenant-a";
/** Exactly the paths the provider uses for KEY (no globs), so each can be taken away alone. */
const KEY_PATHS = [`transit/datakey/plaintext/${KEY}`, `transit/encrypt/${KEY}`, `transit/decrypt/${KEY}`, `transit/keys/${KEY}`];

let nowMs = Date.UTC(2024, 0, 1);
const clock: Clock = { now: () => nowMs, setTimer: () => () => {} };
let emulator: VaultEmulator;
let endpoint: string;
const providers: VaultKmsProvider[] = [];

async function start(options: VaultEmulatorOptions = {}): Promise<void> {
  await emulator?.stop();
  emulator = new VaultEmulator({ now: () => new Date(nowMs), tokens: { [TOKEN]: { name: "app", paths: ["transit/*", "sys/*"] } }, ...options });
  endpoint = await emulator.start();
  emulator.createKey(KEY);
}

function provider(options: Partial<VaultKmsOptions> = {}): VaultKmsProvider {
  const p = vaultKmsProvider({ endpoint, auth: { token: TOKEN }, clock, ...options });
  providers.push(p);
  return p;
}

beforeEach(async () => {
  nowMs = Date.UTC(2024, 0, 1);
  await start();
});

afterEach(async () => {
  await Promise.all(providers.splice(0).map((p) => p.close()));
  await emulator.stop();
});

/** Awaits `fn`, which must reject with a KmsError. */
async function kmsError(fn: () => Promise<unknown>): Promise<KmsError> {
  try {
    await fn();
  } catch (error) {
    if (isKmsError(error)) return error;
    throw new Error(`expected a KmsError, got ${String(error)}`);
  }
  throw new Error("expected a KmsError, but the call succeeded");
}

/** Message, stack, JSON and the whole cause chain of an error, as one string. */
function everything(error: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = error, depth = 0; e !== undefined && e !== null && depth < 10; depth++) {
    if (e instanceof Error) {
      parts.push(e.message, e.stack ?? "", JSON.stringify(e));
      e = e.cause;
    } else {
      parts.push(JSON.stringify(e));
      break;
    }
  }
  return parts.join("\n");
}

/** No token, context value (raw or as Vault's context parameter) or data key anywhere in the error. */
function expectNoSecrets(error: unknown, dataKey?: Uint8Array): void {
  const text = everything(error);
  const secrets = [TOKEN, "very-secret", ...Object.values(CONTEXT), encodeVaultContext(CONTEXT)];
  if (dataKey) secrets.push(Buffer.from(dataKey).toString("base64"), Buffer.from(dataKey).toString("hex"));
  for (const secret of secrets) expect({ secret, found: text.includes(secret) }).toEqual({ secret, found: false });
}

async function waitFor(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !condition(); i++) await new Promise((resolve) => setTimeout(resolve, 10));
  expect(condition()).toBe(true);
}

describe("error mapping", () => {
  type Op = { name: string; operation: string; path: string; capability: string; run: (p: VaultKmsProvider, wrapped: { wrappedKey: Uint8Array; keyVersion: string }) => Promise<unknown> };
  const ops: Op[] = [
    { name: "generateDataKey", operation: "datakey", path: `transit/datakey/plaintext/${KEY}`, capability: "update", run: (p) => p.generateDataKey({ keyId: KEY, context: CONTEXT }) },
    { name: "wrapDataKey", operation: "encrypt", path: `transit/encrypt/${KEY}`, capability: "update", run: (p) => p.wrapDataKey({ keyId: KEY, plaintextKey: randomBytes(32), context: CONTEXT }) },
    { name: "unwrapDataKey", operation: "decrypt", path: `transit/decrypt/${KEY}`, capability: "update", run: (p, w) => p.unwrapDataKey({ keyId: KEY, ...w, context: CONTEXT }) },
    { name: "describeKey", operation: "keys.read", path: `transit/keys/${KEY}`, capability: "read", run: (p) => p.describeKey(KEY) },
    { name: "rotateKey", operation: "keys.rotate", path: `transit/keys/${KEY}/rotate`, capability: "update", run: (p) => p.rotateKey(KEY) },
  ];
  const faults: [Fault, string, boolean][] = [
    [{ kind: "throttle" }, "KMS_THROTTLED", true],
    [{ kind: "serverError" }, "KMS_UNAVAILABLE", true],
    [{ kind: "serverError", status: 503 }, "KMS_UNAVAILABLE", true],
    [{ kind: "connectionReset" }, "KMS_UNAVAILABLE", true],
    [{ kind: "accessDenied" }, "KMS_ACCESS_DENIED", false],
    [{ kind: "keyNotFound" }, "KMS_KEY_NOT_FOUND", false],
    [{ kind: "keyDisabled" }, "KMS_KEY_DISABLED", false],
  ];

  for (const op of ops) {
    it(`${op.name}: each injected fault maps to its code and retryability, in exactly one Vault call, naming key, path and docs, with no secret`, async () => {
      const p = provider();
      const dk = await p.generateDataKey({ keyId: KEY, context: CONTEXT }); // also checks the key is derived
      for (const [fault, code, retryable] of faults) {
        emulator.resetLog();
        emulator.inject(op.operation, fault, { times: 1 });
        const error = await kmsError(() => op.run(p, dk));
        const where = { op: op.name, fault: fault.kind };
        expect({ ...where, code: error.code, retryable: error.retryable, provider: error.provider }).toEqual({ ...where, code, retryable, provider: "vault" });
        expect({ ...where, calls: emulator.counts() }).toEqual({ ...where, calls: { [op.operation]: 1 } });
        expect(error.message).toContain(`(${code}; see ${TROUBLESHOOTING_URL}#${code.toLowerCase()})`);
        expect(error.message).toContain(`"${KEY}"`);
        if (code === "KMS_ACCESS_DENIED") {
          expect(error.message).toContain(`needs "${op.capability}" on "${op.path}"`);
          expect(error.message).toContain(`path "${op.path}" { capabilities = ["${op.capability}"] }`);
        }
        if (code === "KMS_THROTTLED" || (code === "KMS_UNAVAILABLE" && fault.kind === "serverError")) expect(error.message).toContain(`"${op.path}"`);
        expectNoSecrets(error, dk.plaintextKey);
      }
    });
  }

  it("a missing key names the key, the mount and the command that creates it", async () => {
    const error = await kmsError(() => provider().generateDataKey({ keyId: "absent", context: CONTEXT }));
    expect(error.code).toBe("KMS_KEY_NOT_FOUND");
    expect(error.message).toBe(
      'vault: transit key "absent" was not found at mount "transit" (generateDataKey). Create it: vault write -f transit/keys/absent derived=true ' +
        `(KMS_KEY_NOT_FOUND; see ${TROUBLESHOOTING_URL}#kms_key_not_found)`,
    );
    expect(emulator.counts()).toEqual({ "keys.read": 1 });
  });

  it("sealed Vault: KMS_UNAVAILABLE saying so; an outage: KMS_UNAVAILABLE with the network code, the axios error not kept", async () => {
    const p = provider();
    await p.describeKey(KEY);
    emulator.seal();
    const sealed = await kmsError(() => p.generateDataKey({ keyId: KEY, context: CONTEXT }));
    expect([sealed.code, sealed.retryable]).toEqual(["KMS_UNAVAILABLE", true]);
    expect(sealed.message).toContain(`vault: Vault at ${endpoint} is sealed (generateDataKey for key "${KEY}")`);
    emulator.unseal();
    const restore = await emulator.outage();
    const down = await kmsError(() => p.describeKey(KEY));
    await restore();
    expect([down.code, down.retryable]).toEqual(["KMS_UNAVAILABLE", true]);
    expect(down.message).toContain(`cannot reach Vault at ${endpoint} (ECONNREFUSED) for describeKey for key "${KEY}"`);
    expect(down.cause).toMatchObject({ name: "VaultTransportError", code: "ECONNREFUSED" });
    expect(Object.keys(down.cause as object).sort()).toEqual(["code", "name"]); // no config, headers or request body
    expectNoSecrets(down);
  });

  it("the SDK's own request timeout is KMS_TIMEOUT (retryable)", async () => {
    const p = provider({ requestTimeoutMs: 500 });
    await p.describeKey(KEY);
    emulator.inject("datakey", { kind: "latency", ms: 5_000 }, { times: 1 });
    const error = await kmsError(() => p.generateDataKey({ keyId: KEY, context: CONTEXT }));
    expect([error.code, error.retryable]).toEqual(["KMS_TIMEOUT", true]);
    expect(error.message).toContain(`no answer from Vault at ${endpoint} within 500 ms (generateDataKey for key "${KEY}")`);
    expectNoSecrets(error);
  });

  it("an aborted signal rejects at once with its reason; an already aborted one makes no call", async () => {
    const p = provider();
    await p.describeKey(KEY);
    emulator.inject("datakey", { kind: "latency", ms: 60_000 }, { times: 1 });
    const controller = new AbortController();
    const pending = p.generateDataKey({ keyId: KEY, context: CONTEXT, signal: controller.signal });
    await waitFor(() => emulator.pending === 1);
    const coreTimeout = new KmsError("KMS_TIMEOUT", "vault generateDataKey timed out after 50 ms"); // what core aborts with
    controller.abort(coreTimeout);
    expect(await kmsError(() => pending)).toBe(coreTimeout);
    emulator.resetLog();
    const aborted = new AbortController();
    aborted.abort();
    const error = await kmsError(() => p.wrapDataKey({ keyId: KEY, plaintextKey: randomBytes(32), context: CONTEXT, signal: aborted.signal }));
    expect(error.code).toBe("KMS_TIMEOUT");
    expect(emulator.count()).toBe(0);
  });

  it("unwrap: Vault's authentication failure (500) and malformed wrapped keys are ENVELOPE_AUTH_FAILED; malformed ones cost no call", async () => {
    const p = provider();
    const dk = await p.generateDataKey({ keyId: KEY, context: CONTEXT });
    emulator.resetLog();
    const wrong = await kmsError(() => p.unwrapDataKey({ keyId: KEY, ...dk, context: { ...CONTEXT, purpose: "other" } }));
    expect([wrong.code, wrong.retryable]).toEqual(["ENVELOPE_AUTH_FAILED", false]);
    expect(emulator.requests.map((r) => [r.operation, r.status])).toEqual([["decrypt", 500]]);
    emulator.resetLog();
    const text = Buffer.from(dk.wrappedKey).toString("utf8");
    const malformed = [
      Buffer.from(text.replace("vault:v1:", "vault:v2:")), // claims another version than the envelope's
      Buffer.from(text.replace("vault:", "vaulT:")),
      Buffer.from(`${text}!`),
      Buffer.from(text.slice(0, -1)),
      new Uint8Array(0),
      Buffer.concat([Buffer.from(text), Buffer.alloc(9000, 0x41)]),
    ];
    for (const wrappedKey of malformed) {
      expect((await kmsError(() => p.unwrapDataKey({ keyId: KEY, keyVersion: dk.keyVersion, wrappedKey, context: CONTEXT }))).code).toBe("ENVELOPE_AUTH_FAILED");
    }
    expect((await kmsError(() => p.unwrapDataKey({ keyId: KEY, keyVersion: "2", wrappedKey: dk.wrappedKey, context: CONTEXT }))).code).toBe("ENVELOPE_AUTH_FAILED");
    expect(emulator.count()).toBe(0);
  });

  it("invalid input is INPUT_INVALID before any call", async () => {
    const p = provider();
    const bad: (() => Promise<unknown>)[] = [
      () => p.generateDataKey({ keyId: "a/b", context: CONTEXT }),
      () => p.generateDataKey({ keyId: KEY, context: { n: 1 } as unknown as Record<string, string> }),
      () => p.wrapDataKey({ keyId: KEY, plaintextKey: randomBytes(31), context: CONTEXT }),
      () => p.unwrapDataKey({ keyId: KEY, keyVersion: 1 as unknown as string, wrappedKey: Buffer.from("vault:v1:AAAA"), context: CONTEXT }),
      () => p.describeKey(""),
    ];
    for (const call of bad) expect((await kmsError(call)).code).toBe("INPUT_INVALID");
    expect(emulator.count()).toBe(0);
  });
});

describe("malformed answers from Vault", () => {
  let server: Server;
  let answers: Record<string, unknown>;

  beforeEach(async () => {
    answers = {};
    server = createServer((req: IncomingMessage, res: ServerResponse) => {
      req.resume();
      req.on("end", () => {
        const path = (req.url ?? "").replace(/^\/v1\//, "").replace(/\?.*$/, "");
        const answer = answers[path];
        const text = typeof answer === "string" ? answer : JSON.stringify(answer ?? { errors: [] });
        res.writeHead(answer === undefined ? 404 : 200, { "content-type": typeof answer === "string" ? "text/html" : "application/json" });
        res.end(text);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  });

  afterEach(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  const at = () => `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const derived = { data: { derived: true, latest_version: 1, keys: { "1": 1700000000 } } };

  it("is KMS_PROVIDER_ERROR naming the operation and the field, never a crash, never the body", async () => {
    const p = vaultKmsProvider({ endpoint: at(), auth: { token: TOKEN } });
    providers.push(p);
    const cases: [unknown, string][] = [
      ["<html>proxy error page</html>", "no data object"],
      [{ data: { plaintext: randomBytes(16).toString("base64"), ciphertext: "vault:v1:AAAA" } }, "plaintext is not a 32-byte key"],
      [{ data: { plaintext: "not base64!", ciphertext: "vault:v1:AAAA" } }, "plaintext is not a 32-byte key"],
      [{ data: { plaintext: randomBytes(32).toString("base64"), ciphertext: "v1:AAAA" } }, "ciphertext is not vault:v<N>:<base64>"],
      [{ data: { plaintext: randomBytes(32).toString("base64"), ciphertext: "vault:v1:AAAA", key_version: 2 } }, "key_version disagrees with the ciphertext"],
    ];
    answers[`transit/keys/${KEY}`] = derived;
    for (const [answer, what] of cases) {
      answers[`transit/datakey/plaintext/${KEY}`] = answer;
      const error = await kmsError(() => p.generateDataKey({ keyId: KEY, context: CONTEXT }));
      expect({ what, code: error.code, message: error.message }).toEqual({
        what,
        code: "KMS_PROVIDER_ERROR",
        message: `vault: Vault's answer to generateDataKey on "transit/datakey/plaintext/${KEY}" is not what the transit API returns (${what}) (KMS_PROVIDER_ERROR; see ${TROUBLESHOOTING_URL}#kms_provider_error)`,
      });
    }
    answers[`transit/decrypt/${KEY}`] = { data: { plaintext: randomBytes(31).toString("base64") } };
    expect((await kmsError(() => p.unwrapDataKey({ keyId: KEY, keyVersion: "1", wrappedKey: Buffer.from("vault:v1:AAAA"), context: CONTEXT }))).code).toBe("ENVELOPE_AUTH_FAILED");
    answers["transit/keys/odd"] = { data: { derived: "yes", latest_version: 1 } };
    expect((await kmsError(() => p.describeKey("odd"))).message).toContain("(derived is not a boolean)");
    answers["transit/keys/odd"] = { data: { derived: true, latest_version: 0 } };
    expect((await kmsError(() => p.describeKey("odd"))).message).toContain("(latest_version is not a positive integer)");
    answers["sys/health"] = "<html></html>";
    expect(await p.checkHealth([])).toEqual({ healthy: false, insecure: false, detail: "Vault's sys/health answer is not a health report" });
    answers["sys/capabilities-self"] = { data: {} };
    const checks = await p.validatePermissions("odd");
    expect(checks.slice(0, 4).map((c) => [c.ok, c.error?.code])).toEqual(Array(4).fill([false, "KMS_PROVIDER_ERROR"]));
  });
});

describe("derived keys only", () => {
  it("refuses a non-derived key with KMS_CONFIG_INVALID naming the key and the fix, before any data-key call", async () => {
    emulator.createKey("plain", { derived: false });
    const p = provider();
    const error = await kmsError(() => p.generateDataKey({ keyId: "plain", context: CONTEXT }));
    expect([error.code, error.retryable]).toEqual(["KMS_CONFIG_INVALID", false]);
    expect(error.message).toBe(
      'vault: transit key "plain" at mount "transit" is not a derived key, so Vault would ignore the encryption context and a data key wrapped for one tenant would unwrap for any other; ' +
        "use a derived key: vault write -f transit/keys/<name> derived=true (an existing key cannot be made derived: create a new one, point the tenant at it, and re-wrap existing envelopes with kms.rewrap) " +
        `(KMS_CONFIG_INVALID; see ${TROUBLESHOOTING_URL}#kms_config_invalid)`,
    );
    expect((await kmsError(() => p.wrapDataKey({ keyId: "plain", plaintextKey: randomBytes(32), context: CONTEXT }))).code).toBe("KMS_CONFIG_INVALID");
    expect((await kmsError(() => p.unwrapDataKey({ keyId: "plain", keyVersion: "1", wrappedKey: Buffer.from("vault:v1:AAAA"), context: CONTEXT }))).code).toBe(
      "KMS_CONFIG_INVALID",
    );
    // A refusal is not remembered: each call reads again (the key may have been replaced meanwhile).
    expect(emulator.counts()).toEqual({ "keys.read": 3 });
    expect((await p.describeKey("plain")).currentVersion).toBe("1"); // describing is fine
    expect(await p.checkHealth(["plain"])).toEqual({ healthy: false, insecure: false, detail: 'key "plain" is not derived (KMS_CONFIG_INVALID)' });
    const derivedCheck = (await p.validatePermissions("plain")).at(-1)!;
    expect([derivedCheck.permission, derivedCheck.ok, derivedCheck.error?.code]).toEqual(["derived=true transit/keys/plain", false, "KMS_CONFIG_INVALID"]);
  });

  it("reads a derived key once per provider, whichever call reads it first, even for concurrent first calls", async () => {
    const p = provider();
    const keys = await Promise.all(Array.from({ length: 8 }, () => p.generateDataKey({ keyId: KEY, context: CONTEXT })));
    await p.wrapDataKey({ keyId: KEY, plaintextKey: randomBytes(32), context: CONTEXT });
    await p.unwrapDataKey({ keyId: KEY, ...keys[0]!, context: CONTEXT });
    expect(emulator.counts()).toEqual({ "keys.read": 1, datakey: 8, encrypt: 1, decrypt: 1 });

    emulator.createKey("other");
    emulator.resetLog();
    await p.describeKey("other");
    await p.generateDataKey({ keyId: "other", context: CONTEXT });
    expect(emulator.counts()).toEqual({ "keys.read": 1, datakey: 1 });
  });

  it("sends the context as Vault's derivation context: a wrong one fails, any order of the same pairs works", async () => {
    const p = provider();
    const dk = await p.generateDataKey({ keyId: KEY, context: { a: "1", b: "2" } });
    const same = await p.unwrapDataKey({ keyId: KEY, ...dk, context: { b: "2", a: "1" } });
    expect(Buffer.from(same).equals(Buffer.from(dk.plaintextKey))).toBe(true);
    expect((await kmsError(() => p.unwrapDataKey({ keyId: KEY, ...dk, context: { a: "1", b: "3" } }))).code).toBe("ENVELOPE_AUTH_FAILED");
  });
});

describe("encodeVaultContext", () => {
  const u32 = (n: number) => Buffer.from([n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255]);
  const field = (s: string) => Buffer.concat([u32(Buffer.byteLength(s)), Buffer.from(s, "utf8")]);

  it("is the label, the pair count and the length-prefixed pairs sorted by the UTF-8 bytes of their keys", () => {
    const expected = Buffer.concat([field("kms-vault-context-v1"), u32(3), field("B"), field("2"), field("a"), field("1"), field("é"), field("3")]);
    expect(encodeVaultContext({ é: "3", a: "1", B: "2" })).toBe(expected.toString("base64"));
    expect(encodeVaultContext({})).toBe(Buffer.concat([field("kms-vault-context-v1"), u32(0)]).toString("base64"));
  });

  it("is unambiguous and order-independent", () => {
    const contexts: Record<string, string>[] = [{}, { "": "" }, { a: "bc" }, { ab: "c" }, { a: "b", c: "" }, { a: "b\u0000c" }, { a: "b" }];
    expect(new Set(contexts.map(encodeVaultContext)).size).toBe(contexts.length);
    expect(encodeVaultContext({ x: "1", y: "2" })).toBe(encodeVaultContext({ y: "2", x: "1" }));
  });

  it("refuses anything but an object of strings with INPUT_INVALID", () => {
    for (const bad of [null, [], "x", { a: 1 }, { a: undefined }]) {
      let code: string | undefined;
      try {
        encodeVaultContext(bad as unknown as Record<string, string>);
      } catch (error) {
        code = (error as KmsError).code;
      }
      expect(code).toBe("INPUT_INVALID");
    }
  });
});

describe("AppRole", () => {
  const ROLE_ID = "role-id-secret-value";
  const SECRET_ID = "secret-id-secret-value";

  beforeEach(async () => {
    await start({ appRoles: { kms: { roleId: ROLE_ID, secretId: SECRET_ID, paths: ["transit/*"], ttlSeconds: 300 } } });
  });

  const appRoleProvider = () => provider({ auth: { appRole: { roleId: ROLE_ID, secretId: SECRET_ID } }, namespace: "team-a" });
  const ops = () => emulator.requests.map((r) => r.operation);

  it("logs in at first use, renews after two thirds of the lease, logs in again when renewal is refused or the lease ran out; the namespace is on every request", async () => {
    const p = appRoleProvider();
    const t0 = nowMs;
    const keys = await Promise.all(Array.from({ length: 4 }, () => p.generateDataKey({ keyId: KEY, context: CONTEXT })));
    expect(ops()).toEqual(["approle.login", "keys.read", "datakey", "datakey", "datakey", "datakey"]); // one login for concurrent first calls

    nowMs = t0 + 199_000; // before 2/3 of 300 s: no renewal
    await p.unwrapDataKey({ keyId: KEY, ...keys[0]!, context: CONTEXT });
    nowMs = t0 + 200_000; // 2/3: renew first
    await p.generateDataKey({ keyId: KEY, context: CONTEXT });
    expect(ops().slice(6)).toEqual(["decrypt", "token.renew-self", "datakey"]);

    nowMs = t0 + 400_000; // 2/3 of the renewed lease: the token was revoked meanwhile, so renewal is refused
    emulator.revokeAppRoleTokens("kms");
    await p.describeKey(KEY);
    expect(ops().slice(9)).toEqual(["token.renew-self", "approle.login", "keys.read"]);

    nowMs += 299_000; // within the margin before expiry: log in rather than renew
    await p.describeKey(KEY);
    expect(ops().slice(12)).toEqual(["approle.login", "keys.read"]);

    expect(emulator.requests.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 200, 200, 200, 200, 403, 200, 200, 200, 200]);
    expect(new Set(emulator.requests.map((r) => r.details?.namespace))).toEqual(new Set(["team-a"]));
    expect(new Set(emulator.requests.filter((r) => r.identity !== undefined).map((r) => r.identity))).toEqual(new Set(["approle:kms"]));
  });

  it("a call refused with 403 drops the token, so the next call logs in afresh (the refused call is not repeated)", async () => {
    const p = appRoleProvider();
    await p.describeKey(KEY);
    emulator.revokeAppRoleTokens("kms");
    expect((await kmsError(() => p.describeKey(KEY))).code).toBe("KMS_ACCESS_DENIED");
    await p.describeKey(KEY);
    expect(emulator.requests.map((r) => [r.operation, r.status])).toEqual([
      ["approle.login", 200],
      ["keys.read", 200],
      ["keys.read", 403],
      ["approle.login", 200],
      ["keys.read", 200],
    ]);
  });

  it("a refused login is KMS_ACCESS_DENIED without the credentials in it; a sealed Vault at login is KMS_UNAVAILABLE", async () => {
    const p = provider({ auth: { appRole: { roleId: ROLE_ID, secretId: "wrong-secret-value" } } });
    const error = await kmsError(() => p.generateDataKey({ keyId: KEY, context: CONTEXT }));
    expect([error.code, error.retryable]).toEqual(["KMS_ACCESS_DENIED", false]);
    expect(error.message).toContain('vault: the AppRole login at "auth/approle/login" was refused: check roleId and secretId');
    for (const secret of [ROLE_ID, "wrong-secret-value"]) expect(everything(error).includes(secret)).toBe(false);
    emulator.seal();
    expect((await kmsError(() => appRoleProvider().describeKey(KEY))).code).toBe("KMS_UNAVAILABLE");
    expect(emulator.counts()).toEqual({ "approle.login": 2 });
  });

  it("a custom AppRole mount path is used for login", async () => {
    await start({ appRoleMount: "apps/approle", appRoles: { kms: { roleId: ROLE_ID, secretId: SECRET_ID, paths: ["transit/*"] } } });
    await provider({ auth: { appRole: { roleId: ROLE_ID, secretId: SECRET_ID, mountPath: "apps/approle" } } }).describeKey(KEY);
    expect(emulator.requests.map((r) => [r.operation, r.details?.path])).toEqual([
      ["approle.login", "auth/apps/approle/login"],
      ["keys.read", `transit/keys/${KEY}`],
    ]);
  });
});

describe("never the VAULT_* environment", () => {
  const names = ["VAULT_ADDR", "VAULT_TOKEN", "VAULT_NAMESPACE", "VAULT_PREFIX", "VAULT_SKIP_VERIFY"] as const;
  let saved: Record<string, string | undefined>;
  beforeEach(() => {
    saved = Object.fromEntries(names.map((n) => [n, process.env[n]]));
    Object.assign(process.env, { VAULT_ADDR: "http://127.0.0.1:9", VAULT_TOKEN: TOKEN, VAULT_NAMESPACE: "from-env", VAULT_PREFIX: "/bogus", VAULT_SKIP_VERIFY: "1" });
  });
  afterEach(() => {
    for (const n of names) {
      if (saved[n] === undefined) delete process.env[n];
      else process.env[n] = saved[n];
    }
  });

  it("uses only its settings: no namespace, prefix, address or token from the environment", async () => {
    await start({ appRoles: { kms: { roleId: "r", secretId: "s", paths: ["transit/*"] } } });
    await provider({ auth: { appRole: { roleId: "r", secretId: "s" } } }).describeKey(KEY);
    // The login went out without VAULT_TOKEN (it would have shown as the identity "app"), no request
    // carried VAULT_NAMESPACE, and VAULT_ADDR / VAULT_PREFIX would have sent them elsewhere.
    expect(emulator.requests).toEqual([
      { operation: "approle.login", status: 200, details: { path: "auth/approle/login" } },
      { operation: "keys.read", keyId: KEY, status: 200, identity: "approle:kms", details: { path: `transit/keys/${KEY}` } },
    ]);
  });
});

describe("validatePermissions", () => {
  const expectedPermissions = [...KEY_PATHS.slice(0, 3).map((p) => `update ${p}`), `read transit/keys/${KEY}`, `derived=true transit/keys/${KEY}`];

  it("is all ok for a token with exactly the documented paths: one capabilities-self call and one key read", async () => {
    emulator.setTokenPaths(TOKEN, KEY_PATHS);
    const checks = await provider().validatePermissions(KEY);
    expect(checks).toEqual(expectedPermissions.map((permission) => ({ permission, ok: true, docsUrl: VAULT_POLICY_DOCS_URL })));
    expect(emulator.counts()).toEqual({ "sys/capabilities-self": 1, "keys.read": 1 });
  });

  it("asks about exactly VAULT_RUNTIME_GRANTS (what deploy/vault/kms-runtime.hcl grants), in its order", async () => {
    emulator.setTokenPaths(TOKEN, KEY_PATHS);
    const checks = await provider().validatePermissions(KEY);
    expect(checks.slice(0, -1).map((c) => c.permission)).toEqual(VAULT_RUNTIME_GRANTS.map((g) => `${g.capability} ${vaultGrantPath(g, "transit", KEY)}`));
    expect(VAULT_RUNTIME_GRANTS.map((g) => vaultGrantPath(g, "transit", KEY))).toEqual(KEY_PATHS);
  });

  for (const [i, missing] of KEY_PATHS.entries()) {
    it(`reports exactly the missing path when the token lacks ${missing}`, async () => {
      emulator.setTokenPaths(TOKEN, KEY_PATHS.filter((p) => p !== missing));
      const checks = await provider().validatePermissions(KEY);
      const capability = i === 3 ? "read" : "update";
      const failing = i === 3 ? [3, 4] : [i]; // without read, the derived check cannot read the key either
      expect(checks.map((c) => [c.permission, c.ok, c.error?.code])).toEqual(
        expectedPermissions.map((permission, j) => [permission, !failing.includes(j), failing.includes(j) ? "KMS_ACCESS_DENIED" : undefined]),
      );
      const stanza = `path "${missing}" { capabilities = ["${capability}"] }`;
      expect(checks[failing[0]!]!.remediation).toBe(`add to the token's Vault policy: ${stanza}`);
      for (const j of failing) expect(checks[j]!.remediation).toContain(stanza);
      expect(checks[failing[0]!]!.docsUrl).toBe(VAULT_POLICY_DOCS_URL);
    });
  }

  it("never throws: Vault down fails every check with KMS_UNAVAILABLE; a missing key fails the key checks with the command that creates it", async () => {
    const p = provider();
    const restore = await emulator.outage();
    const down = await p.validatePermissions(KEY);
    await restore();
    expect(down.map((c) => [c.ok, c.error?.code])).toEqual(Array(5).fill([false, "KMS_UNAVAILABLE"]));
    expect(down[0]!.remediation).toBe("Vault could not be asked (KMS_UNAVAILABLE): check the endpoint and that Vault is unsealed, then validate again");
    const missing = await p.validatePermissions("absent");
    expect(missing.map((c) => c.ok)).toEqual([true, true, true, true, false]);
    expect(missing[4]).toMatchObject({ remediation: "create the key: vault write -f transit/keys/absent derived=true", error: { code: "KMS_KEY_NOT_FOUND" } });
  });
});

describe("checkHealth", () => {
  it("is healthy when Vault is unsealed (active or standby) and every key is readable and derived", async () => {
    const p = provider();
    expect(await p.checkHealth([KEY])).toEqual({ healthy: true, insecure: false, detail: "Vault 1.15.0 (active), 1 key(s) readable" });
    emulator.setStandby(true);
    expect((await p.checkHealth([KEY])).detail).toBe("Vault 1.15.0 (standby), 1 key(s) readable");
    expect(emulator.counts()).toEqual({ "sys/health": 2, "keys.read": 2 });
  });

  it("is unhealthy, without throwing, when sealed, unreachable, or a key is missing, unreadable or invalid", async () => {
    const p = provider();
    emulator.seal();
    expect(await p.checkHealth([KEY])).toEqual({ healthy: false, insecure: false, detail: "Vault is sealed" });
    emulator.unseal();
    expect((await p.checkHealth(["absent"])).detail).toBe('key "absent": KMS_KEY_NOT_FOUND');
    emulator.setTokenPaths(TOKEN, []);
    expect((await p.checkHealth([KEY])).detail).toBe(`key "${KEY}": KMS_ACCESS_DENIED`);
    expect((await p.checkHealth(["bad/key"])).detail).toBe("invalid key id (INPUT_INVALID)");
    const restore = await emulator.outage();
    expect(await p.checkHealth([KEY])).toEqual({ healthy: false, insecure: false, detail: "Vault unreachable (KMS_UNAVAILABLE)" });
    await restore();
  });
});

describe("rotateKey and describeKey", () => {
  it("rotate reports the previous and new versions; describe reports versions and their times", async () => {
    const t0 = nowMs;
    const p = provider();
    nowMs += 3_600_000;
    expect(await p.rotateKey(KEY)).toEqual({ keyId: KEY, previousVersion: "1", currentVersion: "2" });
    expect(await p.describeKey(KEY)).toEqual({ keyId: KEY, enabled: true, currentVersion: "2", createdAt: new Date(t0), rotatedAt: new Date(t0 + 3_600_000) });
    expect(emulator.counts()).toEqual({ "keys.rotate": 1, "keys.read": 1 });
  });

  it("a key version below min_decryption_version (Vault's closest to disabled) is KMS_KEY_DISABLED", async () => {
    const p = provider();
    const dk = await p.generateDataKey({ keyId: KEY, context: CONTEXT });
    await p.rotateKey(KEY);
    // Through Vault's own API, as an operator would: versions below 2 may no longer decrypt.
    const response = await fetch(`${endpoint}/v1/transit/keys/${KEY}/config`, {
      method: "POST",
      headers: { "x-vault-token": TOKEN, "content-type": "application/json" },
      body: JSON.stringify({ min_decryption_version: 2 }),
    });
    expect(response.status).toBe(200);
    const error = await kmsError(() => p.unwrapDataKey({ keyId: KEY, ...dk, context: CONTEXT }));
    expect([error.code, error.retryable]).toEqual(["KMS_KEY_DISABLED", false]);
    expect(error.message).toContain(`transit key "${KEY}" refused the key version for unwrapDataKey`);
  });
});

describe("disableKey (crypto-shredding): schedule-destruction only, and it is immediate", () => {
  const docs = (code: string) => `(${code}; see ${TROUBLESHOOTING_URL}#${code.toLowerCase()})`;

  it("lists only schedule-destruction in capabilities.keyDisabling", () => {
    expect(provider().capabilities.keyDisabling).toEqual(["schedule-destruction"]);
  });

  it("sets deletion_allowed, then DELETEs the key: afterwards it neither wraps nor unwraps (KMS_KEY_NOT_FOUND); no request id (Vault answers 204)", async () => {
    const p = provider();
    const dk = await p.generateDataKey({ keyId: KEY, context: CONTEXT });
    await p.rotateKey(KEY);
    emulator.resetLog();
    expect(await p.disableKey(KEY, { mode: "schedule-destruction" })).toEqual({});
    expect(emulator.requests.map((r) => [r.operation, r.status, r.details?.path])).toEqual([
      ["keys.config", 200, `transit/keys/${KEY}/config`],
      ["keys.delete", 204, `transit/keys/${KEY}`],
    ]);
    emulator.resetLog();
    const failures = [
      await kmsError(() => p.unwrapDataKey({ keyId: KEY, ...dk, context: CONTEXT })),
      await kmsError(() => p.generateDataKey({ keyId: KEY, context: CONTEXT })),
      await kmsError(() => p.wrapDataKey({ keyId: KEY, plaintextKey: randomBytes(32), context: CONTEXT })),
      await kmsError(() => p.describeKey(KEY)),
    ];
    for (const error of failures) {
      expect([error.code, error.retryable]).toEqual(["KMS_KEY_NOT_FOUND", false]);
      expect(error.message).toContain(`transit key "${KEY}" was not found at mount "transit"`);
    }
    // The provider forgot the key was derived: each call read it again (and found nothing).
    expect(emulator.counts()).toEqual({ "keys.read": 4 });
    // A key created again under the name is a new key: checked again (here: not derived, refused),
    // and the shredded envelopes stay unreadable under it.
    emulator.createKey(KEY, { derived: false });
    expect((await kmsError(() => p.generateDataKey({ keyId: KEY, context: CONTEXT }))).code).toBe("KMS_CONFIG_INVALID");
    await start();
    const fresh = provider();
    expect((await kmsError(() => fresh.unwrapDataKey({ keyId: KEY, ...dk, context: CONTEXT }))).code).toBe("ENVELOPE_AUTH_FAILED");
    // Destroying a key that is not there destroys nothing, and says so.
    const missing = await kmsError(() => fresh.disableKey("never-existed", { mode: "schedule-destruction" }));
    expect({ code: missing.code, message: missing.message }).toEqual({
      code: "KMS_KEY_NOT_FOUND",
      message:
        `vault: transit key "never-existed" was not found at mount "transit" (disableKey): nothing was destroyed. ` +
        `Check the key name and the mount (it may have been deleted already) ${docs("KMS_KEY_NOT_FOUND")}`,
    });
  });

  it("disable (no such state in transit) and unknown modes are INPUT_INVALID, without a call", async () => {
    const p = provider();
    const disable = await kmsError(() => p.disableKey(KEY, { mode: "disable" }));
    expect(disable.code).toBe("INPUT_INVALID");
    expect(disable.message).toContain(`transit key "${KEY}" cannot be disabled: Vault transit keys have no disabled state`);
    for (const call of [() => p.disableKey(KEY, { mode: "shred" as never }), () => p.disableKey(KEY, undefined as never), () => p.disableKey("no/slash", { mode: "schedule-destruction" })]) {
      expect((await kmsError(call)).code).toBe("INPUT_INVALID");
    }
    expect(emulator.count()).toBe(0);
  });

  it("without update on keys/<key>/config or delete on keys/<key> (the application's policy): KMS_ACCESS_DENIED naming the capability and path; the key survives", async () => {
    const runtime = [`transit/datakey/plaintext/${KEY}`, `transit/encrypt/${KEY}`, `transit/decrypt/${KEY}`, { path: `transit/keys/${KEY}`, capabilities: ["read" as const] }];
    emulator.setTokenPaths(TOKEN, runtime);
    const p = provider();
    const config = await kmsError(() => p.disableKey(KEY, { mode: "schedule-destruction" }));
    expect({ code: config.code, retryable: config.retryable }).toEqual({ code: "KMS_ACCESS_DENIED", retryable: false });
    expect(config.message).toBe(
      `vault: permission denied: disableKey for key "${KEY}" needs "update" on "transit/keys/${KEY}/config". ` +
        `Add to the key-administration token's Vault policy (never the application's): path "transit/keys/${KEY}/config" { capabilities = ["update"] } ` +
        `(if the policy already has it, the token has expired or been revoked) ${docs("KMS_ACCESS_DENIED")}`,
    );
    expect(emulator.counts()).toEqual({ "keys.config": 1 });
    // Allowed to configure but not to delete: the DELETE is refused, the key stays (deletable).
    emulator.setTokenPaths(TOKEN, [...runtime, { path: `transit/keys/${KEY}/config`, capabilities: ["update"] }]);
    emulator.resetLog();
    const remove = await kmsError(() => p.disableKey(KEY, { mode: "schedule-destruction" }));
    expect(remove.code).toBe("KMS_ACCESS_DENIED");
    expect(remove.message).toContain(`needs "delete" on "transit/keys/${KEY}". Add to the key-administration token's Vault policy (never the application's): path "transit/keys/${KEY}" { capabilities = ["delete"] }`);
    expectNoSecrets(remove);
    expect(emulator.requests.map((r) => [r.operation, r.status])).toEqual([
      ["keys.config", 200],
      ["keys.delete", 403],
    ]);
    expect((await p.generateDataKey({ keyId: KEY, context: CONTEXT })).plaintextKey).toHaveLength(32);
  });

  it("every request has the provider's deadline (requestTimeoutMs: KMS_TIMEOUT); a caller's abort ends it earlier", async () => {
    const p = provider({ requestTimeoutMs: 500 });
    emulator.inject("keys.delete", { kind: "latency", ms: 5_000 }, { times: 1 });
    const error = await kmsError(() => p.disableKey(KEY, { mode: "schedule-destruction" }));
    expect([error.code, error.retryable]).toEqual(["KMS_TIMEOUT", true]);
    expect(error.message).toContain(`no answer from Vault at ${endpoint} within 500 ms (disableKey for key "${KEY}")`);
    emulator.inject("keys.config", { kind: "latency", ms: 60_000 }, { times: 1 });
    const controller = new AbortController();
    const pending = p.disableKey(KEY, { mode: "schedule-destruction", signal: controller.signal });
    await waitFor(() => emulator.pending >= 1 && emulator.count("keys.config") === 1);
    const reason = new KmsError("KMS_TIMEOUT", "the caller gave up");
    controller.abort(reason);
    expect(await kmsError(() => pending)).toBe(reason);
    expect(emulator.count("keys.delete")).toBe(0); // the DELETE was never sent
  });
});

describe("close()", () => {
  it("is idempotent; every later call fails with KMS_CLOSED and reaches no Vault", async () => {
    const p = provider();
    await p.describeKey(KEY);
    await p.close();
    await p.close();
    emulator.resetLog();
    const calls: (() => Promise<unknown>)[] = [
      () => p.generateDataKey({ keyId: KEY, context: CONTEXT }),
      () => p.wrapDataKey({ keyId: KEY, plaintextKey: randomBytes(32), context: CONTEXT }),
      () => p.unwrapDataKey({ keyId: KEY, keyVersion: "1", wrappedKey: Buffer.from("vault:v1:AAAA"), context: CONTEXT }),
      () => p.describeKey(KEY),
      () => p.rotateKey(KEY),
      () => p.checkHealth([KEY]),
      () => p.validatePermissions(KEY),
    ];
    for (const call of calls) expect((await kmsError(call)).code).toBe("KMS_CLOSED");
    expect(emulator.count()).toBe(0);
  });
});

describe("credentials named by an environment variable (tokenFromEnv, secretIdFromEnv)", () => {
  const TOKEN_VAR = "KMS_TEST_VAULT_TOKEN";
  const SECRET_VAR = "KMS_TEST_VAULT_SECRET_ID";
  const ROLE_ID = "role-id-value";
  const SECRET_ID = "secret-id-from-env-value";
  afterEach(() => {
    delete process.env[TOKEN_VAR];
    delete process.env[SECRET_VAR];
  });

  it("reads the variable once, when the settings are parsed: the parsed settings hold the value inline", () => {
    process.env[TOKEN_VAR] = TOKEN;
    const parsed = vaultKms.parseSettings({ endpoint: "http://127.0.0.1:8200", auth: { tokenFromEnv: TOKEN_VAR } });
    process.env[TOKEN_VAR] = "changed-later";
    expect(parsed).toEqual({ ok: true, settings: { endpoint: "http://127.0.0.1:8200", mountPath: "transit", auth: { token: TOKEN }, requestTimeoutMs: 10_000 } });
    process.env[SECRET_VAR] = SECRET_ID;
    expect(vaultKms.parseSettings({ endpoint: "http://127.0.0.1:8200", auth: { appRole: { roleId: ROLE_ID, secretIdFromEnv: SECRET_VAR } } })).toEqual({
      ok: true,
      settings: { endpoint: "http://127.0.0.1:8200", mountPath: "transit", auth: { appRole: { roleId: ROLE_ID, secretId: SECRET_ID, mountPath: "approle" } }, requestTimeoutMs: 10_000 },
    });
  });

  it("an unset, empty or invalid variable, a bad name, or both forms at once: one issue each, naming the variable, never a value", () => {
    const parse = (auth: unknown) => vaultKms.parseSettings({ endpoint: "http://127.0.0.1:8200", auth });
    expect(parse({ tokenFromEnv: TOKEN_VAR })).toEqual({ ok: false, issues: [{ path: "auth.tokenFromEnv", message: `the environment variable ${TOKEN_VAR} is not set, or is empty` }] });
    process.env[TOKEN_VAR] = "";
    expect(parse({ tokenFromEnv: TOKEN_VAR })).toEqual({ ok: false, issues: [{ path: "auth.tokenFromEnv", message: `the environment variable ${TOKEN_VAR} is not set, or is empty` }] });
    process.env[TOKEN_VAR] = "token with spaces-secret";
    const invalid = parse({ tokenFromEnv: TOKEN_VAR });
    expect(invalid).toEqual({
      ok: false,
      issues: [{ path: "auth.tokenFromEnv", message: `the environment variable ${TOKEN_VAR} must hold a Vault token (printable ASCII, no spaces)` }],
    });
    expect(JSON.stringify(invalid).includes("secret")).toBe(false);
    expect(parse({ token: TOKEN, tokenFromEnv: TOKEN_VAR })).toEqual({ ok: false, issues: [{ path: "auth", message: "must set exactly one of token or tokenFromEnv" }] });
    expect(parse({ tokenFromEnv: "VAULT TOKEN" })).toEqual({
      ok: false,
      issues: [{ path: "auth.tokenFromEnv", message: "must be the name of an environment variable: letters, digits and _, not starting with a digit" }],
    });
    expect(parse({ tokenFromEnv: TOKEN_VAR, appRole: { roleId: ROLE_ID, secretIdFromEnv: SECRET_VAR } })).toEqual({
      ok: false,
      issues: [{ path: "auth", message: "must set exactly one of token, tokenFromEnv or appRole" }],
    });
    expect(parse({ appRole: { roleId: ROLE_ID, secretIdFromEnv: SECRET_VAR } })).toEqual({
      ok: false,
      issues: [{ path: "auth.appRole.secretIdFromEnv", message: `the environment variable ${SECRET_VAR} is not set, or is empty` }],
    });
    process.env[SECRET_VAR] = "line\nbreak-secret";
    expect(parse({ appRole: { roleId: ROLE_ID, secretIdFromEnv: SECRET_VAR } })).toEqual({
      ok: false,
      issues: [{ path: "auth.appRole.secretIdFromEnv", message: `the environment variable ${SECRET_VAR} must hold a string without control characters` }],
    });
    expect(parse({ appRole: { roleId: ROLE_ID, secretId: SECRET_ID, secretIdFromEnv: SECRET_VAR } })).toEqual({
      ok: false,
      issues: [{ path: "auth.appRole", message: "must set exactly one of secretId or secretIdFromEnv" }],
    });
    expect(parse({ appRole: { roleId: ROLE_ID, secretIdFromEnv: 7 } })).toEqual({
      ok: false,
      issues: [{ path: "auth.appRole.secretIdFromEnv", message: "must be the name of an environment variable: letters, digits and _, not starting with a digit" }],
    });
  });

  it("createKms from a configuration without a secret: the token, or the AppRole secret ID, comes from the named variable", async () => {
    await start({ appRoles: { kms: { roleId: ROLE_ID, secretId: SECRET_ID, paths: ["transit/*"] } } });
    process.env[TOKEN_VAR] = TOKEN;
    process.env[SECRET_VAR] = SECRET_ID;
    for (const auth of [{ tokenFromEnv: TOKEN_VAR }, { appRole: { roleId: ROLE_ID, secretIdFromEnv: SECRET_VAR } }]) {
      const kms = createKms({ registry: [vaultKms], config: { providers: { vault: { endpoint, auth } }, tenants: { defaultKey: { provider: "vault", keyId: KEY } } }, env: {} });
      try {
        await kms.encrypt("tenant-1", "hello");
      } finally {
        await kms.close();
      }
    }
    expect(emulator.requests.map((r) => [r.operation, r.identity])).toEqual([
      ["keys.read", "app"],
      ["datakey", "app"],
      ["approle.login", undefined],
      ["keys.read", "approle:kms"],
      ["datakey", "approle:kms"],
    ]);
  });
});

describe("settings", () => {
  it("parseSettings fills in the defaults", () => {
    expect(vaultKms.parseSettings({ endpoint: "https://vault.example.com:8200/", auth: { token: "t" } })).toEqual({
      ok: true,
      settings: { endpoint: "https://vault.example.com:8200", mountPath: "transit", auth: { token: "t" }, requestTimeoutMs: 10_000 },
    });
    expect(
      vaultKms.parseSettings({
        endpoint: "http://127.0.0.1:8200/vault",
        mountPath: "/kms/transit/",
        namespace: "admin/team-a",
        auth: { appRole: { roleId: "r", secretId: "s" } },
        requestTimeoutMs: 500,
      }),
    ).toEqual({
      ok: true,
      settings: {
        endpoint: "http://127.0.0.1:8200/vault",
        mountPath: "kms/transit",
        namespace: "admin/team-a",
        auth: { appRole: { roleId: "r", secretId: "s", mountPath: "approle" } },
        requestTimeoutMs: 500,
      },
    });
  });

  it("reports every issue at once, by path, without repeating a value", () => {
    const result = vaultKms.parseSettings({
      endpoint: "https://user:pass-secret@vault.example.com",
      mountPath: "a/../b",
      namespace: "",
      auth: { token: "token with spaces-secret", appRole: { roleId: "r" }, extra: true },
      requestTimeoutMs: 0,
      caCert: "not pem",
      unknown: 1,
    });
    expect(result).toEqual({
      ok: false,
      issues: [
        { path: "unknown", message: "unknown setting (known: endpoint, mountPath, namespace, auth, requestTimeoutMs, caCert)" },
        { path: "endpoint", message: expect.stringContaining("must be Vault's address, an http:// or https:// URL without credentials") },
        { path: "mountPath", message: "must be a mount path such as transit or kms/transit" },
        { path: "namespace", message: "must be a namespace path such as admin or admin/team-a" },
        { path: "auth.extra", message: "unknown setting (known: token, tokenFromEnv, appRole)" },
        { path: "auth", message: "must set exactly one of token, tokenFromEnv or appRole" },
        { path: "requestTimeoutMs", message: "must be an integer number of milliseconds from 1 to 600000" },
        { path: "caCert", message: "must be PEM text (-----BEGIN CERTIFICATE----- …)" },
      ],
    });
    expect(JSON.stringify(result).includes("secret")).toBe(false);
    expect(vaultKms.parseSettings({ endpoint: "ftp://x", auth: { appRole: { roleId: "", secretId: 1, mountPath: "a b" } } })).toEqual({
      ok: false,
      issues: [
        { path: "endpoint", message: expect.any(String) },
        { path: "auth.appRole.roleId", message: "must be a non-empty string" },
        { path: "auth.appRole.secretId", message: "must be a non-empty string without control characters" },
        { path: "auth.appRole.mountPath", message: "must be a mount path such as approle" },
      ],
    });
    expect(vaultKms.parseSettings(undefined)).toEqual({ ok: false, issues: [{ path: "", message: "must be an object with endpoint and auth" }] });
    expect(vaultKms.parseSettings({ endpoint: "http://v:8200", auth: {} })).toEqual({ ok: false, issues: [{ path: "auth", message: "must set exactly one of token, tokenFromEnv or appRole" }] });
  });

  it("vaultKmsProvider throws one KmsConfigError listing every issue, without the token", () => {
    let error: unknown;
    try {
      vaultKmsProvider({ endpoint: "nope", auth: { token: "bad token-secret" } });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(KmsConfigError);
    expect((error as KmsConfigError).issues.map((i) => [i.path, i.code])).toEqual([
      ["endpoint", "KMS_CONFIG_INVALID"],
      ["auth.token", "KMS_CONFIG_INVALID"],
    ]);
    expect(everything(error).includes("token-secret")).toBe(false);
  });

  it("keyIdProblem accepts Vault transit key names only, and createKms checks every configured key with it", () => {
    for (const ok of ["tenant-a", "a", "_x", "a.b_c-1", "A".repeat(128)]) expect({ ok, problem: vaultKms.keyIdProblem!(ok) }).toEqual({ ok, problem: undefined });
    for (const bad of ["", "a/b", "-a", "a-", ".a", "é", "a b", "A".repeat(129)]) expect(vaultKms.keyIdProblem!(bad)).toContain("Vault transit key names are 1 to 128 characters");
    let error: unknown;
    try {
      createKms({
        registry: [vaultKms],
        config: { providers: { vault: { endpoint: "http://127.0.0.1:8200", auth: { token: "t" } } }, tenants: { defaultKey: { provider: "vault", keyId: "transit/keys/a" } } },
        env: {},
      });
    } catch (e) {
      error = e;
    }
    expect((error as KmsConfigError).issues.map((i) => [i.path, i.code])).toEqual([["tenants.defaultKey.keyId", "KMS_CONFIG_INVALID"]]);
  });
});
