import { randomBytes, randomUUID } from "node:crypto";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "@jest/globals";
import { type KmsConfigError, KmsError, type KmsErrorCode, type KmsProvider, TROUBLESHOOTING_URL, createKms } from "@kms/core";
import { AZURE_EMULATOR_IDENTITY, AzureKeyVaultEmulator, type Fault } from "@kms/testkit/emulators";
import { kmsErrorOf } from "@kms/testkit";
import { AZURE_KEY_ID_RULE, AZURE_PERMISSIONS_DOCS_URL, AZURE_RUNTIME_DATA_ACTIONS, AZURE_RUNTIME_KEY_PERMISSIONS, AZURE_SHREDDING_DATA_ACTIONS, type AzureKeyVaultProviderOptions, type ThrottledError, azureKeyVault, azureKeyVaultProvider } from "../src";
import { mapAzureError } from "../src/errors";

/** A latency that holds a request past any deadline here; the emulator's stop() releases it (after every test, so it is never logged mid-file). */
const HELD_MS = 600_000;

/** A context with a value that must never reach a message. */
const CONTEXT = { "kms:tenant": "tenant-a", ssn: "078-05-1120" };
const LIMITED = "limited-app";

/** The emulator, recording the `x-ms-request-id` of each response it sends, in order. */
class RecordingEmulator extends AzureKeyVaultEmulator {
  readonly requestIds: string[] = [];
  protected override responseHeaders(): Record<string, string> {
    const headers = super.responseHeaders();
    this.requestIds.push(headers["x-ms-request-id"]!);
    return headers;
  }
}

const emulator = new RecordingEmulator();
const providers: KmsProvider[] = [];
let name: string;

/** A provider through the real SDK, over HTTPS trusting the emulator for this provider only; closed after each test. */
function provider(extra: Partial<AzureKeyVaultProviderOptions> = {}): KmsProvider {
  const p = azureKeyVaultProvider({ vaultUrl: emulator.url, credential: emulator.credential(), ca: emulator.ca, disableChallengeResourceVerification: true, ...extra });
  providers.push(p);
  return p;
}

beforeAll(async () => {
  await emulator.start();
  name = "provider-test";
  await emulator.createKey(name);
});

afterAll(async () => {
  await emulator.stop();
});

beforeEach(() => {
  emulator.resetLog();
});

afterEach(async () => {
  emulator.clearFaults();
  emulator.setPermissions(AZURE_EMULATOR_IDENTITY, "*");
  await Promise.all(providers.splice(0).map((p) => p.close()));
});

/** Message, stack, JSON form and the whole cause chain (as JSON too), as one string. */
function everythingIn(error: unknown): string {
  const parts: string[] = [];
  let current: unknown = error;
  for (let depth = 0; current !== undefined && current !== null && depth < 10; depth++) {
    if (current instanceof Error) parts.push(current.message, current.stack ?? "");
    try {
      parts.push(JSON.stringify(current));
    } catch {
      // circular: the message and stack are enough
    }
    current = (current as { cause?: unknown }).cause;
  }
  return parts.join("\n");
}

function encodings(bytes: Uint8Array): string[] {
  const b = Buffer.from(bytes);
  return [b.toString("hex"), b.toString("hex").toUpperCase(), b.toString("base64"), b.toString("base64url")];
}

const docs = (code: KmsErrorCode) => `(${code}; see ${TROUBLESHOOTING_URL}#${code.toLowerCase()})`;
const ROLE_FIX = (permission: string) =>
  `assign the role "Key Vault Crypto Service Encryption User" (Managed HSM: "Managed HSM Crypto Service Encryption User") to the identity on the key or vault, or, with access policies, grant the key permission "${permission}"`;

describe("call counts", () => {
  it("a new client costs one 401 challenge, then one request per operation; no GetKey before crypto calls", async () => {
    const p = provider();
    const key = randomBytes(32);
    const wrapped = await p.wrapDataKey({ keyId: name, plaintextKey: key, context: CONTEXT });
    expect(emulator.requests.map((r) => `${r.operation} ${r.status}`)).toEqual(["Challenge 401", "WrapKey 200"]);
    await p.wrapDataKey({ keyId: name, plaintextKey: key, context: CONTEXT });
    expect(emulator.counts()).toEqual({ Challenge: 1, WrapKey: 2 });
    // Unwrap goes to the exact version, through that version's own client: one challenge, once.
    for (let i = 0; i < 2; i++) expect(Buffer.from(await p.unwrapDataKey({ keyId: name, ...wrapped, context: CONTEXT })).equals(key)).toBe(true);
    expect(emulator.counts()).toEqual({ Challenge: 2, WrapKey: 2, UnwrapKey: 2 });
    expect(emulator.requests.filter((r) => r.operation === "UnwrapKey").map((r) => r.details?.version)).toEqual([wrapped.keyVersion, wrapped.keyVersion]);
    // Key management goes through the one KeyClient.
    await p.describeKey(name);
    await p.describeKey(name);
    expect(emulator.counts()).toEqual({ Challenge: 3, WrapKey: 2, UnwrapKey: 2, GetKey: 2 });
  });
});

