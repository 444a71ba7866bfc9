// The SDK warns once per process on Node 20 (it will require Node 22 from 2027); not under test here.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = "true";

import { request as httpRequest } from "node:http";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "@jest/globals";
import {
  CreateAliasCommand,
  CreateKeyCommand,
  DecryptCommand,
  DescribeKeyCommand,
  DisableKeyCommand,
  DisableKeyRotationCommand,
  EnableKeyCommand,
  EnableKeyRotationCommand,
  EncryptCommand,
  GenerateDataKeyCommand,
  GetKeyRotationStatusCommand,
  KMSClient,
  type KMSClientConfig,
  ListAliasesCommand,
  ListKeyRotationsCommand,
  RotateKeyOnDemandCommand,
  ScheduleKeyDeletionCommand,
} from "@aws-sdk/client-kms";
import { AWS_EMULATOR_IDENTITY, AwsKmsEmulator } from "../src/emulators/aws";

const ACCOUNT = "111122223333";
const REGION = "us-east-1";
const LIMITED = { accessKeyId: "AKIALIMITED000000001", secretAccessKey: "limited-secret", principal: `arn:aws:iam::${ACCOUNT}:role/limited` };
const TEMPORARY = { accessKeyId: "ASIATEMPORARY0000001", secretAccessKey: "temporary-secret", sessionToken: "session-token-1" };
const START = new Date("2025-01-02T03:04:05.000Z");

let now = START;
const emulator = new AwsKmsEmulator({
  now: () => now,
  credentials: [AWS_EMULATOR_IDENTITY, { ...LIMITED, allow: ["kms:DescribeKey"] }, TEMPORARY],
});
const clients: KMSClient[] = [];

/** A client with SDK retries off (so counts are exact), destroyed after the file. */
function client(overrides: Partial<KMSClientConfig> = {}): KMSClient {
  const c = new KMSClient({ ...emulator.clientConfig(), maxAttempts: 1, ...overrides });
  clients.push(c);
  return c;
}

let kms: KMSClient;

beforeAll(async () => {
  await emulator.start();
  kms = client();
});

afterAll(async () => {
  for (const c of clients) c.destroy();
  await emulator.stop();
});

beforeEach(() => {
  emulator.clearFaults();
  emulator.resetLog();
  emulator.setAllowedActions(LIMITED.accessKeyId, ["kms:DescribeKey"]);
  now = START;
});

/** The SDK error a call rejects with (fails the test if it resolves). */
async function sdkError(promise: Promise<unknown>): Promise<{ name: string; message: string; $metadata: { httpStatusCode?: number; requestId?: string } }> {
  try {
    await promise;
  } catch (error) {
    return error as never;
  }
  throw new Error("expected the call to fail");
}

/** name, status and message of an SDK error, for one exact assertion. */
async function failure(promise: Promise<unknown>): Promise<{ name: string; status: number | undefined; message: string }> {
  const error = await sdkError(promise);
  return { name: error.name, status: error.$metadata.httpStatusCode, message: error.message };
}

interface RawAnswer {
  status: number;
  body: Record<string, unknown> | undefined;
  headers: Record<string, string | string[] | undefined>;
}

