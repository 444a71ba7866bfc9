import { createRequire } from "node:module";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, jest } from "@jest/globals";
import { KeyManagementServiceClient } from "@google-cloud/kms";
import type * as grpc from "@grpc/grpc-js";
import { crc32c } from "@kms/core";
import { GCP_EMULATOR_IDENTITY, GCP_KMS_PERMISSIONS, GcpKmsEmulator } from "../src/emulators";
import { givenCertificate } from "./given-certificate";

const READER = "reader@emulator-project.iam.gserviceaccount.com";
const emulator = new GcpKmsEmulator({ identities: { [GCP_EMULATOR_IDENTITY]: "*", [READER]: [GCP_KMS_PERMISSIONS.Decrypt] } });
/** One attempt per call, as the provider makes them. */
const ONCE = { timeout: 5000, retry: null };
const clients: KeyManagementServiceClient[] = [];
let keyName: string;

function client(identity?: string): KeyManagementServiceClient {
  const c = new KeyManagementServiceClient(emulator.clientOptions(identity));
  clients.push(c);
  return c;
}

/** The gRPC status a call failed with: its numeric code and the server's message. */
async function statusOf(call: Promise<unknown>): Promise<{ code: number; details: string }> {
  try {
    await call;
  } catch (error) {
    const e = error as { code?: unknown; details?: unknown };
    return { code: e.code as number, details: e.details as string };
  }
  throw new Error("expected the call to fail");
}

/** The grpc-js instance the client uses (google-gax's): channel credentials must come from it. */
const clientGrpc = (createRequire(require.resolve("@google-cloud/kms"))("google-gax") as { grpc: typeof grpc }).grpc;

/** The IAM request type wants a protobuf class instance; a plain object is what goes on the wire. */
const iamRequest = (resource: string, permissions: string[]) => ({ resource, permissions }) as unknown as Parameters<KeyManagementServiceClient["testIamPermissions"]>[0];
const crc = (bytes: Uint8Array) => ({ value: String(crc32c(bytes)) });
const plaintext = Buffer.from("a data key of thirty-two bytes!!");
const aad = Buffer.from("tenant=a");

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
});

afterEach(() => {
  emulator.clearFaults();
  emulator.setPermissions(GCP_EMULATOR_IDENTITY, "*");
});