describe("error mapping", () => {
  const injected: [string, Fault, KmsErrorCode, boolean, string][] = [
    ["throttle", { kind: "throttle" }, "KMS_THROTTLED", true, "WrapKey on key provider-test was throttled (HTTP 429 Throttled)"],
    ["serverError 500", { kind: "serverError" }, "KMS_UNAVAILABLE", true, "WrapKey on key provider-test failed: Key Vault is unavailable (HTTP 500 InternalServerError)"],
    ["serverError 503", { kind: "serverError", status: 503 }, "KMS_UNAVAILABLE", true, "WrapKey on key provider-test failed: Key Vault is unavailable (HTTP 503 ServiceUnavailable)"],
    ["connectionReset", { kind: "connectionReset" }, "KMS_UNAVAILABLE", true, "WrapKey on key provider-test failed: Key Vault is unavailable (ECONNRESET)"],
    [
      "accessDenied",
      { kind: "accessDenied" },
      "KMS_ACCESS_DENIED",
      false,
      `access denied: the identity with object id ${emulator.objectId(AZURE_EMULATOR_IDENTITY)} may not perform Microsoft.KeyVault/vaults/keys/wrap/action on key provider-test (HTTP 403 Forbidden/ForbiddenByRbac)`,
    ],
    ["keyDisabled", { kind: "keyDisabled" }, "KMS_KEY_DISABLED", false, "key provider-test (this version) is disabled (HTTP 403 Forbidden/KeyDisabled)"],
    ["keyNotFound", { kind: "keyNotFound" }, "KMS_KEY_NOT_FOUND", false, "key provider-test (or the version asked for) does not exist in this vault (HTTP 404 KeyNotFound)"],
  ];

  it.each(injected)("%s → the right code and retryability; the message names the key, carries the docs link and no secret", async (_, fault, code, retryable, start) => {
    const p = provider();
    const key = randomBytes(32);
    await p.wrapDataKey({ keyId: name, plaintextKey: key, context: CONTEXT });
    emulator.inject("WrapKey", fault, { times: 1 });
    const error = await kmsErrorOf(p.wrapDataKey({ keyId: name, plaintextKey: key, context: CONTEXT }));
    expect({ code: error.code, retryable: error.retryable, provider: error.provider }).toEqual({ code, retryable, provider: "azure-key-vault" });
    expect(error.message.startsWith(`azure-key-vault: ${start}: `)).toBe(true);
    expect(error.message.endsWith(docs(code))).toBe(true);
    // An HTTP answer has Key Vault's x-ms-request-id; a dropped connection has none.
    expect(typeof error.requestId).toBe(fault.kind === "connectionReset" ? "undefined" : "string");
    expect(error.cause).toBeInstanceOf(Error);
    expect((error as ThrottledError).retryAfterMs).toBe(fault.kind === "throttle" ? 1000 : undefined);
    const text = everythingIn(error);
    for (const leak of [...encodings(key), "kv-emulator.", CONTEXT.ssn]) expect(text.includes(leak)).toBe(false);
    expect(emulator.count("WrapKey")).toBe(2);
  });

  it("the access-denied message says which role or access-policy permission fixes it, per operation", async () => {
    emulator.setPermissions(AZURE_EMULATOR_IDENTITY, ["get"]);
    const p = provider();
    const wrap = await kmsErrorOf(p.wrapDataKey({ keyId: name, plaintextKey: randomBytes(32), context: CONTEXT }));
    expect(wrap.message).toBe(
      `azure-key-vault: access denied: the identity with object id ${emulator.objectId(AZURE_EMULATOR_IDENTITY)} may not perform ` +
        `Microsoft.KeyVault/vaults/keys/wrap/action on key ${name} (HTTP 403 Forbidden/ForbiddenByRbac): ${ROLE_FIX("wrapKey")} ${docs("KMS_ACCESS_DENIED")}`,
    );
    const rotate = await kmsErrorOf(p.rotateKey(name));
    expect(rotate.message).toContain('Microsoft.KeyVault/vaults/keys/rotate/action on key provider-test (HTTP 403 Forbidden/ForbiddenByRbac): assign the role "Key Vault Crypto Officer"');
  });

  it("a token Key Vault rejects, or a credential that cannot get one, is KMS_ACCESS_DENIED without the token", async () => {
    const bogus = { getToken: async () => ({ token: "bogus-token-value", expiresOnTimestamp: Date.now() + 60_000 }) };
    const rejected = await kmsErrorOf(provider({ credential: bogus }).describeKey(name));
    expect(rejected.code).toBe("KMS_ACCESS_DENIED");
    expect(rejected.message.startsWith(`azure-key-vault: Key Vault rejected the credential's token (HTTP 401 Unauthorized) calling GetKey on key ${name}: check the provider's credential`)).toBe(true);
    expect(everythingIn(rejected).includes("bogus-token-value")).toBe(false);

    const unavailable = Object.assign(new Error("no managed identity endpoint"), { name: "CredentialUnavailableError" });
    const failing = { getToken: async () => Promise.reject(unavailable) };
    const noToken = await kmsErrorOf(provider({ credential: failing }).describeKey(name));
    expect(noToken.code).toBe("KMS_ACCESS_DENIED");
    expect(noToken.message.startsWith(`azure-key-vault: the credential could not get a token (CredentialUnavailableError) calling GetKey on key ${name}`)).toBe(true);
  });

  it("an untrusted certificate is a non-retryable KMS_CONFIG_INVALID naming the ca option; verification is never switched off", async () => {
    expect(process.env.NODE_TLS_REJECT_UNAUTHORIZED).toBeUndefined();
    const untrusting = azureKeyVaultProvider({ vaultUrl: emulator.url, credential: emulator.credential(), disableChallengeResourceVerification: true });
    providers.push(untrusting);
    const error = await kmsErrorOf(untrusting.describeKey(name));
    expect({ code: error.code, retryable: error.retryable }).toEqual({ code: "KMS_CONFIG_INVALID", retryable: false });
    expect(error.message).toBe(
      `azure-key-vault: the vault's TLS certificate was not trusted (DEPTH_ZERO_SELF_SIGNED_CERT) calling GetKey on key ${name}: ` +
        `if the vault is reached through a private CA (or is an emulator), give its certificate as the provider's \`ca\` setting; otherwise check for a proxy intercepting TLS ${docs("KMS_CONFIG_INVALID")}`,
    );
    expect(emulator.count()).toBe(0); // refused in the handshake: no request reached the vault
    expect(process.env.NODE_TLS_REJECT_UNAUTHORIZED).toBeUndefined();
  });

  it("a tampered, truncated or foreign wrapped key is ENVELOPE_AUTH_FAILED after one UnwrapKey; an impossible one makes no call", async () => {
    const p = provider();
    const wrapped = await p.wrapDataKey({ keyId: name, plaintextKey: randomBytes(32), context: CONTEXT });
    const other = `other-${randomUUID()}`;
    await emulator.createKey(other);
    const foreign = await p.wrapDataKey({ keyId: other, plaintextKey: randomBytes(32), context: CONTEXT });
    emulator.resetLog();
    const flipped = Buffer.from(wrapped.wrappedKey);
    flipped[10] = flipped[10]! ^ 1;
    for (const wrappedKey of [flipped, wrapped.wrappedKey.subarray(1), foreign.wrappedKey]) {
      const error = await kmsErrorOf(p.unwrapDataKey({ keyId: name, keyVersion: wrapped.keyVersion, wrappedKey, context: CONTEXT }));
      expect(error.message).toBe(`azure-key-vault: the data key could not be unwrapped with this key: decrypt with the key and tenant the data was encrypted under ${docs("ENVELOPE_AUTH_FAILED")}`);
    }
    expect(emulator.requests.filter((r) => r.operation === "UnwrapKey").map((r) => r.status)).toEqual([400, 400, 400]);
    emulator.resetLog();
    for (const [keyVersion, wrappedKey] of [["", wrapped.wrappedKey], ["not/a/version", wrapped.wrappedKey], [wrapped.keyVersion, new Uint8Array(0)], [wrapped.keyVersion, randomBytes(1025)]] as const) {
      expect((await kmsErrorOf(p.unwrapDataKey({ keyId: name, keyVersion, wrappedKey, context: CONTEXT }))).code).toBe("ENVELOPE_AUTH_FAILED");
    }
    expect(emulator.count()).toBe(0);
  });

  it("the provider's own deadline (timeoutMs) is a retryable KMS_TIMEOUT; core's abort wins with its own reason", async () => {
    emulator.inject("WrapKey", { kind: "latency", ms: HELD_MS }, { times: 1 });
    const error = await kmsErrorOf(provider({ timeoutMs: 1000 }).wrapDataKey({ keyId: name, plaintextKey: randomBytes(32), context: CONTEXT }));
    expect({ code: error.code, retryable: error.retryable }).toEqual({ code: "KMS_TIMEOUT", retryable: true });
    expect(error.message.startsWith(`azure-key-vault: WrapKey on key ${name} got no answer in time (deadline passed): `)).toBe(true);

    const p = provider();
    emulator.inject("GetKey", { kind: "latency", ms: HELD_MS }, { times: 1 });
    const controller = new AbortController();
    const pending = kmsErrorOf(p.describeKey(name, { signal: controller.signal }));
    while (emulator.pending === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    const reason = new KmsError("KMS_TIMEOUT", "azure-key-vault describeKey timed out after 10 ms");
    controller.abort(reason);
    expect(await pending).toBe(reason);
    emulator.resetLog();
    const plain = new AbortController();
    plain.abort();
    expect((await kmsErrorOf(p.describeKey(name, { signal: plain.signal }))).code).toBe("KMS_TIMEOUT");
    expect(emulator.count()).toBe(0);
  });

  it("maps what the emulator cannot produce by status, code and header, copying no service text", () => {
    const call = { operation: "UnwrapKey", key: "k" } as const;
    const restError = (statusCode: number | undefined, code: string | undefined, headers: Record<string, string> = {}, message = "secret text 078-05-1120") =>
      Object.assign(new Error(message), {
        name: "RestError",
        statusCode,
        code,
        details: { error: { code, message } },
        response: { headers: { get: (h: string) => headers[h] } },
      });
    const cases: [unknown, KmsErrorCode][] = [
      [restError(409, "Conflict"), "KMS_PROVIDER_ERROR"],
      [restError(400, "BadParameter"), "ENVELOPE_AUTH_FAILED"],
      [restError(502, undefined), "KMS_UNAVAILABLE"],
      [restError(undefined, "CERT_HAS_EXPIRED"), "KMS_CONFIG_INVALID"],
      [restError(undefined, "REQUEST_SEND_ERROR", {}, "connect ECONNREFUSED 127.0.0.1:1"), "KMS_UNAVAILABLE"],
      [restError(undefined, "REQUEST_SEND_ERROR", {}, "read ETIMEDOUT"), "KMS_TIMEOUT"],
      ["not even an error", "KMS_PROVIDER_ERROR"],
    ];
    const mapped = cases.map(([raw]) => mapAzureError(raw, call));
    expect(mapped.map((error) => error.code)).toEqual(cases.map(([, code]) => code));
    for (const error of mapped) expect(error.message.includes("078-05-1120")).toBe(false);
    const firewall = mapAzureError(Object.assign(restError(403, "Forbidden"), { details: { error: { code: "Forbidden", innerError: { code: "ForbiddenByFirewall" } } } }), call);
    expect(firewall.message).toBe(
      "azure-key-vault: Key Vault's firewall refused this client's network calling UnwrapKey on key k (HTTP 403 Forbidden/ForbiddenByFirewall): " +
        `allow this network (or a private endpoint) in the vault's networking settings ${docs("KMS_ACCESS_DENIED")}`,
    );
    const wrapBad = mapAzureError(restError(400, "BadParameter"), { operation: "WrapKey", key: "k" });
    expect(wrapBad.code).toBe("KMS_CONFIG_INVALID");
    const date = new Date(Date.now() + 30_000).toUTCString();
    const throttled = mapAzureError(restError(429, "Throttled", { "retry-after": date }), call) as ThrottledError;
    expect(throttled.retryAfterMs).toBeGreaterThan(25_000);
    expect(throttled.retryAfterMs).toBeLessThanOrEqual(30_000);
    expect((mapAzureError(restError(429, "Throttled", { "retry-after": "soon" }), call) as ThrottledError).retryAfterMs).toBeUndefined();
    expect((mapAzureError(restError(429, "Throttled", { "retry-after": "99999" }), call) as ThrottledError).retryAfterMs).toBe(600_000);
  });
});

describe("validatePermissions", () => {
  it("is all ok with every permission, checking get, wrapKey and unwrapKey with one call each", async () => {
    const checks = await provider().validatePermissions(name);
    expect(checks).toEqual(["get", "wrapKey", "unwrapKey"].map((permission) => ({ permission, ok: true, docsUrl: AZURE_PERMISSIONS_DOCS_URL })));
    expect(emulator.counts()).toEqual({ Challenge: 3, GetKey: 1, WrapKey: 1, UnwrapKey: 1 });
  });

  it("checks exactly AZURE_RUNTIME_KEY_PERMISSIONS, whose data actions are the custom role of deploy/terraform/azure", async () => {
    emulator.setPermissions(LIMITED, [...AZURE_RUNTIME_KEY_PERMISSIONS] as Parameters<typeof emulator.setPermissions>[1]);
    const checks = await provider({ credential: emulator.credential(LIMITED) }).validatePermissions(name);
    expect(checks.map((c) => [c.permission, c.ok])).toEqual(AZURE_RUNTIME_KEY_PERMISSIONS.map((p) => [p, true]));
    expect(AZURE_RUNTIME_DATA_ACTIONS).toEqual(["Microsoft.KeyVault/vaults/keys/read", "Microsoft.KeyVault/vaults/keys/wrap/action", "Microsoft.KeyVault/vaults/keys/unwrap/action"]);
    // keys/read is both the runtime's get and the administrator's list; update and delete are the administrator's only.
    expect(AZURE_SHREDDING_DATA_ACTIONS.filter((a) => AZURE_RUNTIME_DATA_ACTIONS.includes(a))).toEqual(["Microsoft.KeyVault/vaults/keys/read"]);
  });

  it("names the exact fix for each missing permission; unwrapKey is 'not checked', never ok, when wrapKey fails", async () => {
    emulator.setPermissions(LIMITED, ["get", "wrapKey"]);
    const limited = await provider({ credential: emulator.credential(LIMITED) }).validatePermissions(name);
    expect(limited.map((c) => [c.permission, c.ok, c.remediation, c.error?.code])).toEqual([
      ["get", true, undefined, undefined],
      ["wrapKey", true, undefined, undefined],
      ["unwrapKey", false, `unwrapKey on key ${name}: ${ROLE_FIX("unwrapKey")}`, "KMS_ACCESS_DENIED"],
    ]);
    expect(limited[2]!.docsUrl).toBe(AZURE_PERMISSIONS_DOCS_URL);

    emulator.setPermissions(LIMITED, []);
    const none = await provider({ credential: emulator.credential(LIMITED) }).validatePermissions(name);
    expect(none.map((c) => [c.permission, c.ok, c.remediation])).toEqual([
      ["get", false, `get on key ${name}: ${ROLE_FIX("get")}`],
      ["wrapKey", false, `wrapKey on key ${name}: ${ROLE_FIX("wrapKey")}`],
      ["unwrapKey", false, `unwrapKey on key ${name}: grant wrapKey too, then validate again to check unwrapKey`],
    ]);
  });
});

describe("key management", () => {
  it("describeKey: enabled, the current version, when that version was created", async () => {
    const versions = emulator.versions(name);
    const description = await provider().describeKey(name);
    expect(description).toEqual({ keyId: name, enabled: true, currentVersion: versions[versions.length - 1]!.version, rotatedAt: expect.any(Date) });
  });

  it("rotateKey: Key Vault's RotateKey, the new version current at once; a pinned key id cannot be rotated", async () => {
    const key = `rotate-${randomUUID()}`;
    await emulator.createKey(key);
    const p = provider();
    const [v1] = emulator.versions(key).map((v) => v.version);
    emulator.resetLog();
    const rotation = await p.rotateKey(key);
    const [, v2] = emulator.versions(key).map((v) => v.version);
    expect(rotation).toEqual({ keyId: key, previousVersion: v1, currentVersion: v2 });
    expect(emulator.counts()).toEqual({ Challenge: 1, GetKey: 1, RotateKey: 1 });
    expect((await kmsErrorOf(p.rotateKey(`${key}/${v1}`))).code).toBe("INPUT_INVALID");
  });

  it("a key id pinned to a version wraps under that version even after rotation", async () => {
    const key = `pinned-${randomUUID()}`;
    await emulator.createKey(key);
    const [v1] = emulator.versions(key).map((v) => v.version);
    await emulator.rotateKey(key);
    const p = provider();
    const wrapped = await p.wrapDataKey({ keyId: `${key}/${v1}`, plaintextKey: randomBytes(32), context: CONTEXT });
    expect(wrapped.keyVersion).toBe(v1);
    expect((await p.describeKey(`${key}/${v1}`)).currentVersion).toBe(v1);
  });

  it("checkHealth: healthy only when every key's current version is enabled; never throws for Key Vault errors", async () => {
    const disabled = `disabled-${randomUUID()}`;
    await emulator.createKey(disabled);
    emulator.disableKey(disabled);
    const p = provider();
    expect(await p.checkHealth([name, name])).toEqual({ healthy: true, insecure: false, detail: "1 key(s) enabled" });
    expect(await p.checkHealth([name, disabled])).toEqual({ healthy: false, insecure: false, detail: `key ${disabled} is disabled (KMS_KEY_DISABLED)` });
    expect(await p.checkHealth(["missing-key"])).toEqual({ healthy: false, insecure: false, detail: "key missing-key: KMS_KEY_NOT_FOUND" });
    expect(await p.checkHealth(["not a key"])).toEqual({ healthy: false, insecure: false, detail: "invalid key id (INPUT_INVALID)" });
  });
});

describe("disableKey (crypto-shredding)", () => {
  const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
  let shredded: string;
  const shredder = () => provider() as KmsProvider & Required<Pick<KmsProvider, "disableKey">>;

  beforeEach(async () => {
    shredded = `shred-${randomUUID()}`;
    await emulator.createKey(shredded);
    emulator.resetLog();
  });

  it("advertises both modes", () => {
    expect(provider().capabilities.keyDisabling).toEqual(["disable", "schedule-destruction"]);
  });

  it("disable: one listing, then enabled: false on every enabled version (attributes are per version); afterwards neither wrap nor unwrap", async () => {
    const p = shredder();
    const old = await p.wrapDataKey({ keyId: shredded, plaintextKey: randomBytes(32), context: CONTEXT });
    await emulator.rotateKey(shredded);
    await emulator.rotateKey(shredded);
    const [, v2] = emulator.versions(shredded).map((v) => v.version);
    emulator.disableKey(shredded, v2);
    const current = await p.wrapDataKey({ keyId: shredded, plaintextKey: randomBytes(32), context: CONTEXT });
    emulator.resetLog();
    const result = await p.disableKey(shredded, { mode: "disable" });
    expect(result).toEqual({ requestId: expect.stringMatching(GUID) });
    expect(result.requestId).toBe(emulator.requestIds.at(-1)); // the last PATCH's
    expect(emulator.counts()).toEqual({ Challenge: 1, ListKeyVersions: 1, UpdateKey: 2 });
    const [v1, , v3] = emulator.versions(shredded).map((v) => v.version);
    expect(emulator.requests.filter((r) => r.operation === "UpdateKey").map((r) => r.details?.version)).toEqual([v1, v3]);
    expect(emulator.versions(shredded).map((v) => v.enabled)).toEqual([false, false, false]);
    emulator.resetLog();
    const wrap = await kmsErrorOf(p.wrapDataKey({ keyId: shredded, plaintextKey: randomBytes(32), context: CONTEXT }));
    expect(wrap.code).toBe("KMS_KEY_DISABLED");
    expect(wrap.message.startsWith(`azure-key-vault: key ${shredded} (this version) is disabled (HTTP 403 Forbidden/KeyDisabled)`)).toBe(true);
    for (const wrapped of [old, current]) {
      expect((await kmsErrorOf(p.unwrapDataKey({ keyId: shredded, ...wrapped, context: CONTEXT }))).code).toBe("KMS_KEY_DISABLED");
    }
    expect(emulator.counts()).toMatchObject({ WrapKey: 1, UnwrapKey: 2 });
    expect((await p.describeKey(shredded)).enabled).toBe(false);
    // Nothing left to disable: only the listing, and no request id (nothing changed).
    emulator.resetLog();
    expect(await p.disableKey(shredded, { mode: "disable" })).toEqual({});
    expect(emulator.counts()).toEqual({ ListKeyVersions: 1 });
  });

  it("disable reads every page of versions (25 a page)", async () => {
    for (let i = 0; i < 25; i++) await emulator.rotateKey(shredded); // 26 versions
    emulator.resetLog();
    await shredder().disableKey(shredded, { mode: "disable" });
    expect(emulator.counts()).toEqual({ Challenge: 1, ListKeyVersions: 2, UpdateKey: 26 });
    expect(emulator.versions(shredded).every((v) => !v.enabled)).toBe(true);
  });

  it("schedule-destruction: beginDeleteKey (soft delete of every version); afterwards wrap and unwrap are KMS_KEY_NOT_FOUND", async () => {
    const p = shredder();
    const wrapped = await p.wrapDataKey({ keyId: shredded, plaintextKey: randomBytes(32), context: CONTEXT });
    await emulator.rotateKey(shredded);
    emulator.resetLog();
    const result = await p.disableKey(`${shredded}/${wrapped.keyVersion}`, { mode: "schedule-destruction" }); // a pinned id stands for its key
    expect(result).toEqual({ requestId: expect.stringMatching(GUID) });
    expect(result.requestId).toBe(emulator.requestIds.at(-2)); // the DELETE's, not the poller's look after it
    expect(emulator.counts()).toEqual({ Challenge: 1, DeleteKey: 1, GetDeletedKey: 1 });
    expect(emulator.deletedKey(shredded)?.versions).toHaveLength(2);
    const unwrap = await kmsErrorOf(p.unwrapDataKey({ keyId: shredded, ...wrapped, context: CONTEXT }));
    expect(unwrap.code).toBe("KMS_KEY_NOT_FOUND");
    expect(unwrap.message).toContain("a deleted key can be recovered while soft-deleted");
    expect((await kmsErrorOf(p.wrapDataKey({ keyId: shredded, plaintextKey: randomBytes(32), context: CONTEXT }))).code).toBe("KMS_KEY_NOT_FOUND");
    expect((await kmsErrorOf(p.disableKey(shredded, { mode: "schedule-destruction" }))).code).toBe("KMS_KEY_NOT_FOUND");
  });

  it("a mode Key Vault lacks, or a key id it could never use, is INPUT_INVALID without a call", async () => {
    const p = shredder();
    for (const mode of ["purge", "", undefined, 1]) {
      const error = await kmsErrorOf(p.disableKey(shredded, { mode } as never));
      expect({ mode, code: error.code }).toEqual({ mode, code: "INPUT_INVALID" });
      expect(error.message.endsWith(docs("INPUT_INVALID"))).toBe(true);
    }
    expect((await kmsErrorOf(p.disableKey("not a key", { mode: "disable" }))).code).toBe("INPUT_INVALID");
    expect(emulator.count()).toBe(0);
  });

  it.each([
    ["disable", "UpdateKey", "Microsoft.KeyVault/vaults/keys/update/action", "update"],
    ["schedule-destruction", "DeleteKey", "Microsoft.KeyVault/vaults/keys/delete", "delete"],
  ] as const)("%s without the administrator's permission → KMS_ACCESS_DENIED naming %s's data action; the key stays usable", async (mode, operation, dataAction, permission) => {
    emulator.setPermissions(AZURE_EMULATOR_IDENTITY, ["get", "list", "wrapKey", "unwrapKey"]);
    const p = shredder();
    const error = await kmsErrorOf(p.disableKey(shredded, { mode }));
    expect({ code: error.code, retryable: error.retryable, requestId: error.requestId }).toEqual({ code: "KMS_ACCESS_DENIED", retryable: false, requestId: expect.stringMatching(GUID) });
    expect(error.message).toBe(
      `azure-key-vault: access denied: the identity with object id ${emulator.objectId(AZURE_EMULATOR_IDENTITY)} may not perform ${dataAction} on key ${shredded} ` +
        `(HTTP 403 Forbidden/ForbiddenByRbac): assign the role "Key Vault Crypto Officer" (Managed HSM: "Managed HSM Crypto Officer") to the identity on the key or vault, ` +
        `or, with access policies, grant the key permission "${permission}" ${docs("KMS_ACCESS_DENIED")}`,
    );
    expect(emulator.count(operation)).toBe(1);
    expect(emulator.versions(shredded).map((v) => v.enabled)).toEqual([true]);
    await p.wrapDataKey({ keyId: shredded, plaintextKey: randomBytes(32), context: CONTEXT });
  });

  it("listing needs the list permission (keys/read); a missing key is KMS_KEY_NOT_FOUND", async () => {
    emulator.setPermissions(AZURE_EMULATOR_IDENTITY, ["get", "wrapKey", "unwrapKey"]);
    const denied = await kmsErrorOf(shredder().disableKey(shredded, { mode: "disable" }));
    expect(denied.code).toBe("KMS_ACCESS_DENIED");
    // The SDK's pager keeps no error body: the data action is the operation's own.
    expect(denied.message).toContain(`may not perform Microsoft.KeyVault/vaults/keys/read on key ${shredded} (HTTP 403)`);
    expect(denied.message).toContain(ROLE_FIX("list"));
    emulator.setPermissions(AZURE_EMULATOR_IDENTITY, "*");
    const missing = await kmsErrorOf(shredder().disableKey("no-such-key", { mode: "disable" }));
    expect(missing.code).toBe("KMS_KEY_NOT_FOUND");
  });

  it("every call has the provider's deadline; core's abort wins with its own reason; a failure half-way is finished by calling again", async () => {
    await emulator.rotateKey(shredded);
    emulator.resetLog();
    emulator.inject("UpdateKey", { kind: "latency", ms: HELD_MS }, { times: 1 }); // held until the emulator stops: pending from here on
    const late = await kmsErrorOf((provider({ timeoutMs: 1000 }) as ReturnType<typeof shredder>).disableKey(shredded, { mode: "disable" }));
    expect({ code: late.code, retryable: late.retryable }).toEqual({ code: "KMS_TIMEOUT", retryable: true });
    expect(late.message.startsWith(`azure-key-vault: UpdateKey on key ${shredded} got no answer in time (deadline passed): `)).toBe(true);
    const p = shredder();
    emulator.inject("ListKeyVersions", { kind: "latency", ms: HELD_MS }, { times: 1 });
    const controller = new AbortController();
    const held = emulator.pending; // requests held by earlier tests stay pending until the emulator stops
    const pending = kmsErrorOf(p.disableKey(shredded, { mode: "disable", signal: controller.signal }));
    while (emulator.pending === held) await new Promise((resolve) => setTimeout(resolve, 5));
    const reason = new KmsError("KMS_TIMEOUT", "azure-key-vault disableKey timed out after 10 ms");
    controller.abort(reason);
    expect(await pending).toBe(reason);
    emulator.inject("DeleteKey", { kind: "serverError", status: 503 }, { times: 1 });
    expect((await kmsErrorOf(p.disableKey(shredded, { mode: "schedule-destruction" }))).code).toBe("KMS_UNAVAILABLE");
    await p.disableKey(shredded, { mode: "disable" });
    expect(emulator.versions(shredded).map((v) => v.enabled)).toEqual([false, false]);
  });
});

describe("Managed HSM: A256KW with oct-HSM keys", () => {
  const hsm = new AzureKeyVaultEmulator({ managedHsm: true });

  beforeAll(async () => {
    await hsm.start();
    await hsm.createKey("hsm-key", { kty: "oct-HSM", keySize: 256 });
    await hsm.createKey("rsa-key");
  });

  afterAll(async () => {
    await hsm.stop();
  });

  it("wraps and unwraps with A256KW; an RSA key with A256KW is a KMS_CONFIG_INVALID naming the algorithm setting", async () => {
    const p = azureKeyVaultProvider({ vaultUrl: hsm.url, credential: hsm.credential(), ca: hsm.ca, disableChallengeResourceVerification: true, algorithm: "A256KW" });
    providers.push(p);
    const key = randomBytes(32);
    const wrapped = await p.wrapDataKey({ keyId: "hsm-key", plaintextKey: key, context: CONTEXT });
    expect(wrapped.wrappedKey).toHaveLength(40); // RFC 3394: 32 bytes + 8
    expect(Buffer.from(await p.unwrapDataKey({ keyId: "hsm-key", ...wrapped, context: CONTEXT })).equals(key)).toBe(true);
    const error = await kmsErrorOf(p.wrapDataKey({ keyId: "rsa-key", plaintextKey: key, context: CONTEXT }));
    expect(error.code).toBe("KMS_CONFIG_INVALID");
    expect(error.message).toContain("set `algorithm` to match the key type: RSA-OAEP-256 for RSA keys, A256KW for Managed HSM oct-HSM keys");
    // A Managed HSM's denial names its own data action, which the message carries.
    hsm.setPermissions(AZURE_EMULATOR_IDENTITY, ["get"]);
    const denied = await kmsErrorOf(p.unwrapDataKey({ keyId: "hsm-key", ...wrapped, context: CONTEXT }));
    expect(denied.message).toContain("may not perform Microsoft.KeyVault/managedHsm/keys/unwrap/action on key hsm-key (HTTP 403 Forbidden/ForbiddenByRbac)");
  });
});

describe("close()", () => {
  it("is idempotent; every later call is KMS_CLOSED, without a request", async () => {
    const p = provider();
    await p.wrapDataKey({ keyId: name, plaintextKey: randomBytes(32), context: CONTEXT });
    await p.close();
    await p.close();
    emulator.resetLog();
    const calls: Promise<unknown>[] = [
      p.wrapDataKey({ keyId: name, plaintextKey: randomBytes(32), context: CONTEXT }),
      p.unwrapDataKey({ keyId: name, keyVersion: "0".repeat(32), wrappedKey: randomBytes(256), context: CONTEXT }),
      p.describeKey(name),
      p.rotateKey(name),
      p.checkHealth([name]),
      p.validatePermissions(name),
    ];
    for (const call of calls) expect((await kmsErrorOf(call)).code).toBe("KMS_CLOSED");
    expect(emulator.count()).toBe(0);
  });
});

describe("settings and key ids", () => {
  const definition = azureKeyVault({ credential: { getToken: async () => null } });

  it("parseSettings accepts a vault URL (normalized to its origin), the algorithm, a deadline, a CA and the challenge escape", () => {
    const raw = { vaultUrl: "https://my-vault.vault.azure.net/", algorithm: "A256KW", timeoutMs: 5000, ca: emulator.ca, disableChallengeResourceVerification: true };
    expect(definition.parseSettings(raw)).toEqual({ ok: true, settings: { ...raw, vaultUrl: "https://my-vault.vault.azure.net" } });
    expect(definition.parseSettings({ vaultUrl: "https://hsm.managedhsm.azure.net" })).toEqual({ ok: true, settings: { vaultUrl: "https://hsm.managedhsm.azure.net" } });
  });

  it("parseSettings reports every problem with its path, and never echoes a value", () => {
    const result = definition.parseSettings({ vaultUrl: "http://my-vault.vault.azure.net", algorithm: "RSA-OAEP", timeoutMs: 0, ca: "pw-secret", credential: {}, retries: 2 });
    expect(result).toEqual({
      ok: false,
      issues: [
        { path: "credential", message: "a credential cannot come from configuration: azureKeyVault() uses DefaultAzureCredential (its environment), or pass one in code, azureKeyVault({ credential })" },
        { path: "retries", message: "unknown setting (expected vaultUrl, algorithm, timeoutMs, ca, disableChallengeResourceVerification)" },
        { path: "vaultUrl", message: "must be the vault's https URL, such as https://my-vault.vault.azure.net (https only: the access token travels with every request)" },
        { path: "algorithm", message: "must be one of RSA-OAEP-256, A256KW" },
        { path: "timeoutMs", message: "must be a whole number of milliseconds, 1 to 600000" },
        { path: "ca", message: "must be PEM certificate text (-----BEGIN CERTIFICATE-----…)" },
      ],
    });
    expect(JSON.stringify(result).includes("pw-secret")).toBe(false);
    expect(definition.parseSettings({ vaultUrl: "https://user:pw-secret@v.vault.azure.net" })).toEqual({ ok: false, issues: [{ path: "vaultUrl", message: "must not carry credentials" }] });
    expect(definition.parseSettings({ vaultUrl: "https://v.vault.azure.net/keys/k" }).ok).toBe(false);
    expect(definition.parseSettings(undefined)).toEqual({ ok: false, issues: [{ path: "", message: "must be an object with at least a vaultUrl" }] });
  });

  it("keyIdProblem accepts a key name, optionally pinned to a 32-hex version, and explains the rest", () => {
    for (const good of ["tenant-key", "K1", "a".repeat(127), `tenant-key/${"0123456789abcdef".repeat(2)}`]) expect(definition.keyIdProblem!(good)).toBeUndefined();
    for (const bad of ["", "under_score", "a".repeat(128), "key/v1", "https://v.vault.azure.net/keys/k", `k/${"0".repeat(32)}/x`]) {
      expect({ bad, problem: definition.keyIdProblem!(bad) }).toEqual({ bad, problem: AZURE_KEY_ID_RULE });
    }
  });

  it("the factory refuses a missing credential, listing every problem at once; the definition one that is not a TokenCredential", () => {
    const thrown = (fn: () => unknown) => {
      try {
        fn();
      } catch (error) {
        return error as KmsConfigError;
      }
      throw new Error("expected a throw");
    };
    const error = thrown(() => azureKeyVaultProvider({ vaultUrl: "http://x" } as AzureKeyVaultProviderOptions));
    expect(error.issues.map((i) => [i.path, i.code])).toEqual([["credential", "KMS_CONFIG_INVALID"], ["vaultUrl", "KMS_CONFIG_INVALID"]]);
    expect(thrown(() => azureKeyVault({ credential: {} as never })).issues.map((i) => [i.path, i.message])).toEqual([["credential", "must be a TokenCredential (an object with getToken)"]]);
    expect(azureKeyVault({}).id).toBe("azure-key-vault"); // no credential: DefaultAzureCredential (test/default-credential.test.ts)
  });

  it("createKms refuses a configured key id Key Vault could never use, at start-up", () => {
    const create = () =>
      createKms({
        registry: [definition],
        config: { providers: { "azure-key-vault": { vaultUrl: "https://v.vault.azure.net" } }, tenants: { defaultKey: { provider: "azure-key-vault", keyId: "my_key" } } },
        env: {},
      });
    expect(create).toThrow(AZURE_KEY_ID_RULE);
  });
});
