import { randomBytes } from "node:crypto";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "@jest/globals";
import { KeyManagementServiceClient } from "@google-cloud/kms";
import { KmsConfigError, KmsError, type KmsErrorCode, TROUBLESHOOTING_URL, createKms } from "@kms/core";
import { GCP_EMULATOR_IDENTITY, GCP_KMS_PERMISSIONS, GcpKmsEmulator } from "@kms/testkit/emulators";
import { kmsErrorOf } from "@kms/testkit";
import { GCP_KEY_ID_RULE, GCP_PERMISSIONS_DOCS_URL, GCP_RUNTIME_PERMISSIONS, GCP_SHREDDING_PERMISSIONS, type GcpKmsProvider, encodeContext, gcpKms, gcpKmsProvider, parseGcpKmsSettings } from "../src";
import { mapGcpError } from "../src/errors";

const PARTIAL = "app@emulator-project.iam.gserviceaccount.com";
/** A context with a value that must never reach a message. */
const CONTEXT = { "kms:tenant": "tenant-a", ssn: "078-05-1120" };
const emulator = new GcpKmsEmulator({ identities: { [GCP_EMULATOR_IDENTITY]: "*", [PARTIAL]: [] } });
const clients: KeyManagementServiceClient[] = [];
const providers: GcpKmsProvider[] = [];
let keyName: string;

/** A provider on a client of the test's own (default identity unless given), closed after each test. */
function provider(identity?: string, timeoutMs?: number): GcpKmsProvider {
  const client = new KeyManagementServiceClient(emulator.clientOptions(identity));
  clients.push(client);
  const p = gcpKmsProvider({ client, ...(timeoutMs === undefined ? {} : { timeoutMs }) });
  providers.push(p);
  return p;
}

beforeAll(async () => {
  await emulator.start();
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await emulator.stop();
});

beforeEach(() => {
  keyName = emulator.createKey();
  emulator.resetLog();
  emulator.setPermissions(PARTIAL, []);
});

afterEach(async () => {
  emulator.clearFaults();
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

/** Waits (in real time) until the emulator's side of a call has happened. */
async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 2));
}

const docs = (code: KmsErrorCode) => `(${code}; see ${TROUBLESHOOTING_URL}#${code.toLowerCase()})`;

describe("requests and responses", () => {
  it("wraps a locally drawn key with Encrypt, its context as AAD and CRC32C both ways; the version comes from the response", async () => {
    const p = provider();
    const dk = await p.generateDataKey({ keyId: keyName, context: CONTEXT });
    expect(dk.keyVersion).toBe("1");
    expect(dk.plaintextKey).toHaveLength(32);
    emulator.rotate(keyName);
    const again = await p.wrapDataKey({ keyId: keyName, plaintextKey: dk.plaintextKey, context: CONTEXT });
    expect(again.keyVersion).toBe("2");
    const unwrapped = await p.unwrapDataKey({ keyId: keyName, keyVersion: "1", wrappedKey: dk.wrappedKey, context: { ssn: CONTEXT.ssn, "kms:tenant": "tenant-a" } });
    expect(Buffer.from(unwrapped).equals(Buffer.from(dk.plaintextKey))).toBe(true);
    expect(emulator.counts()).toEqual({ Encrypt: 2, Decrypt: 1 });
  });

  it("the AAD is one canonical encoding of the context: order-independent, distinct for distinct pairs", () => {
    expect(encodeContext({ a: "1", b: "2" }).equals(encodeContext({ b: "2", a: "1" }))).toBe(true);
    expect(encodeContext({ ab: "" }).equals(encodeContext({ a: "b" }))).toBe(false);
    expect(encodeContext({}).length).toBeGreaterThan(0);
    expect(() => encodeContext({ a: 1 } as never)).toThrow(expect.objectContaining({ code: "INPUT_INVALID" }));
    expect(() => encodeContext({ big: "x".repeat(70_000) })).toThrow(expect.objectContaining({ code: "INPUT_INVALID" }));
  });

  it("describeKey reports the primary version, its state and dates", async () => {
    const p = provider();
    const description = await p.describeKey(keyName);
    expect(description).toEqual({ keyId: keyName, enabled: true, currentVersion: "1", createdAt: expect.any(Date), rotatedAt: expect.any(Date) });
    emulator.disableVersion(keyName);
    expect((await p.describeKey(keyName)).enabled).toBe(false);
    expect(await p.checkHealth([keyName])).toEqual({ healthy: false, insecure: false, detail: `key ${keyName}: primary version DISABLED (KMS_KEY_DISABLED)` });
  });

  it("a key id that is not a full CryptoKey name is INPUT_INVALID, without a call", async () => {
    const p = provider();
    for (const bad of ["alias/app", `${keyName}/cryptoKeyVersions/1`, "projects/p/locations/l/keyRings/r/cryptoKeys/k", ""]) {
      const error = await kmsErrorOf(p.wrapDataKey({ keyId: bad, plaintextKey: randomBytes(32), context: CONTEXT }));
      expect({ bad, code: error.code }).toEqual({ bad, code: "INPUT_INVALID" });
      expect(error.message).toContain(GCP_KEY_ID_RULE);
    }
    expect(await p.checkHealth(["nope"])).toEqual({ healthy: false, insecure: false, detail: "invalid key id (INPUT_INVALID)" });
    expect(emulator.count()).toBe(0);
  });
});