describe("gRPC over TLS with a per-client trusted certificate", () => {
  it("serves TLS with a certificate generated at start(); clientOptions() trusts it, with no call credentials", async () => {
    expect(emulator.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(emulator.ca).toMatch(/^-----BEGIN CERTIFICATE-----\n/);
    expect(emulator.clientOptions().sslCreds._isSecure()).toBe(true);
    const kms = client();
    // sslCreds are used as they are: Google credentials are never looked up (no ADC, no metadata server).
    const lookup = jest.spyOn(kms.auth, "getClient");
    expect((await kms.getCryptoKey({ name: keyName }, ONCE))[0].name).toBe(keyName);
    expect(lookup).not.toHaveBeenCalled();
    expect(emulator.requests).toEqual([{ operation: "GetCryptoKey", keyId: keyName, status: 200, identity: GCP_EMULATOR_IDENTITY }]);
  });

  it("refuses a plaintext client and one that does not trust its certificate: no call reaches it", async () => {
    for (const sslCreds of [clientGrpc.credentials.createInsecure(), clientGrpc.credentials.createSsl()]) {
      const c = new KeyManagementServiceClient({ ...emulator.clientOptions(), sslCreds });
      clients.push(c);
      expect((await statusOf(c.getCryptoKey({ name: keyName }, ONCE))).code).toBe(clientGrpc.status.UNAVAILABLE);
    }
    expect(emulator.count()).toBe(0);
    expect(process.env.NODE_TLS_REJECT_UNAUTHORIZED).toBeUndefined();
  });

  it("uses a certificate it is given, as is", async () => {
    const given = await givenCertificate();
    const own = new GcpKmsEmulator({ tls: given });
    await own.start();
    const c = new KeyManagementServiceClient(own.clientOptions());
    try {
      expect(own.ca).toBe(given.cert);
      const name = own.createKey("k");
      expect((await c.getCryptoKey({ name }, ONCE))[0].name).toBe(name);
    } finally {
      await c.close();
      await own.stop();
    }
  });
});

describe("Encrypt and Decrypt through @google-cloud/kms over gRPC", () => {
  it("round-trips with additional authenticated data; checksums are verified and always returned", async () => {
    const kms = client();
    const [encrypted] = await kms.encrypt(
      { name: keyName, plaintext, plaintextCrc32c: crc(plaintext), additionalAuthenticatedData: aad, additionalAuthenticatedDataCrc32c: crc(aad) },
      ONCE,
    );
    expect(encrypted).toMatchObject({ name: `${keyName}/cryptoKeyVersions/1`, verifiedPlaintextCrc32c: true, verifiedAdditionalAuthenticatedDataCrc32c: true, protectionLevel: "SOFTWARE" });
    const ciphertext = encrypted.ciphertext as Buffer;
    expect(Number(encrypted.ciphertextCrc32c?.value)).toBe(crc32c(ciphertext));
    expect(ciphertext.includes(plaintext)).toBe(false);
    const [decrypted] = await kms.decrypt({ name: keyName, ciphertext, ciphertextCrc32c: crc(ciphertext), additionalAuthenticatedData: aad }, ONCE);
    expect(Buffer.from(decrypted.plaintext as Buffer).equals(plaintext)).toBe(true);
    expect(Number(decrypted.plaintextCrc32c?.value)).toBe(crc32c(plaintext));
    expect(decrypted.usedPrimary).toBe(true);
    expect(emulator.requests).toEqual([
      { operation: "Encrypt", keyId: keyName, status: 200, identity: GCP_EMULATOR_IDENTITY },
      { operation: "Decrypt", keyId: keyName, status: 200, identity: GCP_EMULATOR_IDENTITY },
    ]);
  });

  it("without request checksums the verified flags are false; a mismatching checksum is INVALID_ARGUMENT", async () => {
    const kms = client();
    const [encrypted] = await kms.encrypt({ name: keyName, plaintext }, ONCE);
    expect({ p: encrypted.verifiedPlaintextCrc32c, a: encrypted.verifiedAdditionalAuthenticatedDataCrc32c }).toEqual({ p: false, a: false });
    expect(await statusOf(kms.encrypt({ name: keyName, plaintext, plaintextCrc32c: { value: String(crc32c(plaintext) ^ 1) } }, ONCE))).toEqual({
      code: 3,
      details: "The checksum in field plaintext_crc32c did not match the data in field plaintext.",
    });
    expect(await statusOf(kms.encrypt({ name: keyName, plaintext, additionalAuthenticatedData: aad, additionalAuthenticatedDataCrc32c: { value: "1" } }, ONCE))).toMatchObject({ code: 3 });
    expect(await statusOf(kms.decrypt({ name: keyName, ciphertext: encrypted.ciphertext, ciphertextCrc32c: { value: "1" } }, ONCE))).toEqual({
      code: 3,
      details: "The checksum in field ciphertext_crc32c did not match the data in field ciphertext.",
    });
    expect(emulator.requests.map((r) => r.status)).toEqual([200, 400, 400, 400]);
  });

  it("the ciphertext binds the AAD, its bytes and its key: any change is 'Decryption failed'", async () => {
    const kms = client();
    const [encrypted] = await kms.encrypt({ name: keyName, plaintext, additionalAuthenticatedData: aad }, ONCE);
    const ciphertext = encrypted.ciphertext as Buffer;
    const tampered = Buffer.from(ciphertext);
    tampered[20]! ^= 0x01;
    const other = emulator.createKey();
    const invalid = { code: 3, details: "Decryption failed: the ciphertext is invalid." };
    expect(await statusOf(kms.decrypt({ name: keyName, ciphertext, additionalAuthenticatedData: Buffer.from("tenant=b") }, ONCE))).toEqual(invalid);
    expect(await statusOf(kms.decrypt({ name: keyName, ciphertext }, ONCE))).toEqual(invalid);
    expect(await statusOf(kms.decrypt({ name: keyName, ciphertext: tampered, additionalAuthenticatedData: aad }, ONCE))).toEqual(invalid);
    expect(await statusOf(kms.decrypt({ name: keyName, ciphertext: ciphertext.subarray(0, 20), additionalAuthenticatedData: aad }, ONCE))).toEqual(invalid);
    expect(await statusOf(kms.decrypt({ name: other, ciphertext, additionalAuthenticatedData: aad }, ONCE))).toEqual(invalid);
    expect(await statusOf(kms.decrypt({ name: `${keyName}/cryptoKeyVersions/1`, ciphertext, additionalAuthenticatedData: aad }, ONCE))).toMatchObject({ code: 3 });
  });

  it("Encrypt takes a version name too; Decrypt finds the version in the ciphertext", async () => {
    const kms = client();
    emulator.rotate(keyName);
    const [v1] = await kms.encrypt({ name: `${keyName}/cryptoKeyVersions/1`, plaintext }, ONCE);
    expect(v1.name).toBe(`${keyName}/cryptoKeyVersions/1`);
    const [v2] = await kms.encrypt({ name: keyName, plaintext }, ONCE);
    expect(v2.name).toBe(`${keyName}/cryptoKeyVersions/2`);
    const [back] = await kms.decrypt({ name: keyName, ciphertext: v1.ciphertext }, ONCE);
    expect({ same: Buffer.from(back.plaintext as Buffer).equals(plaintext), usedPrimary: back.usedPrimary }).toEqual({ same: true, usedPrimary: false });
  });
});

describe("keys, versions and their states", () => {
  it("getCryptoKey, createCryptoKeyVersion, updateCryptoKeyPrimaryVersion, destroyCryptoKeyVersion", async () => {
    const kms = client();
    const [key] = await kms.getCryptoKey({ name: keyName }, ONCE);
    expect(key).toMatchObject({
      name: keyName,
      purpose: "ENCRYPT_DECRYPT",
      primary: { name: `${keyName}/cryptoKeyVersions/1`, state: "ENABLED", algorithm: "GOOGLE_SYMMETRIC_ENCRYPTION", protectionLevel: "SOFTWARE" },
    });
    expect(Number(key.createTime?.seconds)).toBeGreaterThan(0);
    const [created] = await kms.createCryptoKeyVersion({ parent: keyName, cryptoKeyVersion: {} }, ONCE);
    expect(created).toMatchObject({ name: `${keyName}/cryptoKeyVersions/2`, state: "ENABLED" });
    expect(emulator.key(keyName).primary).toBe(1); // a new version is not primary by itself
    const [updated] = await kms.updateCryptoKeyPrimaryVersion({ name: keyName, cryptoKeyVersionId: "2" }, ONCE);
    expect(updated.primary?.name).toBe(`${keyName}/cryptoKeyVersions/2`);
    const [destroyed] = await kms.destroyCryptoKeyVersion({ name: `${keyName}/cryptoKeyVersions/1` }, ONCE);
    expect(destroyed.state).toBe("DESTROYED");
    expect(emulator.key(keyName).versions.map((v) => v.state)).toEqual(["DESTROYED", "ENABLED"]);
    expect(await statusOf(kms.updateCryptoKeyPrimaryVersion({ name: keyName, cryptoKeyVersionId: "1" }, ONCE))).toMatchObject({ code: 9 });
    expect(await statusOf(kms.updateCryptoKeyPrimaryVersion({ name: keyName, cryptoKeyVersionId: "7" }, ONCE))).toMatchObject({ code: 5 });
    expect(emulator.counts()).toEqual({ GetCryptoKey: 1, CreateCryptoKeyVersion: 1, UpdateCryptoKeyPrimaryVersion: 3, DestroyCryptoKeyVersion: 1 });
  });

  it("a DISABLED or DESTROYED version refuses Encrypt and Decrypt with FAILED_PRECONDITION", async () => {
    const kms = client();
    const [encrypted] = await kms.encrypt({ name: keyName, plaintext }, ONCE);
    emulator.disableVersion(keyName);
    const disabled = { code: 9, details: `The request cannot be fulfilled. CryptoKeyVersion ${keyName}/cryptoKeyVersions/1 is not enabled, current state is: DISABLED.` };
    expect(await statusOf(kms.encrypt({ name: keyName, plaintext }, ONCE))).toEqual(disabled);
    expect(await statusOf(kms.decrypt({ name: keyName, ciphertext: encrypted.ciphertext }, ONCE))).toEqual(disabled);
    expect((await kms.getCryptoKey({ name: keyName }, ONCE))[0].primary?.state).toBe("DISABLED");
    emulator.enableVersion(keyName);
    expect((await kms.decrypt({ name: keyName, ciphertext: encrypted.ciphertext }, ONCE))[0].plaintext).toEqual(plaintext);
    emulator.destroyVersion(keyName);
    expect(await statusOf(kms.decrypt({ name: keyName, ciphertext: encrypted.ciphertext }, ONCE))).toMatchObject({ code: 9, details: expect.stringContaining("current state is: DESTROYED.") });
    expect(() => emulator.enableVersion(keyName)).toThrow(RangeError);
  });

  it("a key that does not exist is NOT_FOUND; a malformed name INVALID_ARGUMENT", async () => {
    const kms = client();
    const missing = emulator.keyName("missing");
    expect(await statusOf(kms.getCryptoKey({ name: missing }, ONCE))).toEqual({ code: 5, details: `CryptoKey ${missing} not found.` });
    expect(await statusOf(kms.encrypt({ name: "projects/p/keys/k", plaintext }, ONCE))).toMatchObject({ code: 3 });
    expect(emulator.requests.map((r) => r.status)).toEqual([404, 400]);
  });
});

describe("ListCryptoKeyVersions and UpdateCryptoKeyVersion (state)", () => {
  it("lists every version with its state, page by page; the page token is opaque to the client", async () => {
    const kms = client();
    emulator.rotate(keyName);
    emulator.rotate(keyName);
    emulator.destroyVersion(keyName, 1);
    const [all, next] = await kms.listCryptoKeyVersions({ parent: keyName }, { ...ONCE, autoPaginate: false });
    expect(all.map((v) => [v.name, v.state])).toEqual([
      [`${keyName}/cryptoKeyVersions/1`, "DESTROYED"],
      [`${keyName}/cryptoKeyVersions/2`, "ENABLED"],
      [`${keyName}/cryptoKeyVersions/3`, "ENABLED"],
    ]);
    expect(next).toBeNull();
    const [first, , page1] = await kms.listCryptoKeyVersions({ parent: keyName, pageSize: 2 }, { ...ONCE, autoPaginate: false });
    expect(first.map((v) => v.name)).toEqual([`${keyName}/cryptoKeyVersions/1`, `${keyName}/cryptoKeyVersions/2`]);
    const [second, , page2] = await kms.listCryptoKeyVersions({ parent: keyName, pageSize: 2, pageToken: page1.nextPageToken! }, { ...ONCE, autoPaginate: false });
    expect(second.map((v) => v.name)).toEqual([`${keyName}/cryptoKeyVersions/3`]);
    expect(page2.nextPageToken).toBe("");
    expect(await statusOf(kms.listCryptoKeyVersions({ parent: keyName, pageToken: "junk" }, { ...ONCE, autoPaginate: false }))).toMatchObject({ code: 3 });
    expect(await statusOf(kms.listCryptoKeyVersions({ parent: emulator.keyName("missing") }, { ...ONCE, autoPaginate: false }))).toMatchObject({ code: 5 });
    expect(emulator.counts()).toEqual({ ListCryptoKeyVersions: 5 });
  });

  it("updates a version's state ENABLED ⇄ DISABLED with update_mask state; DESTROYED is FAILED_PRECONDITION", async () => {
    const kms = client();
    const name = `${keyName}/cryptoKeyVersions/1`;
    const [encrypted] = await kms.encrypt({ name: keyName, plaintext }, ONCE);
    const [updated] = await kms.updateCryptoKeyVersion({ cryptoKeyVersion: { name, state: "DISABLED" }, updateMask: { paths: ["state"] } }, ONCE);
    expect([updated.name, updated.state]).toEqual([name, "DISABLED"]);
    expect(emulator.key(keyName).versions.map((v) => v.state)).toEqual(["DISABLED"]);
    expect(await statusOf(kms.decrypt({ name: keyName, ciphertext: encrypted.ciphertext }, ONCE))).toMatchObject({ code: 9, details: expect.stringContaining("current state is: DISABLED.") });
    await kms.updateCryptoKeyVersion({ cryptoKeyVersion: { name, state: "ENABLED" }, updateMask: { paths: ["state"] } }, ONCE);
    expect((await kms.decrypt({ name: keyName, ciphertext: encrypted.ciphertext }, ONCE))[0].plaintext).toEqual(plaintext);
    expect(await statusOf(kms.updateCryptoKeyVersion({ cryptoKeyVersion: { name, state: "DISABLED" } }, ONCE))).toMatchObject({ code: 3, details: expect.stringContaining("update_mask") });
    expect(await statusOf(kms.updateCryptoKeyVersion({ cryptoKeyVersion: { name, state: "DESTROYED" }, updateMask: { paths: ["state"] } }, ONCE))).toMatchObject({ code: 3 });
    expect(await statusOf(kms.updateCryptoKeyVersion({ cryptoKeyVersion: { name: `${keyName}/cryptoKeyVersions/9`, state: "DISABLED" }, updateMask: { paths: ["state"] } }, ONCE))).toMatchObject({ code: 5 });
    emulator.destroyVersion(keyName);
    expect(await statusOf(kms.updateCryptoKeyVersion({ cryptoKeyVersion: { name, state: "ENABLED" }, updateMask: { paths: ["state"] } }, ONCE))).toMatchObject({ code: 9, details: expect.stringContaining("current state is: DESTROYED.") });
    expect(emulator.count("UpdateCryptoKeyVersion")).toBe(6);
    expect(emulator.requests.filter((r) => r.operation === "UpdateCryptoKeyVersion")[0]).toMatchObject({ keyId: name, status: 200 });
  });

  it("each needs its own permission: cloudkms.cryptoKeyVersions.list / .update", async () => {
    const kms = client(READER);
    const name = `${keyName}/cryptoKeyVersions/1`;
    expect(await statusOf(kms.listCryptoKeyVersions({ parent: keyName }, { ...ONCE, autoPaginate: false }))).toEqual({
      code: 7,
      details: `Permission 'cloudkms.cryptoKeyVersions.list' denied on resource '${keyName}' (or it may not exist).`,
    });
    expect(await statusOf(kms.updateCryptoKeyVersion({ cryptoKeyVersion: { name, state: "DISABLED" }, updateMask: { paths: ["state"] } }, ONCE))).toEqual({
      code: 7,
      details: `Permission 'cloudkms.cryptoKeyVersions.update' denied on resource '${name}' (or it may not exist).`,
    });
    expect(emulator.key(keyName).versions.map((v) => v.state)).toEqual(["ENABLED"]);
  });
});

describe("IAM per identity", () => {
  it("a missing permission is PERMISSION_DENIED with Google's message, also for a key that does not exist", async () => {
    const reader = client(READER);
    expect(await statusOf(reader.encrypt({ name: keyName, plaintext }, ONCE))).toEqual({
      code: 7,
      details: `Permission 'cloudkms.cryptoKeyVersions.useToEncrypt' denied on resource '${keyName}' (or it may not exist).`,
    });
    const missing = emulator.keyName("missing");
    expect(await statusOf(reader.getCryptoKey({ name: missing }, ONCE))).toEqual({
      code: 7,
      details: `Permission 'cloudkms.cryptoKeys.get' denied on resource '${missing}' (or it may not exist).`,
    });
    const [encrypted] = await client().encrypt({ name: keyName, plaintext }, ONCE);
    expect((await reader.decrypt({ name: keyName, ciphertext: encrypted.ciphertext }, ONCE))[0].plaintext).toEqual(plaintext);
    expect(emulator.requests.map((r) => `${r.operation} ${r.status} ${r.identity}`)).toEqual([
      `Encrypt 403 ${READER}`,
      `GetCryptoKey 403 ${READER}`,
      `Encrypt 200 ${GCP_EMULATOR_IDENTITY}`,
      `Decrypt 200 ${READER}`,
    ]);
  });

  it("setPermissions changes them at run time; an unknown identity is UNAUTHENTICATED", async () => {
    const kms = client();
    emulator.setPermissions(GCP_EMULATOR_IDENTITY, []);
    expect(await statusOf(kms.getCryptoKey({ name: keyName }, ONCE))).toMatchObject({ code: 7 });
    emulator.setPermissions(GCP_EMULATOR_IDENTITY, [GCP_KMS_PERMISSIONS.GetCryptoKey]);
    expect((await kms.getCryptoKey({ name: keyName }, ONCE))[0].name).toBe(keyName);
    expect(() => emulator.clientOptions("nobody")).toThrow(RangeError);
    expect(() => new GcpKmsEmulator().clientOptions()).toThrow("gcp-kms emulator: not started");
    // A credential the service does not know (clientOptions refuses one, so the user-agent is set by hand).
    const nobody = new KeyManagementServiceClient({ ...emulator.clientOptions(), "grpc.primary_user_agent": "kms-emulator-identity/nobody" });
    clients.push(nobody);
    expect(await statusOf(nobody.getCryptoKey({ name: keyName }, ONCE))).toMatchObject({ code: 16 });
    expect(emulator.requests.map((r) => `${r.status} ${r.identity ?? "-"}`)).toEqual([`403 ${GCP_EMULATOR_IDENTITY}`, `200 ${GCP_EMULATOR_IDENTITY}`, "401 -"]);
  });

  it("testIamPermissions goes over the same channel and returns the permissions held", async () => {
    const reader = client(READER);
    const asked: string[] = [GCP_KMS_PERMISSIONS.Encrypt, GCP_KMS_PERMISSIONS.Decrypt, GCP_KMS_PERMISSIONS.GetCryptoKey];
    const [held] = await reader.testIamPermissions(iamRequest(keyName, asked), ONCE);
    expect(held.permissions).toEqual([GCP_KMS_PERMISSIONS.Decrypt]);
    const [all] = await client().testIamPermissions(iamRequest(keyName, asked), ONCE);
    expect(all.permissions).toEqual(asked);
    expect(await statusOf(reader.testIamPermissions(iamRequest(emulator.keyName("missing"), asked), ONCE))).toMatchObject({ code: 5 });
    expect(emulator.requests.map((r) => `${r.operation} ${r.status}`)).toEqual(["TestIamPermissions 200", "TestIamPermissions 200", "TestIamPermissions 404"]);
  });

  it("methods it does not serve are UNIMPLEMENTED, and never reach the log", async () => {
    expect(await statusOf(client().listKeyRings({ parent: "projects/p/locations/global" }, ONCE))).toMatchObject({ code: 12 });
    expect(emulator.count()).toBe(0);
  });
});

describe("faults", () => {
  it("each decisive fault answers with its gRPC status, logged under Google's HTTP status", async () => {
    const kms = client();
    const cases = [
      [{ kind: "throttle" }, 8, 429],
      [{ kind: "serverError", status: 503 }, 14, 503],
      [{ kind: "serverError" }, 13, 500],
      [{ kind: "accessDenied" }, 7, 403],
      [{ kind: "keyDisabled" }, 9, 400],
      [{ kind: "keyNotFound" }, 5, 404],
    ] as const;
    for (const [fault, code] of cases) {
      emulator.inject("Encrypt", fault, { times: 1 });
      expect({ fault: fault.kind, code: (await statusOf(kms.encrypt({ name: keyName, plaintext }, ONCE))).code }).toEqual({ fault: fault.kind, code });
    }
    expect(emulator.requests.map((r) => [r.status, r.fault])).toEqual(cases.map(([fault, , status]) => [status, fault.kind]));
  });

  it("connectionReset drops the connection: UNAVAILABLE 'Connection dropped'", async () => {
    const kms = client();
    emulator.inject("GetCryptoKey", { kind: "connectionReset" }, { times: 1 });
    expect(await statusOf(kms.getCryptoKey({ name: keyName }, ONCE))).toMatchObject({ code: 14 });
    expect((await kms.getCryptoKey({ name: keyName }, ONCE))[0].name).toBe(keyName);
    expect(emulator.requests.map((r) => [r.status, r.fault])).toEqual([
      [0, "connectionReset"],
      [200, undefined],
    ]);
  });

  it("latency past the call's deadline is DEADLINE_EXCEEDED; the request is pending meanwhile", async () => {
    const kms = client();
    emulator.inject("GetCryptoKey", { kind: "latency", ms: 60_000 }, { times: 1 });
    const slow = statusOf(kms.getCryptoKey({ name: keyName }, { timeout: 300, retry: null }));
    expect(await slow).toMatchObject({ code: 4 });
    expect(emulator.pending).toBe(1);
    await emulator.outage().then((restore) => restore()); // releases the sleeping request
    expect(emulator.requests).toEqual([{ operation: "GetCryptoKey", keyId: keyName, status: 0, fault: "latency", identity: GCP_EMULATOR_IDENTITY }]);
  });

  it("an outage refuses connections until restored, then serves on the same port", async () => {
    const kms = client();
    await kms.getCryptoKey({ name: keyName }, ONCE);
    const port = emulator.port;
    const restore = await emulator.outage();
    expect(await statusOf(kms.getCryptoKey({ name: keyName }, ONCE))).toMatchObject({ code: 14 });
    await restore();
    expect(emulator.port).toBe(port);
    const fresh = client(); // its own subchannel pool: no backoff inherited from the outage
    expect((await fresh.getCryptoKey({ name: keyName }, ONCE))[0].name).toBe(keyName);
    expect(emulator.counts()).toEqual({ GetCryptoKey: 2 });
  });

  it("corruptResponses flips a payload byte but keeps the checksum, drops verified flags, or names another key", async () => {
    const kms = client();
    const withCrc = { name: keyName, plaintext, plaintextCrc32c: crc(plaintext), additionalAuthenticatedData: aad, additionalAuthenticatedDataCrc32c: crc(aad) };
    emulator.corruptResponses("Encrypt");
    const [flipped] = await kms.encrypt(withCrc, ONCE);
    expect(Number(flipped.ciphertextCrc32c?.value)).not.toBe(crc32c(flipped.ciphertext as Buffer));
    const [good] = await kms.encrypt(withCrc, ONCE);
    expect(Number(good.ciphertextCrc32c?.value)).toBe(crc32c(good.ciphertext as Buffer));
    emulator.corruptResponses("Decrypt", { times: 2 });
    for (let i = 0; i < 2; i++) {
      const [bad] = await kms.decrypt({ name: keyName, ciphertext: good.ciphertext, additionalAuthenticatedData: aad }, ONCE);
      expect(Number(bad.plaintextCrc32c?.value)).toBe(crc32c(plaintext));
      expect(Buffer.from(bad.plaintext as Buffer).equals(plaintext)).toBe(false);
    }
    emulator.corruptResponses("Encrypt", { how: "unverified" });
    expect((await kms.encrypt(withCrc, ONCE))[0]).toMatchObject({ verifiedPlaintextCrc32c: false, verifiedAdditionalAuthenticatedDataCrc32c: false });
    emulator.corruptResponses("Decrypt", { how: "unverified" });
    expect((await kms.decrypt({ name: keyName, ciphertext: good.ciphertext, additionalAuthenticatedData: aad }, ONCE))[0].plaintextCrc32c).toBeNull();
    emulator.corruptResponses("Encrypt", { how: "foreignName" });
    expect((await kms.encrypt(withCrc, ONCE))[0].name).toBe(`${emulator.keyName("another-key")}/cryptoKeyVersions/1`);
    expect(() => emulator.corruptResponses("Encrypt", { times: 0 })).toThrow(RangeError);
  });
});

describe("construction", () => {
  it("refuses bad resource name parts; ca and clientOptions() need start()", () => {
    expect(() => new GcpKmsEmulator({ project: "a/b" })).toThrow(RangeError);
    const idle = new GcpKmsEmulator();
    expect(() => idle.ca).toThrow("gcp-kms emulator: not started");
    expect(() => idle.clientOptions()).toThrow("gcp-kms emulator: not started");
  });

  it("names keys in its key ring and refuses duplicates", () => {
    const local = new GcpKmsEmulator({ project: "p1", location: "europe-west1", keyRing: "ring" });
    expect(local.createKey("k")).toBe("projects/p1/locations/europe-west1/keyRings/ring/cryptoKeys/k");
    expect(() => local.createKey("k")).toThrow(RangeError);
    expect(local.key("k")).toEqual({ name: local.keyName("k"), primary: 1, versions: [{ version: 1, name: `${local.keyName("k")}/cryptoKeyVersions/1`, state: "ENABLED" }] });
    expect(local.rotate("k")).toBe(`${local.keyName("k")}/cryptoKeyVersions/2`);
    expect(local.key("k").primary).toBe(2);
    expect(() => local.key("nope")).toThrow(RangeError);
  });
});