/** An unsigned request on a fresh connection, for what the SDK never sends. */
function raw(method: string, path: string, headers: Record<string, string>, body = ""): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${emulator.url}${path}`, { method, agent: false, headers: { ...headers, "content-length": Buffer.byteLength(body) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        resolve({ status: res.statusCode ?? 0, body: text === "" ? undefined : (JSON.parse(text) as Record<string, unknown>), headers: res.headers });
      });
    });
    req.on("error", reject);
    req.end(body);
  });
}

/** A key id of the right form that names no key. */
const NO_SUCH_KEY = "0b0e0b0e-0000-4000-8000-000000000000";
const arnOf = (keyId: string) => `arn:aws:kms:${REGION}:${ACCOUNT}:key/${keyId}`;
const CONTEXT = { "kms:tenant": "tenant-a", purpose: "test" };

describe("operations", () => {
  it("GenerateDataKey: AES_256, AES_128 and NumberOfBytes; the blob decrypts without a KeyId", async () => {
    const { keyId, arn } = emulator.createKey({ alias: "gdk" });
    const [materialId] = emulator.key(keyId).keyMaterialIds;
    for (const [request, length] of [[{ KeySpec: "AES_256" as const }, 32], [{ KeySpec: "AES_128" as const }, 16], [{ NumberOfBytes: 7 }, 7]] as const) {
      const out = await kms.send(new GenerateDataKeyCommand({ KeyId: "alias/gdk", EncryptionContext: CONTEXT, ...request }));
      expect({ keyId: out.KeyId, length: out.Plaintext?.length, materialId: out.KeyMaterialId }).toEqual({ keyId: arn, length, materialId });
      const back = await kms.send(new DecryptCommand({ CiphertextBlob: out.CiphertextBlob, EncryptionContext: CONTEXT }));
      expect(Buffer.from(back.Plaintext!).equals(Buffer.from(out.Plaintext!))).toBe(true);
      expect({ keyId: back.KeyId, algorithm: back.EncryptionAlgorithm, materialId: back.KeyMaterialId }).toEqual({ keyId: arn, algorithm: "SYMMETRIC_DEFAULT", materialId });
    }
    const a = await kms.send(new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: "AES_256" }));
    const b = await kms.send(new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: "AES_256" }));
    expect(Buffer.from(a.Plaintext!).equals(Buffer.from(b.Plaintext!))).toBe(false);
  });

  it("GenerateDataKey: exactly one of KeySpec and NumberOfBytes, in range", async () => {
    const { keyId } = emulator.createKey();
    const invalid = async (request: object) => (await failure(kms.send(new GenerateDataKeyCommand({ KeyId: keyId, ...request })))).name;
    expect(await invalid({})).toBe("ValidationException");
    expect(await invalid({ KeySpec: "AES_256", NumberOfBytes: 32 })).toBe("ValidationException");
    expect(await invalid({ NumberOfBytes: 0 })).toBe("ValidationException");
    expect(await invalid({ NumberOfBytes: 1025 })).toBe("ValidationException");
    expect(await invalid({ KeySpec: "AES_512" })).toBe("ValidationException");
    expect((await kms.send(new GenerateDataKeyCommand({ KeyId: keyId, NumberOfBytes: 1024 }))).Plaintext).toHaveLength(1024);
  });

  it("Encrypt / Decrypt: up to 4096 bytes; Decrypt with the KeyId of another key is IncorrectKeyException", async () => {
    const { keyId, arn } = emulator.createKey({ alias: "enc" });
    const other = emulator.createKey();
    const plaintext = Buffer.alloc(4096, 7);
    const out = await kms.send(new EncryptCommand({ KeyId: keyId, Plaintext: plaintext, EncryptionContext: CONTEXT }));
    expect({ keyId: out.KeyId, algorithm: out.EncryptionAlgorithm }).toEqual({ keyId: arn, algorithm: "SYMMETRIC_DEFAULT" });
    const back = await kms.send(new DecryptCommand({ KeyId: "alias/enc", CiphertextBlob: out.CiphertextBlob, EncryptionContext: CONTEXT }));
    expect(Buffer.from(back.Plaintext!).equals(plaintext)).toBe(true);
    expect(await failure(kms.send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.alloc(4097) })))).toEqual({
      name: "ValidationException",
      status: 400,
      message: "1 validation error detected: Value at 'plaintext' failed to satisfy constraint: Member must have length between 1 and 4096",
    });
    expect(await failure(kms.send(new DecryptCommand({ KeyId: other.keyId, CiphertextBlob: out.CiphertextBlob, EncryptionContext: CONTEXT })))).toEqual({
      name: "IncorrectKeyException",
      status: 400,
      message: "The key ID in the request does not identify a CMK that can perform this operation.",
    });
  });

  it("DescribeKey: the KeyMetadata fields, timestamps as dates, CurrentKeyMaterialId", async () => {
    const { keyId, arn } = emulator.createKey({ description: "tenant keys" });
    const { KeyMetadata } = await kms.send(new DescribeKeyCommand({ KeyId: keyId }));
    expect(KeyMetadata).toEqual({
      AWSAccountId: ACCOUNT,
      KeyId: keyId,
      Arn: arn,
      CreationDate: START,
      Enabled: true,
      Description: "tenant keys",
      KeyUsage: "ENCRYPT_DECRYPT",
      KeyState: "Enabled",
      Origin: "AWS_KMS",
      KeyManager: "CUSTOMER",
      CustomerMasterKeySpec: "SYMMETRIC_DEFAULT",
      KeySpec: "SYMMETRIC_DEFAULT",
      EncryptionAlgorithms: ["SYMMETRIC_DEFAULT"],
      MultiRegion: false,
      CurrentKeyMaterialId: emulator.key(keyId).keyMaterialIds[0],
    });
  });

  it("CreateKey makes symmetric keys only", async () => {
    const { KeyMetadata } = await kms.send(new CreateKeyCommand({ Description: "made by the SDK", KeyUsage: "ENCRYPT_DECRYPT", Tags: [{ TagKey: "a", TagValue: "b" }] }));
    expect(KeyMetadata?.KeyId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    expect(KeyMetadata?.Arn).toBe(arnOf(KeyMetadata!.KeyId!));
    expect(emulator.key(KeyMetadata!.KeyId!).state).toBe("Enabled");
    expect((await failure(kms.send(new CreateKeyCommand({ KeySpec: "RSA_2048", KeyUsage: "SIGN_VERIFY" })))).name).toBe("UnsupportedOperationException");
  });

  it("CreateAlias / ListAliases: aliases point at keys, page with Limit and Marker", async () => {
    const { keyId } = emulator.createKey();
    await kms.send(new CreateAliasCommand({ AliasName: "alias/first", TargetKeyId: keyId }));
    await kms.send(new CreateAliasCommand({ AliasName: "alias/second", TargetKeyId: arnOf(keyId) }));
    const page1 = await kms.send(new ListAliasesCommand({ KeyId: keyId, Limit: 1 }));
    expect(page1.Aliases).toEqual([
      { AliasName: "alias/first", AliasArn: `arn:aws:kms:${REGION}:${ACCOUNT}:alias/first`, TargetKeyId: keyId, CreationDate: START, LastUpdatedDate: START },
    ]);
    expect(page1.Truncated).toBe(true);
    const page2 = await kms.send(new ListAliasesCommand({ KeyId: keyId, Limit: 1, Marker: page1.NextMarker }));
    expect({ names: page2.Aliases?.map((a) => a.AliasName), truncated: page2.Truncated, next: page2.NextMarker }).toEqual({ names: ["alias/second"], truncated: false, next: undefined });
    expect(await failure(kms.send(new CreateAliasCommand({ AliasName: "alias/first", TargetKeyId: keyId })))).toEqual({
      name: "AlreadyExistsException",
      status: 400,
      message: `An alias with the name arn:aws:kms:${REGION}:${ACCOUNT}:alias/first already exists`,
    });
    expect((await failure(kms.send(new CreateAliasCommand({ AliasName: "alias/third", TargetKeyId: "alias/first" })))).name).toBe("ValidationException");
    expect((await failure(kms.send(new CreateAliasCommand({ AliasName: "alias/aws/s3", TargetKeyId: keyId })))).name).toBe("NotAuthorizedException");
    expect((await failure(kms.send(new CreateAliasCommand({ AliasName: "no-prefix", TargetKeyId: keyId })))).name).toBe("ValidationException");
  });

  it("DisableKey / EnableKey: a disabled key refuses cryptography with DisabledException", async () => {
    const { keyId, arn } = emulator.createKey();
    const blob = (await kms.send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.from("x") }))).CiphertextBlob;
    await kms.send(new DisableKeyCommand({ KeyId: keyId }));
    const disabled = { name: "DisabledException", status: 400, message: `${arn} is disabled.` };
    expect(await failure(kms.send(new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: "AES_256" })))).toEqual(disabled);
    expect(await failure(kms.send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.from("x") })))).toEqual(disabled);
    expect(await failure(kms.send(new DecryptCommand({ CiphertextBlob: blob })))).toEqual(disabled);
    expect(await failure(kms.send(new RotateKeyOnDemandCommand({ KeyId: keyId })))).toEqual(disabled);
    const { KeyMetadata } = await kms.send(new DescribeKeyCommand({ KeyId: keyId }));
    expect({ enabled: KeyMetadata?.Enabled, state: KeyMetadata?.KeyState }).toEqual({ enabled: false, state: "Disabled" });
    await kms.send(new EnableKeyCommand({ KeyId: keyId }));
    expect(Buffer.from((await kms.send(new DecryptCommand({ CiphertextBlob: blob }))).Plaintext!).toString()).toBe("x");
  });

  it("ScheduleKeyDeletion: the key is PendingDeletion and refuses cryptography with KMSInvalidStateException", async () => {
    const { keyId, arn } = emulator.createKey();
    const scheduled = await kms.send(new ScheduleKeyDeletionCommand({ KeyId: keyId, PendingWindowInDays: 7 }));
    const deletionDate = new Date(START.getTime() + 7 * 86_400_000);
    expect({ ...scheduled, $metadata: undefined }).toEqual({ $metadata: undefined, KeyId: arn, DeletionDate: deletionDate, KeyState: "PendingDeletion", PendingWindowInDays: 7 });
    const pending = { name: "KMSInvalidStateException", status: 400, message: `${arn} is pending deletion.` };
    expect(await failure(kms.send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.from("x") })))).toEqual(pending);
    expect(await failure(kms.send(new EnableKeyCommand({ KeyId: keyId })))).toEqual(pending);
    expect(await failure(kms.send(new ScheduleKeyDeletionCommand({ KeyId: keyId })))).toEqual(pending);
    const { KeyMetadata } = await kms.send(new DescribeKeyCommand({ KeyId: keyId }));
    expect({ state: KeyMetadata?.KeyState, enabled: KeyMetadata?.Enabled, deletion: KeyMetadata?.DeletionDate }).toEqual({ state: "PendingDeletion", enabled: false, deletion: deletionDate });
  });

  it("crypto-shredding: DisableKey and ScheduleKeyDeletion need their own IAM actions, answer with a request id, and stop GenerateDataKey and Decrypt", async () => {
    const { keyId, arn } = emulator.createKey();
    const limited = client(emulator.clientConfig(LIMITED.accessKeyId));
    emulator.setAllowedActions(LIMITED.accessKeyId, ["kms:DescribeKey", "kms:GenerateDataKey", "kms:Encrypt", "kms:Decrypt"]);
    const denied = (action: string) => ({
      name: "AccessDeniedException",
      status: 400,
      message: `User: ${LIMITED.principal} is not authorized to perform: ${action} on resource: ${arn} because no identity-based policy allows the ${action} action`,
    });
    expect(await failure(limited.send(new DisableKeyCommand({ KeyId: keyId })))).toEqual(denied("kms:DisableKey"));
    expect(await failure(limited.send(new ScheduleKeyDeletionCommand({ KeyId: keyId })))).toEqual(denied("kms:ScheduleKeyDeletion"));
    expect(emulator.key(keyId).state).toBe("Enabled");
    const { CiphertextBlob: blob } = await limited.send(new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: "AES_256" }));

    const disabled = await kms.send(new DisableKeyCommand({ KeyId: arn }));
    expect(disabled.$metadata.requestId).toMatch(/^[0-9a-f-]{36}$/);
    const off = { name: "DisabledException", status: 400, message: `${arn} is disabled.` };
    expect(await failure(limited.send(new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: "AES_256" })))).toEqual(off);
    expect(await failure(limited.send(new DecryptCommand({ KeyId: keyId, CiphertextBlob: blob })))).toEqual(off);

    // A disabled key can still be scheduled for deletion; the window is 7–30 days, 30 by default.
    expect((await failure(kms.send(new ScheduleKeyDeletionCommand({ KeyId: keyId, PendingWindowInDays: 6 })))).name).toBe("ValidationException");
    expect((await failure(kms.send(new ScheduleKeyDeletionCommand({ KeyId: keyId, PendingWindowInDays: 31 })))).name).toBe("ValidationException");
    const scheduled = await kms.send(new ScheduleKeyDeletionCommand({ KeyId: keyId }));
    expect({ window: scheduled.PendingWindowInDays, date: scheduled.DeletionDate, id: typeof scheduled.$metadata.requestId }).toEqual({
      window: 30,
      date: new Date(START.getTime() + 30 * 86_400_000),
      id: "string",
    });
    const pending = { name: "KMSInvalidStateException", status: 400, message: `${arn} is pending deletion.` };
    expect(await failure(limited.send(new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: "AES_256" })))).toEqual(pending);
    expect(await failure(limited.send(new DecryptCommand({ KeyId: keyId, CiphertextBlob: blob })))).toEqual(pending);
    expect(await failure(kms.send(new DisableKeyCommand({ KeyId: keyId })))).toEqual(pending);
    expect(emulator.counts()).toEqual({ DisableKey: 3, ScheduleKeyDeletion: 4, GenerateDataKey: 3, Decrypt: 2 });
  });

  it("rotation: status, on-demand rotation to a new KeyMaterialId; old blobs still decrypt", async () => {
    const { keyId, arn } = emulator.createKey();
    const status = async () => {
      const { $metadata: _, ...rest } = await kms.send(new GetKeyRotationStatusCommand({ KeyId: keyId }));
      return rest;
    };
    expect(await status()).toEqual({ KeyRotationEnabled: false, KeyId: arn });
    await kms.send(new EnableKeyRotationCommand({ KeyId: keyId, RotationPeriodInDays: 180 }));
    expect(await status()).toEqual({ KeyRotationEnabled: true, KeyId: arn, RotationPeriodInDays: 180, NextRotationDate: new Date(START.getTime() + 180 * 86_400_000) });
    await kms.send(new DisableKeyRotationCommand({ KeyId: keyId }));
    expect((await status()).KeyRotationEnabled).toBe(false);

    const before = await kms.send(new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: "AES_256", EncryptionContext: CONTEXT }));
    expect((await kms.send(new RotateKeyOnDemandCommand({ KeyId: keyId }))).KeyId).toBe(arn);
    const ids = emulator.key(keyId).keyMaterialIds;
    expect(ids).toHaveLength(2);
    expect((await kms.send(new DescribeKeyCommand({ KeyId: keyId }))).KeyMetadata?.CurrentKeyMaterialId).toBe(ids[1]);
    const after = await kms.send(new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: "AES_256", EncryptionContext: CONTEXT }));
    expect([before.KeyMaterialId, after.KeyMaterialId]).toEqual(ids);
    const old = await kms.send(new DecryptCommand({ KeyId: keyId, CiphertextBlob: before.CiphertextBlob, EncryptionContext: CONTEXT }));
    expect({ same: Buffer.from(old.Plaintext!).equals(Buffer.from(before.Plaintext!)), materialId: old.KeyMaterialId }).toEqual({ same: true, materialId: ids[0] });
    expect(emulator.rotate(keyId)).toBe(emulator.key(keyId).keyMaterialIds[2]);
  });

  it("ListKeyRotations: each completed rotation, oldest first, dated by the emulator's clock, with its type and key material", async () => {
    const { keyId, arn } = emulator.createKey({ alias: "listed" });
    const list = async (request: { KeyId?: string; Limit?: number; Marker?: string; IncludeKeyMaterial?: "ALL_KEY_MATERIAL" | "ROTATIONS_ONLY" } = {}) => {
      const { $metadata: _, ...rest } = await kms.send(new ListKeyRotationsCommand({ KeyId: keyId, ...request }));
      return rest;
    };
    // Never rotated: no rotations (the first key material is not one).
    expect(await list()).toEqual({ Rotations: [], Truncated: false });

    const day = (n: number) => new Date(START.getTime() + n * 86_400_000);
    now = day(90);
    const automatic = emulator.rotate(keyId); // AWS's scheduled rotation
    now = day(100);
    await kms.send(new RotateKeyOnDemandCommand({ KeyId: arn }));
    now = day(120);
    const third = emulator.rotate(keyId, "ON_DEMAND");
    const [first, , onDemand] = emulator.key(keyId).keyMaterialIds;
    const entry = (keyMaterialId: string, rotationDate: Date, rotationType: string, current = false) => ({
      KeyId: keyId,
      KeyMaterialId: keyMaterialId,
      KeyMaterialState: current ? "CURRENT" : "NON_CURRENT",
      RotationDate: rotationDate,
      RotationType: rotationType,
    });
    const all = [entry(automatic, day(90), "AUTOMATIC"), entry(onDemand!, day(100), "ON_DEMAND"), entry(third, day(120), "ON_DEMAND", true)];
    expect(await list()).toEqual({ Rotations: all, Truncated: false });
    expect(emulator.key(keyId).rotations).toEqual([
      { keyMaterialId: automatic, rotationDate: day(90), rotationType: "AUTOMATIC" },
      { keyMaterialId: onDemand, rotationDate: day(100), rotationType: "ON_DEMAND" },
      { keyMaterialId: third, rotationDate: day(120), rotationType: "ON_DEMAND" },
    ]);
    expect((await kms.send(new DescribeKeyCommand({ KeyId: keyId }))).KeyMetadata?.CurrentKeyMaterialId).toBe(third);

    // Pages of Limit, each pointing at the next with NextMarker; any key id form resolves.
    const page1 = await list({ KeyId: arn, Limit: 2 });
    expect(page1).toEqual({ Rotations: all.slice(0, 2), Truncated: true, NextMarker: "2" });
    expect(await list({ KeyId: "alias/listed", Limit: 2, Marker: page1.NextMarker })).toEqual({ Rotations: all.slice(2), Truncated: false });
    // ALL_KEY_MATERIAL adds the first key material, without a rotation date or type.
    expect((await list({ IncludeKeyMaterial: "ALL_KEY_MATERIAL", Limit: 1 })).Rotations).toEqual([{ KeyId: keyId, KeyMaterialId: first, KeyMaterialState: "NON_CURRENT" }]);

    // It reads metadata only: a disabled key answers too.
    emulator.disableKey(keyId);
    expect((await list()).Rotations).toHaveLength(3);
    emulator.enableKey(keyId);

    const invalid = async (request: object) => (await failure(kms.send(new ListKeyRotationsCommand({ KeyId: keyId, ...request })))).name;
    expect(await invalid({ Limit: 0 })).toBe("ValidationException");
    expect(await invalid({ Limit: 1001 })).toBe("ValidationException");
    expect(await invalid({ Marker: "not-a-marker" })).toBe("InvalidMarkerException");
    expect(await invalid({ IncludeKeyMaterial: "EVERYTHING" })).toBe("ValidationException");
    expect(await invalid({ KeyId: NO_SUCH_KEY })).toBe("NotFoundException");
    expect(() => emulator.rotate(keyId, "SCHEDULED" as never)).toThrow("rotation type must be AUTOMATIC or ON_DEMAND, not SCHEDULED");
  });

  it("an unknown target is UnsupportedOperationException; anything but POST / is refused", async () => {
    const headers = { "content-type": "application/x-amz-json-1.1" };
    const unknown = await raw("POST", "/", { ...headers, "x-amz-target": "TrentService.Sign" }, "{}");
    expect({ status: unknown.status, body: unknown.body, type: unknown.headers["x-amzn-errortype"] }).toEqual({
      status: 400,
      body: { __type: "UnsupportedOperationException", message: "Operation Sign is not supported by this emulator." },
      type: "UnsupportedOperationException",
    });
    expect((await raw("GET", "/", headers)).status).toBe(404);
    const wrongType = await raw("POST", "/", { "content-type": "application/json", "x-amz-target": "TrentService.DescribeKey" }, "{}");
    expect(wrongType.body?.__type).toBe("SerializationException");
    expect(emulator.requests.map((r) => r.operation)).toEqual(["unknown", "unknown", "unknown"]);
  });
});

describe("key id forms", () => {
  it("resolves a uuid, a key ARN, an alias and an alias ARN; answers with the key ARN", async () => {
    const { keyId, arn } = emulator.createKey({ alias: "forms" });
    for (const form of [keyId, arn, "alias/forms", `arn:aws:kms:${REGION}:${ACCOUNT}:alias/forms`]) {
      expect({ form, arn: (await kms.send(new GenerateDataKeyCommand({ KeyId: form, KeySpec: "AES_256" }))).KeyId }).toEqual({ form, arn });
    }
  });

  it("an id that resolves to nothing is NotFoundException, in AWS's wording", async () => {
    const { keyId } = emulator.createKey({ alias: "elsewhere" });
    const missing = "00000000-0000-4000-8000-000000000000";
    const cases: [string, string][] = [
      [missing, `Key '${arnOf(missing)}' does not exist`],
      [arnOf(missing), `Key '${arnOf(missing)}' does not exist`],
      [`arn:aws:kms:eu-west-1:${ACCOUNT}:key/${keyId}`, `Key 'arn:aws:kms:eu-west-1:${ACCOUNT}:key/${keyId}' does not exist`],
      [`arn:aws:kms:${REGION}:444455556666:key/${keyId}`, `Key 'arn:aws:kms:${REGION}:444455556666:key/${keyId}' does not exist`],
      ["alias/nothing", `Alias arn:aws:kms:${REGION}:${ACCOUNT}:alias/nothing is not found.`],
      [`arn:aws:kms:eu-west-1:${ACCOUNT}:alias/elsewhere`, `Alias arn:aws:kms:eu-west-1:${ACCOUNT}:alias/elsewhere is not found.`],
      ["not a key", "Invalid keyId not a key"],
    ];
    for (const [form, message] of cases) {
      expect({ form, ...(await failure(kms.send(new DescribeKeyCommand({ KeyId: form })))) }).toEqual({ form, name: "NotFoundException", status: 400, message });
    }
  });
});

describe("ciphertext blobs", () => {
  it("bind the EncryptionContext: any other context is InvalidCiphertextException (no message); the order of pairs does not matter", async () => {
    const { keyId } = emulator.createKey();
    const { CiphertextBlob } = await kms.send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.from("bound"), EncryptionContext: { a: "1", b: "2" } }));
    const others: (Record<string, string> | undefined)[] = [undefined, {}, { a: "1" }, { a: "1", b: "3" }, { a: "1", b: "2", c: "3" }, { a: "12", b: "" }, { ab: "1", b: "2" }];
    for (const context of others) {
      expect({ context, ...(await failure(kms.send(new DecryptCommand({ CiphertextBlob, EncryptionContext: context })))) }).toEqual({
        context,
        name: "InvalidCiphertextException",
        status: 400,
        message: "UnknownError", // the SDK's text for an error without a message, as AWS sends it
      });
    }
    const back = await kms.send(new DecryptCommand({ CiphertextBlob, EncryptionContext: { b: "2", a: "1" } }));
    expect(Buffer.from(back.Plaintext!).toString()).toBe("bound");
  });

  it("a flipped bit anywhere, a truncated blob or garbage is InvalidCiphertextException", async () => {
    const { keyId } = emulator.createKey();
    emulator.rotate(keyId);
    const blob = Buffer.from((await kms.send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.from("x"), EncryptionContext: CONTEXT }))).CiphertextBlob!);
    const variants: Buffer[] = [blob.subarray(0, blob.length - 1), blob.subarray(0, 20), Buffer.from("garbage")];
    // Every byte: the version byte, the key id, the key version (re-labelled as version 1), iv, ciphertext, tag.
    for (let i = 0; i < blob.length; i++) {
      const t = Buffer.from(blob);
      t[i] = i === 20 ? 1 : t[i]! ^ 0x01; // byte 20 is the low byte of the key version (2): set it to 1
      variants.push(t);
    }
    const names = new Set<string>();
    for (const CiphertextBlob of variants) names.add((await sdkError(kms.send(new DecryptCommand({ CiphertextBlob, EncryptionContext: CONTEXT })))).name);
    expect([...names]).toEqual(["InvalidCiphertextException"]);
  });
});

describe("errors surface as the SDK error name, with the status and a request id", () => {
  it("for every error type", async () => {
    const { keyId } = emulator.createKey();
    const disabled = emulator.createKey();
    emulator.disableKey(disabled.keyId);
    const pending = emulator.createKey();
    emulator.scheduleKeyDeletion(pending.keyId);
    const other = emulator.createKey();
    const blob = (await kms.send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.from("x") }))).CiphertextBlob;
    const limited = client(emulator.clientConfig(LIMITED.accessKeyId));
    const wrongSecret = client({ credentials: { accessKeyId: AWS_EMULATOR_IDENTITY.accessKeyId, secretAccessKey: "wrong" } });
    const cases: [string, number, () => Promise<unknown>][] = [
      ["NotFoundException", 400, () => kms.send(new DescribeKeyCommand({ KeyId: "alias/none" }))],
      ["DisabledException", 400, () => kms.send(new EncryptCommand({ KeyId: disabled.keyId, Plaintext: Buffer.from("x") }))],
      ["KMSInvalidStateException", 400, () => kms.send(new EncryptCommand({ KeyId: pending.keyId, Plaintext: Buffer.from("x") }))],
      ["InvalidCiphertextException", 400, () => kms.send(new DecryptCommand({ CiphertextBlob: Buffer.from("nope") }))],
      ["IncorrectKeyException", 400, () => kms.send(new DecryptCommand({ KeyId: other.keyId, CiphertextBlob: blob }))],
      ["ValidationException", 400, () => kms.send(new GenerateDataKeyCommand({ KeyId: keyId }))],
      ["AlreadyExistsException", 400, async () => {
        emulator.createAlias("taken", keyId);
        return kms.send(new CreateAliasCommand({ AliasName: "alias/taken", TargetKeyId: keyId }));
      }],
      ["UnsupportedOperationException", 400, () => kms.send(new CreateKeyCommand({ KeySpec: "ECC_NIST_P256" }))],
      ["AccessDeniedException", 400, () => limited.send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.from("x") }))],
      ["InvalidSignatureException", 400, () => wrongSecret.send(new DescribeKeyCommand({ KeyId: keyId }))],
      ["ThrottlingException", 400, () => {
        emulator.inject("DescribeKey", { kind: "throttle" }, { times: 1 });
        return kms.send(new DescribeKeyCommand({ KeyId: keyId }));
      }],
      ["KMSInternalException", 500, () => {
        emulator.inject("DescribeKey", { kind: "serverError" }, { times: 1 });
        return kms.send(new DescribeKeyCommand({ KeyId: keyId }));
      }],
    ];
    for (const [name, status, call] of cases) {
      const error = await sdkError(call());
      expect({ name: error.name, status: error.$metadata.httpStatusCode, requestId: typeof error.$metadata.requestId }).toEqual({ name, status, requestId: "string" });
    }
  });
});

describe("authentication (SigV4, verified)", () => {
  it("a wrong secret is InvalidSignatureException; an unknown access key is UnrecognizedClientException; both in AWS's words", async () => {
    const { keyId } = emulator.createKey();
    const wrongSecret = client({ credentials: { accessKeyId: AWS_EMULATOR_IDENTITY.accessKeyId, secretAccessKey: `${AWS_EMULATOR_IDENTITY.secretAccessKey}x` } });
    expect(await failure(wrongSecret.send(new DescribeKeyCommand({ KeyId: keyId })))).toEqual({
      name: "InvalidSignatureException",
      status: 400,
      message:
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
    });
    const unknown = client({ credentials: { accessKeyId: "AKIAUNKNOWN000000000", secretAccessKey: "whatever" } });
    expect(await failure(unknown.send(new DescribeKeyCommand({ KeyId: keyId })))).toEqual({
      name: "UnrecognizedClientException",
      status: 400,
      message: "The security token included in the request is invalid.",
    });
    expect(emulator.requests.map((r) => ({ status: r.status, identity: r.identity }))).toEqual([
      { status: 400, identity: AWS_EMULATOR_IDENTITY.accessKeyId },
      { status: 400, identity: undefined },
    ]);
  });

  it("a signature for another region is refused; so is a body changed after signing", async () => {
    const { keyId } = emulator.createKey();
    const elsewhere = client({ region: "eu-west-1" });
    expect(await failure(elsewhere.send(new DescribeKeyCommand({ KeyId: keyId })))).toEqual({
      name: "InvalidSignatureException",
      status: 400,
      message: "Credential should be scoped to a valid region. ",
    });
    const tampering = client();
    // After signing (finalizeRequest), before sending: swap the key id in the signed body.
    const other = emulator.createKey();
    tampering.middlewareStack.add(
      (next) => async (args) => {
        const request = args.request as { body: Uint8Array };
        const bytes = request.body;
        const signed = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("utf8");
        expect(signed.includes(keyId)).toBe(true);
        request.body = Buffer.from(signed.replace(keyId, other.keyId), "utf8");
        return next(args);
      },
      { step: "deserialize", name: "tamperAfterSigning" },
    );
    expect((await failure(tampering.send(new DescribeKeyCommand({ KeyId: keyId })))).name).toBe("InvalidSignatureException");
  });

  it("temporary credentials need their session token", async () => {
    const { keyId, arn } = emulator.createKey();
    const temporary = client(emulator.clientConfig(TEMPORARY.accessKeyId));
    expect((await temporary.send(new DescribeKeyCommand({ KeyId: keyId }))).KeyMetadata?.Arn).toBe(arn);
    const wrongToken = client({ credentials: { ...TEMPORARY, sessionToken: "another-token" } });
    expect((await failure(wrongToken.send(new DescribeKeyCommand({ KeyId: keyId })))).name).toBe("UnrecognizedClientException");
  });

  it("a request without Authorization is MissingAuthenticationTokenException", async () => {
    const answer = await raw("POST", "/", { "content-type": "application/x-amz-json-1.1", "x-amz-target": "TrentService.DescribeKey" }, '{"KeyId":"alias/x"}');
    expect({ status: answer.status, body: answer.body }).toEqual({ status: 400, body: { __type: "MissingAuthenticationTokenException", message: "Missing Authentication Token" } });
    expect(typeof answer.headers["x-amzn-requestid"]).toBe("string");
  });
});

describe("authorization per identity", () => {
  it("an action the identity lacks is AccessDeniedException naming the principal, the action and the key ARN", async () => {
    const { keyId, arn } = emulator.createKey({ alias: "limited" });
    const limited = client(emulator.clientConfig(LIMITED.accessKeyId));
    expect((await limited.send(new DescribeKeyCommand({ KeyId: "alias/limited" }))).KeyMetadata?.Arn).toBe(arn);
    const denied = (action: string, resource: string) => ({
      name: "AccessDeniedException",
      status: 400,
      message: `User: ${LIMITED.principal} is not authorized to perform: ${action} on resource: ${resource} because no identity-based policy allows the ${action} action`,
    });
    expect(await failure(limited.send(new GenerateDataKeyCommand({ KeyId: "alias/limited", KeySpec: "AES_256" })))).toEqual(denied("kms:GenerateDataKey", arn));
    // Without a KeyId, the resource is the key inside the blob.
    const blob = (await kms.send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.from("x") }))).CiphertextBlob;
    expect(await failure(limited.send(new DecryptCommand({ CiphertextBlob: blob })))).toEqual(denied("kms:Decrypt", arn));
    expect(await failure(limited.send(new DescribeKeyCommand({ KeyId: "alias/absent" })))).toEqual({
      name: "NotFoundException",
      status: 400,
      message: `Alias arn:aws:kms:${REGION}:${ACCOUNT}:alias/absent is not found.`,
    });
    expect(await failure(limited.send(new CreateKeyCommand({})))).toEqual(denied("kms:CreateKey", "*"));

    emulator.setAllowedActions(LIMITED.accessKeyId, ["kms:DescribeKey", "kms:GenerateDataKey"]);
    expect((await limited.send(new GenerateDataKeyCommand({ KeyId: "alias/limited", KeySpec: "AES_256" }))).KeyId).toBe(arn);
    emulator.setAllowedActions(LIMITED.accessKeyId, []);
    expect(await failure(limited.send(new DescribeKeyCommand({ KeyId: keyId })))).toEqual(denied("kms:DescribeKey", arn));
    emulator.setAllowedActions(LIMITED.accessKeyId, ["kms:*"]);
    expect(Buffer.from((await limited.send(new DecryptCommand({ CiphertextBlob: blob }))).Plaintext!).toString()).toBe("x");
    emulator.setAllowedActions(LIMITED.accessKeyId, ["kms:DescribeKey"]);
    expect(await failure(limited.send(new ListKeyRotationsCommand({ KeyId: keyId })))).toEqual(denied("kms:ListKeyRotations", arn));
    emulator.setAllowedActions(LIMITED.accessKeyId, ["kms:DescribeKey", "kms:ListKeyRotations"]);
    expect((await limited.send(new ListKeyRotationsCommand({ KeyId: keyId }))).Rotations).toEqual([]);
    expect(emulator.requests.filter((r) => r.identity === LIMITED.accessKeyId).map((r) => `${r.operation} ${r.status}`)).toEqual([
      "DescribeKey 200",
      "GenerateDataKey 400",
      "Decrypt 400",
      "DescribeKey 400",
      "CreateKey 400",
      "GenerateDataKey 200",
      "DescribeKey 400",
      "Decrypt 200",
      "ListKeyRotations 400",
      "ListKeyRotations 200",
    ]);
  });

  it("setAllowedActions refuses unknown identities and malformed actions", () => {
    expect(() => emulator.setAllowedActions("AKIANOBODY", [])).toThrow("unknown access key id AKIANOBODY");
    expect(() => emulator.setAllowedActions(LIMITED.accessKeyId, ["Decrypt"])).toThrow("not an IAM action: Decrypt");
  });
});

describe("injected faults", () => {
  it("throttle: ThrottlingException for `times` requests, then normal answers", async () => {
    const { keyId } = emulator.createKey();
    const fault = emulator.inject("GenerateDataKey", { kind: "throttle" }, { times: 2 });
    const call = () => kms.send(new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: "AES_256" }));
    expect(await failure(call())).toEqual({ name: "ThrottlingException", status: 400, message: "Rate exceeded" });
    expect(await failure(call())).toEqual({ name: "ThrottlingException", status: 400, message: "Rate exceeded" });
    expect((await call()).Plaintext).toHaveLength(32);
    expect({ hits: fault.hits, remaining: fault.remaining }).toEqual({ hits: 2, remaining: 0 });
    expect(emulator.requests.map((r) => [r.status, r.fault])).toEqual([[400, "throttle"], [400, "throttle"], [200, undefined]]);
  });

  it("serverError: KMSInternalException with the status; until clear()", async () => {
    const { keyId } = emulator.createKey();
    const call = () => kms.send(new DescribeKeyCommand({ KeyId: keyId }));
    const fault = emulator.inject("*", { kind: "serverError", status: 503 });
    expect(await failure(call())).toEqual({ name: "KMSInternalException", status: 503, message: "An internal error occurred." });
    expect(await failure(call())).toEqual({ name: "KMSInternalException", status: 503, message: "An internal error occurred." });
    fault.clear();
    expect((await call()).KeyMetadata?.KeyId).toBe(keyId);
    emulator.inject("DescribeKey", { kind: "serverError" }, { times: 1 });
    expect((await failure(call())).status).toBe(500);
  });

  it("accessDenied, keyDisabled and keyNotFound answer as AWS does for the key the request names", async () => {
    const { keyId, arn } = emulator.createKey({ alias: "faulted" });
    emulator.inject("Encrypt", { kind: "accessDenied" }, { times: 1 });
    emulator.inject("Encrypt", { kind: "keyDisabled" }, { times: 1 });
    emulator.inject("Encrypt", { kind: "keyNotFound" }, { times: 2 });
    const call = (id: string) => kms.send(new EncryptCommand({ KeyId: id, Plaintext: Buffer.from("x") }));
    expect(await failure(call("alias/faulted"))).toEqual({
      name: "AccessDeniedException",
      status: 400,
      message: `User: arn:aws:iam::${ACCOUNT}:user/${AWS_EMULATOR_IDENTITY.accessKeyId} is not authorized to perform: kms:Encrypt on resource: ${arn} because no identity-based policy allows the kms:Encrypt action`,
    });
    expect(await failure(call(keyId))).toEqual({ name: "DisabledException", status: 400, message: `${arn} is disabled.` });
    expect(await failure(call(keyId))).toEqual({ name: "NotFoundException", status: 400, message: `Key '${arn}' does not exist` });
    expect(await failure(call("alias/faulted"))).toEqual({ name: "NotFoundException", status: 400, message: `Alias arn:aws:kms:${REGION}:${ACCOUNT}:alias/faulted is not found.` });
    expect((await call(keyId)).KeyId).toBe(arn);
  });

  it("a keyId filter faults only requests naming that key", async () => {
    const a = emulator.createKey();
    const b = emulator.createKey();
    emulator.inject("*", { kind: "keyDisabled" }, { keyId: a.keyId });
    expect((await failure(kms.send(new DescribeKeyCommand({ KeyId: a.keyId })))).name).toBe("DisabledException");
    expect((await kms.send(new DescribeKeyCommand({ KeyId: b.keyId }))).KeyMetadata?.KeyId).toBe(b.keyId);
    expect((await failure(kms.send(new DescribeKeyCommand({ KeyId: a.keyId })))).name).toBe("DisabledException");
    expect(emulator.requests.map((r) => [r.keyId, r.fault])).toEqual([[a.keyId, "keyDisabled"], [b.keyId, undefined], [a.keyId, "keyDisabled"]]);
  });

  it("latency delays the answer, then lets it through", async () => {
    const { keyId } = emulator.createKey();
    emulator.inject("DescribeKey", { kind: "latency", ms: 20 }, { times: 1 });
    expect((await kms.send(new DescribeKeyCommand({ KeyId: keyId }))).KeyMetadata?.KeyId).toBe(keyId);
    expect(emulator.requests).toEqual([{ operation: "DescribeKey", keyId, status: 200, fault: "latency", identity: AWS_EMULATOR_IDENTITY.accessKeyId }]);
  });

  it("connectionReset drops the connection: the SDK sees a socket hang up", async () => {
    const { keyId } = emulator.createKey();
    emulator.inject("DescribeKey", { kind: "connectionReset" }, { times: 1 });
    expect((await sdkError(kms.send(new DescribeKeyCommand({ KeyId: keyId })))).message).toMatch(/socket hang up|ECONNRESET/);
    expect(emulator.requests.map((r) => [r.status, r.fault])).toEqual([[0, "connectionReset"]]);
    expect((await kms.send(new DescribeKeyCommand({ KeyId: keyId }))).KeyMetadata?.KeyId).toBe(keyId);
  });

  it("outage(): connection refused until restored, then the same port serves again", async () => {
    const { keyId } = emulator.createKey();
    const url = emulator.url;
    const restore = await emulator.outage();
    expect((await sdkError(kms.send(new DescribeKeyCommand({ KeyId: keyId })))).message).toMatch(/ECONNREFUSED/);
    await restore();
    expect(emulator.url).toBe(url);
    expect((await kms.send(new DescribeKeyCommand({ KeyId: keyId }))).KeyMetadata?.KeyId).toBe(keyId);
    expect(emulator.counts()).toEqual({ DescribeKey: 1 });
  });
});

describe("request log", () => {
  it("counts requests per operation exactly and never holds a body", async () => {
    const { keyId } = emulator.createKey({ alias: "logged" });
    const plaintext = Buffer.from("plaintext that must not be logged");
    const context = { "kms:tenant": "tenant-secret-context-value" };
    const encrypted = await kms.send(new EncryptCommand({ KeyId: "alias/logged", Plaintext: plaintext, EncryptionContext: context }));
    const generated = await kms.send(new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: "AES_256", EncryptionContext: context }));
    await kms.send(new DecryptCommand({ CiphertextBlob: encrypted.CiphertextBlob, EncryptionContext: context }));
    await kms.send(new DecryptCommand({ KeyId: keyId, CiphertextBlob: generated.CiphertextBlob, EncryptionContext: context }));
    expect(emulator.counts()).toEqual({ Encrypt: 1, GenerateDataKey: 1, Decrypt: 2 });
    expect([emulator.count(), emulator.count("Decrypt"), emulator.count("DescribeKey")]).toEqual([4, 2, 0]);
    expect(emulator.requests.map((r) => r.keyId)).toEqual(["alias/logged", keyId, undefined, keyId]);
    const log = JSON.stringify(emulator.requests);
    const secrets = [
      plaintext.toString("utf8"),
      plaintext.toString("base64"),
      "tenant-secret-context-value",
      Buffer.from(generated.Plaintext!).toString("base64"),
      Buffer.from(generated.Plaintext!).toString("hex"),
      Buffer.from(encrypted.CiphertextBlob!).toString("base64"),
      AWS_EMULATOR_IDENTITY.secretAccessKey,
    ];
    for (const secret of secrets) expect(log.includes(secret)).toBe(false);
  });
});