describe("error mapping", () => {
  const injected: [string, Parameters<typeof emulator.inject>[1], KmsErrorCode, boolean, (key: string) => string][] = [
    ["throttle", { kind: "throttle" }, "KMS_THROTTLED", true, (k) => `Encrypt on ${k} was throttled (RESOURCE_EXHAUSTED)`],
    ["serverError 500", { kind: "serverError" }, "KMS_UNAVAILABLE", true, (k) => `Encrypt on ${k} failed: Cloud KMS is unavailable (INTERNAL)`],
    ["serverError 503", { kind: "serverError", status: 503 }, "KMS_UNAVAILABLE", true, (k) => `Encrypt on ${k} failed: Cloud KMS is unavailable (UNAVAILABLE)`],
    ["connectionReset", { kind: "connectionReset" }, "KMS_UNAVAILABLE", true, (k) => `Encrypt on ${k} failed: Cloud KMS is unavailable (UNAVAILABLE)`],
    ["accessDenied", { kind: "accessDenied" }, "KMS_ACCESS_DENIED", false, (k) => `permission cloudkms.cryptoKeyVersions.useToEncrypt denied on ${k} (or the key does not exist)`],
    ["keyDisabled", { kind: "keyDisabled" }, "KMS_KEY_DISABLED", false, (k) => `key ${k} cannot be used: the key version is DISABLED`],
    ["keyNotFound", { kind: "keyNotFound" }, "KMS_KEY_NOT_FOUND", false, (k) => `key ${k} does not exist`],
  ];

  it.each(injected)("%s → the right code and retryability; the message names the key, carries the docs link and no secret", async (_, fault, code, retryable, start) => {
    const p = provider();
    const secret = await p.generateDataKey({ keyId: keyName, context: CONTEXT }); // a data key that must not leak
    emulator.inject("Encrypt", fault, { times: 1 });
    const error = await kmsErrorOf(p.wrapDataKey({ keyId: keyName, plaintextKey: secret.plaintextKey, context: CONTEXT }));
    expect({ code: error.code, retryable: error.retryable, provider: error.provider }).toEqual({ code, retryable, provider: "gcp-kms" });
    expect(error.message.startsWith(`gcp-kms: ${start(keyName)}: `)).toBe(true);
    expect(error.message.endsWith(docs(code))).toBe(true);
    expect(error.requestId).toBeUndefined(); // gRPC has none
    expect(error.cause).toBeInstanceOf(Error);
    const text = everythingIn(error);
    for (const leak of [...encodings(secret.plaintextKey), CONTEXT.ssn]) expect(text.includes(leak)).toBe(false);
    expect(emulator.count("Encrypt")).toBe(2);
  });

  it("access denied names the permission and key, with the role (or custom-role permission) to grant", async () => {
    const p = provider(PARTIAL);
    const error = await kmsErrorOf(p.describeKey(keyName));
    expect(error.message).toBe(
      `gcp-kms: permission cloudkms.cryptoKeys.get denied on ${keyName} (or the key does not exist): ` +
        `grant roles/cloudkms.viewer on ${keyName} to the provider's service account (or a custom role with cloudkms.cryptoKeys.get) ${docs("KMS_ACCESS_DENIED")}`,
    );
    const denied = await kmsErrorOf(p.unwrapDataKey({ keyId: keyName, keyVersion: "1", wrappedKey: randomBytes(80), context: CONTEXT }));
    expect(denied.message).toContain("grant roles/cloudkms.cryptoKeyDecrypter");
  });

  it("a destroyed version is KMS_KEY_DISABLED with its state and the fix for it", async () => {
    const p = provider();
    const dk = await p.generateDataKey({ keyId: keyName, context: CONTEXT });
    emulator.destroyVersion(keyName);
    const error = await kmsErrorOf(p.unwrapDataKey({ keyId: keyName, keyVersion: dk.keyVersion, wrappedKey: dk.wrappedKey, context: CONTEXT }));
    expect(error.code).toBe("KMS_KEY_DISABLED");
    expect(error.message).toContain(`key ${keyName} cannot be used: the key version is DESTROYED: restore the version`);
  });

  it("rejected credentials are KMS_ACCESS_DENIED that say so", async () => {
    const client = new KeyManagementServiceClient({ ...emulator.clientOptions(), "grpc.primary_user_agent": "kms-emulator-identity/revoked" });
    clients.push(client);
    const error = await kmsErrorOf(gcpKmsProvider({ client }).describeKey(keyName));
    expect(error.code).toBe("KMS_ACCESS_DENIED");
    expect(error.message).toContain("the Google credentials were rejected (UNAUTHENTICATED) calling GetCryptoKey");
  });

  it("the provider's deadline (timeoutMs) is a retryable KMS_TIMEOUT (DEADLINE_EXCEEDED), one attempt only", async () => {
    emulator.inject("GetCryptoKey", { kind: "latency", ms: 300 }, { times: 1 });
    const error = await kmsErrorOf(provider(undefined, 100).describeKey(keyName));
    expect({ code: error.code, retryable: error.retryable }).toEqual({ code: "KMS_TIMEOUT", retryable: true });
    expect(error.message.startsWith(`gcp-kms: GetCryptoKey on ${keyName} passed its deadline: `)).toBe(true);
    await until(() => emulator.count() === 1);
    // One attempt, abandoned by the client: the emulator could not answer it (status 0).
    expect(emulator.requests).toEqual([{ operation: "GetCryptoKey", keyId: keyName, status: 0, fault: "latency", identity: GCP_EMULATOR_IDENTITY }]);
  });

  it("core's abort wins and cancels the call on the wire: the provider rejects with the signal's reason", async () => {
    const p = provider();
    emulator.inject("GetCryptoKey", { kind: "latency", ms: 300 }, { times: 1 });
    const controller = new AbortController();
    const pending = kmsErrorOf(p.describeKey(keyName, { signal: controller.signal }));
    await until(() => emulator.pending === 1);
    const reason = new KmsError("KMS_TIMEOUT", "gcp-kms describeKey timed out after 10 ms");
    controller.abort(reason);
    expect(await pending).toBe(reason);
    await until(() => emulator.count() === 1);
    expect(emulator.requests.map((r) => r.status)).toEqual([0]); // cancelled: nothing left to answer
    const plain = new AbortController();
    plain.abort();
    expect((await kmsErrorOf(p.describeKey(keyName, { signal: plain.signal }))).code).toBe("KMS_TIMEOUT");
    expect(emulator.count()).toBe(1); // an aborted signal makes no call
  });

  it("maps statuses the emulator does not produce by code, copying no Google text", () => {
    const call = { operation: "Decrypt", keyId: "projects/p-1234/locations/global/keyRings/r/cryptoKeys/k" };
    const cases: [unknown, KmsErrorCode][] = [
      [{ code: 1, details: "Call cancelled" }, "KMS_UNAVAILABLE"],
      [{ code: 2, details: "secret text" }, "KMS_UNAVAILABLE"],
      [{ code: 3, details: "The checksum in field ciphertext_crc32c did not match the data in field ciphertext." }, "KMS_INTEGRITY_ERROR"],
      [{ code: 3, details: "Decryption failed: the ciphertext is invalid." }, "ENVELOPE_AUTH_FAILED"],
      [{ code: 10, details: "secret text" }, "KMS_PROVIDER_ERROR"],
      [{ code: 16, details: "secret text" }, "KMS_ACCESS_DENIED"],
      [Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:1"), { code: "ECONNREFUSED" }), "KMS_UNAVAILABLE"],
      [new Error("read ETIMEDOUT"), "KMS_TIMEOUT"],
      ["a string", "KMS_PROVIDER_ERROR"],
    ];
    for (const [raw, code] of cases) {
      const error = mapGcpError(raw, call);
      expect({ raw, code: error.code }).toEqual({ raw, code });
      expect(error.message).not.toContain("secret text");
    }
    expect(mapGcpError({ code: 3 }, { operation: "Encrypt", keyId: call.keyId }).code).toBe("KMS_PROVIDER_ERROR");
    expect(mapGcpError({ code: 9, details: "current state is: DESTROY_SCHEDULED." }, call).message).toContain("is DESTROY_SCHEDULED");
  });
});

describe("response integrity (CRC32C and names)", () => {
  const cases = [
    ["Encrypt", "payloadByte", "ciphertext CRC32C"],
    ["Encrypt", "unverified", "plaintext CRC32C not verified by Cloud KMS"],
    ["Encrypt", "foreignName", "the response names a version of another key"],
    ["Decrypt", "payloadByte", "plaintext CRC32C"],
    ["Decrypt", "unverified", "plaintext CRC32C"],
  ] as const;

  it.each(cases)("%s response corrupted (%s) → retryable KMS_INTEGRITY_ERROR, nothing returned", async (operation, how, what) => {
    const p = provider();
    const dk = await p.generateDataKey({ keyId: keyName, context: CONTEXT });
    emulator.corruptResponses(operation, { how });
    const attempt =
      operation === "Encrypt"
        ? p.wrapDataKey({ keyId: keyName, plaintextKey: dk.plaintextKey, context: CONTEXT })
        : p.unwrapDataKey({ keyId: keyName, keyVersion: dk.keyVersion, wrappedKey: dk.wrappedKey, context: CONTEXT });
    const error = await kmsErrorOf(attempt);
    expect({ code: error.code, retryable: error.retryable }).toEqual({ code: "KMS_INTEGRITY_ERROR", retryable: true });
    expect(error.message).toBe(
      `gcp-kms: ${operation} on ${keyName}: the response failed its integrity check (${what}) and was discarded: ` +
        `try again; if it persists, check for a proxy that alters traffic to Cloud KMS ${docs("KMS_INTEGRITY_ERROR")}`,
    );
    for (const leak of encodings(dk.plaintextKey)) expect(everythingIn(error).includes(leak)).toBe(false);
  });
});

describe("rotation and permissions", () => {
  it("rotateKey creates a version and makes it primary", async () => {
    const p = provider();
    expect(await p.rotateKey(keyName)).toEqual({ keyId: keyName, previousVersion: "1", currentVersion: "2" });
    expect(emulator.key(keyName).versions.map((v) => v.state)).toEqual(["ENABLED", "ENABLED"]);
    expect((await p.describeKey(keyName)).currentVersion).toBe("2");
    emulator.setPermissions(PARTIAL, [GCP_KMS_PERMISSIONS.GetCryptoKey, GCP_KMS_PERMISSIONS.CreateCryptoKeyVersion]);
    const error = await kmsErrorOf(provider(PARTIAL).rotateKey(keyName));
    expect(error.message).toContain("permission cloudkms.cryptoKeys.update denied");
  });

  it("validatePermissions: one TestIamPermissions call, one check per permission with the exact fix", async () => {
    emulator.setPermissions(PARTIAL, [GCP_KMS_PERMISSIONS.Decrypt]);
    const checks = await provider(PARTIAL).validatePermissions(keyName);
    expect(checks).toEqual([
      {
        permission: "cloudkms.cryptoKeyVersions.useToEncrypt",
        ok: false,
        remediation: `cloudkms.cryptoKeyVersions.useToEncrypt is missing: grant roles/cloudkms.cryptoKeyEncrypter on ${keyName} to the provider's service account (or a custom role with cloudkms.cryptoKeyVersions.useToEncrypt)`,
        docsUrl: GCP_PERMISSIONS_DOCS_URL,
      },
      { permission: "cloudkms.cryptoKeyVersions.useToDecrypt", ok: true, docsUrl: GCP_PERMISSIONS_DOCS_URL },
      {
        permission: "cloudkms.cryptoKeys.get",
        ok: false,
        remediation: `cloudkms.cryptoKeys.get is missing: grant roles/cloudkms.viewer on ${keyName} to the provider's service account (or a custom role with cloudkms.cryptoKeys.get)`,
        docsUrl: GCP_PERMISSIONS_DOCS_URL,
      },
    ]);
    expect(emulator.counts()).toEqual({ TestIamPermissions: 1 });
  });

  it("validatePermissions checks exactly GCP_RUNTIME_PERMISSIONS (the custom role of deploy/terraform/gcp), none of the shredding ones", async () => {
    const checks = await provider().validatePermissions(keyName);
    expect(checks.map((c) => [c.permission, c.ok])).toEqual(GCP_RUNTIME_PERMISSIONS.map((p) => [p, true]));
    expect([...GCP_RUNTIME_PERMISSIONS]).toEqual(["cloudkms.cryptoKeyVersions.useToEncrypt", "cloudkms.cryptoKeyVersions.useToDecrypt", "cloudkms.cryptoKeys.get"]);
    expect(GCP_SHREDDING_PERMISSIONS.some((p) => (GCP_RUNTIME_PERMISSIONS as readonly string[]).includes(p))).toBe(false);
  });

  it("validatePermissions reports a call that fails (a missing key) on every check, without throwing", async () => {
    const checks = await provider().validatePermissions(emulator.keyName("missing"));
    expect(checks.map((c) => [c.permission, c.ok, c.error?.code])).toEqual([
      ["cloudkms.cryptoKeyVersions.useToEncrypt", false, "KMS_KEY_NOT_FOUND"],
      ["cloudkms.cryptoKeyVersions.useToDecrypt", false, "KMS_KEY_NOT_FOUND"],
      ["cloudkms.cryptoKeys.get", false, "KMS_KEY_NOT_FOUND"],
    ]);
    expect(checks[0]!.remediation).toContain("could not be checked: check the key name");
  });
});

describe("disableKey (crypto-shredding)", () => {
  const ADMIN_LIST = GCP_KMS_PERMISSIONS.ListCryptoKeyVersions;

  it("advertises both modes", () => {
    expect(provider().capabilities.keyDisabling).toEqual(["disable", "schedule-destruction"]);
  });

  it("disable: every ENABLED version → DISABLED (one List, one Update per enabled version); then neither wrap nor unwrap works", async () => {
    const p = provider();
    const old = await p.generateDataKey({ keyId: keyName, context: CONTEXT });
    emulator.rotate(keyName);
    emulator.rotate(keyName);
    emulator.disableVersion(keyName, 2);
    const current = await p.generateDataKey({ keyId: keyName, context: CONTEXT });
    emulator.resetLog();
    expect(await p.disableKey(keyName, { mode: "disable" })).toEqual({}); // gRPC has no request id
    expect(emulator.counts()).toEqual({ ListCryptoKeyVersions: 1, UpdateCryptoKeyVersion: 2 });
    expect(emulator.requests.filter((r) => r.operation === "UpdateCryptoKeyVersion").map((r) => r.keyId)).toEqual([`${keyName}/cryptoKeyVersions/1`, `${keyName}/cryptoKeyVersions/3`]);
    expect(emulator.key(keyName).versions.map((v) => v.state)).toEqual(["DISABLED", "DISABLED", "DISABLED"]);
    emulator.resetLog();
    const wrap = await kmsErrorOf(p.wrapDataKey({ keyId: keyName, plaintextKey: randomBytes(32), context: CONTEXT }));
    expect(wrap.code).toBe("KMS_KEY_DISABLED");
    expect(wrap.message).toContain(`key ${keyName} cannot be used: the key version is DISABLED`);
    for (const dk of [old, current]) {
      const unwrap = await kmsErrorOf(p.unwrapDataKey({ keyId: keyName, keyVersion: dk.keyVersion, wrappedKey: dk.wrappedKey, context: CONTEXT }));
      expect(unwrap.code).toBe("KMS_KEY_DISABLED");
    }
    expect(emulator.counts()).toEqual({ Encrypt: 1, Decrypt: 2 });
    expect((await p.describeKey(keyName)).enabled).toBe(false);
    // Idempotent: nothing left to disable, so only the listing.
    emulator.resetLog();
    expect(await p.disableKey(keyName, { mode: "disable" })).toEqual({});
    expect(emulator.counts()).toEqual({ ListCryptoKeyVersions: 1 });
  });

  it("schedule-destruction: DestroyCryptoKeyVersion on every version not already destroyed; then neither wrap nor unwrap works", async () => {
    const p = provider();
    const dk = await p.generateDataKey({ keyId: keyName, context: CONTEXT });
    emulator.rotate(keyName);
    emulator.rotate(keyName);
    emulator.disableVersion(keyName, 2);
    emulator.destroyVersion(keyName, 3);
    emulator.resetLog();
    expect(await p.disableKey(keyName, { mode: "schedule-destruction" })).toEqual({});
    expect(emulator.counts()).toEqual({ ListCryptoKeyVersions: 1, DestroyCryptoKeyVersion: 2 });
    expect(emulator.requests.filter((r) => r.operation === "DestroyCryptoKeyVersion").map((r) => r.keyId)).toEqual([`${keyName}/cryptoKeyVersions/1`, `${keyName}/cryptoKeyVersions/2`]);
    expect(emulator.key(keyName).versions.map((v) => v.state)).toEqual(["DESTROYED", "DESTROYED", "DESTROYED"]);
    const unwrap = await kmsErrorOf(p.unwrapDataKey({ keyId: keyName, keyVersion: dk.keyVersion, wrappedKey: dk.wrappedKey, context: CONTEXT }));
    expect(unwrap.code).toBe("KMS_KEY_DISABLED"); // Cloud KMS keeps destroyed versions: FAILED_PRECONDITION, not NOT_FOUND
    expect(unwrap.message).toContain("the key version is DESTROYED");
    expect((await kmsErrorOf(p.wrapDataKey({ keyId: keyName, plaintextKey: randomBytes(32), context: CONTEXT }))).code).toBe("KMS_KEY_DISABLED");
    emulator.resetLog();
    await p.disableKey(keyName, { mode: "schedule-destruction" });
    expect(emulator.counts()).toEqual({ ListCryptoKeyVersions: 1 });
  });

  it("lists every page: versions past the first page are disabled too", async () => {
    const p = provider();
    for (let i = 0; i < 1001; i++) emulator.rotate(keyName); // 1002 versions: two pages of 1000
    emulator.resetLog();
    await p.disableKey(keyName, { mode: "disable" });
    expect(emulator.counts()).toEqual({ ListCryptoKeyVersions: 2, UpdateCryptoKeyVersion: 1002 });
    expect(emulator.key(keyName).versions.every((v) => v.state === "DISABLED")).toBe(true);
  });

  it("a mode Cloud KMS lacks, or a bad key id, is INPUT_INVALID without a call", async () => {
    const p = provider();
    for (const mode of ["purge", "", undefined, 1]) {
      const error = await kmsErrorOf(p.disableKey(keyName, { mode } as never));
      expect({ mode, code: error.code }).toEqual({ mode, code: "INPUT_INVALID" });
      expect(error.message.endsWith(docs("INPUT_INVALID"))).toBe(true);
    }
    expect((await kmsErrorOf(p.disableKey(`${keyName}/cryptoKeyVersions/1`, { mode: "disable" }))).code).toBe("INPUT_INVALID");
    expect(emulator.count()).toBe(0);
  });

  it.each([
    ["disable", "UpdateCryptoKeyVersion", "cloudkms.cryptoKeyVersions.update"],
    ["schedule-destruction", "DestroyCryptoKeyVersion", "cloudkms.cryptoKeyVersions.destroy"],
  ] as const)("%s without the admin permission → KMS_ACCESS_DENIED naming %s's permission; the key stays usable", async (mode, operation, permission) => {
    emulator.setPermissions(PARTIAL, [ADMIN_LIST, GCP_KMS_PERMISSIONS.Encrypt]);
    const p = provider(PARTIAL);
    const error = await kmsErrorOf(p.disableKey(keyName, { mode }));
    expect({ code: error.code, retryable: error.retryable }).toEqual({ code: "KMS_ACCESS_DENIED", retryable: false });
    expect(error.message).toBe(
      `gcp-kms: permission ${permission} denied on ${keyName} (or the key does not exist): ` +
        `grant roles/cloudkms.admin on ${keyName} to the provider's service account (or a custom role with ${permission}) ${docs("KMS_ACCESS_DENIED")}`,
    );
    expect(emulator.counts()).toEqual({ ListCryptoKeyVersions: 1, [operation]: 1 });
    expect(emulator.key(keyName).versions.map((v) => v.state)).toEqual(["ENABLED"]);
    await p.wrapDataKey({ keyId: keyName, plaintextKey: randomBytes(32), context: CONTEXT });
  });

  it("listing needs cloudkms.cryptoKeyVersions.list; a missing key is KMS_KEY_NOT_FOUND", async () => {
    const denied = await kmsErrorOf(provider(PARTIAL).disableKey(keyName, { mode: "disable" }));
    expect(denied.code).toBe("KMS_ACCESS_DENIED");
    expect(denied.message).toContain("permission cloudkms.cryptoKeyVersions.list denied");
    expect(denied.message).toContain("grant roles/cloudkms.viewer");
    const missing = await kmsErrorOf(provider().disableKey(emulator.keyName("missing"), { mode: "schedule-destruction" }));
    expect(missing.code).toBe("KMS_KEY_NOT_FOUND");
    expect(emulator.counts()).toEqual({ ListCryptoKeyVersions: 2 });
  });

  it("every call has the provider's deadline; a failure half-way is finished by calling again", async () => {
    emulator.rotate(keyName);
    emulator.resetLog();
    emulator.inject("UpdateCryptoKeyVersion", { kind: "latency", ms: 300 }, { times: 1 });
    const p = provider(undefined, 100);
    const error = await kmsErrorOf(p.disableKey(keyName, { mode: "disable" }));
    expect({ code: error.code, retryable: error.retryable }).toEqual({ code: "KMS_TIMEOUT", retryable: true });
    expect(error.message.startsWith(`gcp-kms: UpdateCryptoKeyVersion on ${keyName} passed its deadline: `)).toBe(true);
    await until(() => emulator.count("UpdateCryptoKeyVersion") === 1);
    emulator.inject("DestroyCryptoKeyVersion", { kind: "serverError", status: 503 }, { times: 1 });
    expect((await kmsErrorOf(p.disableKey(keyName, { mode: "schedule-destruction" }))).code).toBe("KMS_UNAVAILABLE");
    await p.disableKey(keyName, { mode: "schedule-destruction" });
    expect(emulator.key(keyName).versions.map((v) => v.state)).toEqual(["DESTROYED", "DESTROYED"]);
  });

  it("core's abort cancels it with the signal's reason", async () => {
    const p = provider();
    const controller = new AbortController();
    const reason = new KmsError("KMS_TIMEOUT", "gcp-kms disableKey timed out");
    emulator.inject("ListCryptoKeyVersions", { kind: "latency", ms: 300 }, { times: 1 });
    const pending = kmsErrorOf(p.disableKey(keyName, { mode: "disable", signal: controller.signal }));
    await until(() => emulator.pending === 1);
    controller.abort(reason);
    expect(await pending).toBe(reason);
    expect(emulator.key(keyName).versions.map((v) => v.state)).toEqual(["ENABLED"]);
  });
});

describe("settings and construction", () => {
  it("accepts the documented settings and reports every problem at once, echoing no value", () => {
    expect(parseGcpKmsSettings(undefined)).toEqual({ ok: true, settings: {} });
    expect(parseGcpKmsSettings({ apiEndpoint: "cloudkms.googleapis.com", port: 443, keyFilename: "/etc/sa.json", timeoutMs: 5000 })).toEqual({
      ok: true,
      settings: { apiEndpoint: "cloudkms.googleapis.com", port: 443, keyFilename: "/etc/sa.json", timeoutMs: 5000 },
    });
    const privateKey = "-----BEGIN PRIVATE KEY-----\nsecret-key-material\n-----END PRIVATE KEY-----\n";
    const result = parseGcpKmsSettings({
      apiEndpoint: "https://kms",
      port: 0,
      keyFilename: "/a",
      credentials: { client_email: "not an email", private_key: privateKey },
      timeoutMs: -1,
      retry: 3,
      extra: true,
    });
    expect(result.ok).toBe(false);
    const issues = result.ok ? [] : result.issues;
    expect(issues.map((i) => i.path)).toEqual(["retry", "extra", "apiEndpoint", "port", "credentials.client_email", "credentials", "timeoutMs"]);
    expect(JSON.stringify(issues)).not.toContain("secret-key-material");
  });

  it("emulator: { caCert } (TLS, a loopback address, a port, no credentials); plaintext emulator: true is refused", () => {
    const at = { apiEndpoint: "127.0.0.1", port: 8085 };
    expect(parseGcpKmsSettings({ ...at, emulator: { caCert: emulator.ca } })).toEqual({ ok: true, settings: { ...at, emulator: { caCert: emulator.ca } } });
    expect(parseGcpKmsSettings({ ...at, emulator: true })).toEqual({
      ok: false,
      issues: [{ path: "emulator", message: 'must be { caCert: "<PEM>" }: an emulator is reached over TLS, trusting its certificate (there is no plaintext mode)' }],
    });
    expect(parseGcpKmsSettings({ ...at, emulator: {} })).toEqual({
      ok: false,
      issues: [{ path: "emulator.caCert", message: "required: the PEM certificate the emulator's TLS certificate is, or is signed by" }],
    });
    const notPem = { path: "emulator.caCert", message: "must be PEM text of a certificate (-----BEGIN CERTIFICATE----- …)" };
    expect(parseGcpKmsSettings({ ...at, emulator: { caCert: "/etc/emulator-ca.pem" } })).toEqual({ ok: false, issues: [notPem] });
    const garbled = "-----BEGIN CERTIFICATE-----\nc2VjcmV0LWJ1dC1ub3QtYS1jZXJ0\n-----END CERTIFICATE-----\n";
    expect(parseGcpKmsSettings({ ...at, emulator: { caCert: garbled, insecure: true } })).toEqual({
      ok: false,
      issues: [{ path: "emulator.insecure", message: "unknown setting (expected caCert)" }, notPem],
    });
    expect(parseGcpKmsSettings({ apiEndpoint: "kms.example.com", emulator: { caCert: emulator.ca }, keyFilename: "/a" })).toEqual({
      ok: false,
      issues: [
        { path: "apiEndpoint", message: "with emulator, must be a loopback address (127.0.0.1, localhost or ::1)" },
        { path: "port", message: "with emulator, the emulator's port is required" },
        { path: "emulator", message: "an emulator takes no credentials: drop keyFilename / credentials" },
      ],
    });
  });

  it("gcpKmsProvider throws one KmsConfigError; a client excludes the settings that build one", () => {
    expect(() => gcpKmsProvider({ port: 0 })).toThrow(KmsConfigError);
    const client = new KeyManagementServiceClient(emulator.clientOptions());
    clients.push(client);
    expect(() => gcpKmsProvider({ client, apiEndpoint: "127.0.0.1" })).toThrow("give either client or the settings");
    expect(() => gcpKmsProvider({ client: {} as never })).toThrow("must be a KeyManagementServiceClient");
    expect(gcpKmsProvider({ client, timeoutMs: 50 }).id).toBe("gcp-kms");
  });

  it("the definition checks key ids at start-up; emulator: { caCert } reaches a local emulator over TLS from configuration", async () => {
    expect(gcpKms.keyIdProblem!("alias/app")).toBe(GCP_KEY_ID_RULE);
    expect(gcpKms.keyIdProblem!(keyName)).toBeUndefined();
    expect(() =>
      createKms({ registry: [gcpKms], config: { providers: { "gcp-kms": {} }, tenants: { defaultKey: { provider: "gcp-kms", keyId: "alias/app" } } }, env: {} }),
    ).toThrow(KmsConfigError);
    const kms = createKms({
      registry: [gcpKms],
      config: {
        providers: { "gcp-kms": { apiEndpoint: "127.0.0.1", port: emulator.port, emulator: { caCert: emulator.ca } } },
        tenants: { defaultKey: { provider: "gcp-kms", keyId: keyName } },
      },
      env: {},
    });
    try {
      expect((await kms.decrypt("tenant-a", await kms.encrypt("tenant-a", "hello"))).toString()).toBe("hello");
      expect(emulator.counts()).toEqual({ Encrypt: 1, Decrypt: 1 });
    } finally {
      await kms.close();
    }
  });

  it("emulator: { caCert } trusts that certificate only: with another emulator's, no call gets through", async () => {
    const other = new GcpKmsEmulator();
    await other.start();
    const p = gcpKmsProvider({ apiEndpoint: "127.0.0.1", port: emulator.port, emulator: { caCert: other.ca } });
    providers.push(p);
    try {
      // Counted around this call only: under a loaded CI, an earlier test's abandoned request can still land.
      const before = emulator.count();
      const error = await kmsErrorOf(p.describeKey(keyName));
      const reached = emulator.count() - before;
      expect(error.code).toBe("KMS_UNAVAILABLE");
      expect(error.message).toContain(`gcp-kms: GetCryptoKey on ${keyName} failed: Cloud KMS is unavailable (UNAVAILABLE): `);
      // grpc-js refused the emulator's certificate: the handshake failed, nothing was sent.
      expect((error.cause as { details?: unknown }).details).toBe("No connection established. Last error: Error: self-signed certificate. Resolution note: ");
      expect(reached).toBe(0);
    } finally {
      await other.stop();
    }
  });

  it("close() is idempotent; an injected client stays open for its owner", async () => {
    const client = new KeyManagementServiceClient(emulator.clientOptions());
    clients.push(client);
    const p = gcpKmsProvider({ client });
    await p.describeKey(keyName);
    await p.close();
    await p.close();
    expect((await kmsErrorOf(p.describeKey(keyName))).code).toBe("KMS_CLOSED");
    expect((await client.getCryptoKey({ name: keyName }))[0].name).toBe(keyName);
  });
});
