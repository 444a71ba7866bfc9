// The SDK warns once per process on Node 20 (it will require Node 22 from 2027); not under test here.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = "true";

import { randomBytes, randomUUID } from "node:crypto";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, jest } from "@jest/globals";
import { DescribeKeyCommand, KMSClient } from "@aws-sdk/client-kms";
import { KmsConfigError, KmsError, TROUBLESHOOTING_URL, createKms, type KmsErrorCode } from "@kms/core";
import { AWS_EMULATOR_IDENTITY, AwsKmsEmulator, type EmulatorRequest, type AwsKmsRoute } from "@kms/testkit/emulators";
import { AWS_KEY_ID_RULE, AWS_PERMISSIONS_DOCS_URL, AWS_RUNTIME_PERMISSIONS, AWS_SHREDDING_PERMISSIONS, type AwsKmsProvider, awsKms, awsKmsProvider } from "../src";
import { kmsErrorOf } from "@kms/testkit";
import { mapAwsError } from "../src/errors";

/** A latency that holds a request past any deadline here; the emulator's stop() releases it (after every test, so it is never logged mid-file). */
const HELD_MS = 600_000;

const ACCOUNT = "111122223333";
const REGION = "us-east-1";
const PARTIAL = { accessKeyId: "AKIAPARTIAL000000001", secretAccessKey: "partial-secret-access-key", principal: `arn:aws:iam::${ACCOUNT}:role/app` };
const TEMPORARY = { accessKeyId: "ASIATEMPORARY0000001", secretAccessKey: "temporary-secret-access-key", sessionToken: "session-token-value" };
const ALL_ACTIONS = ["kms:DescribeKey", "kms:ListKeyRotations", "kms:GenerateDataKey", "kms:Encrypt", "kms:Decrypt"];
/** A context with a value that must never reach a message. */
const CONTEXT = { "kms:tenant": "tenant-a", ssn: "078-05-1120" };

/**
 * An emulator whose RotateKeyOnDemand completes only after `describesUntilRotated` further
 * DescribeKey calls, as AWS rotates asynchronously (the plain emulator rotates at once).
 */
class SlowRotationEmulator extends AwsKmsEmulator {
  describesUntilRotated = Infinity;
  #pending: { keyId: string; describes: number } | undefined;

  protected override handle(req: EmulatorRequest, routed: AwsKmsRoute) {
    if (routed.operation === "RotateKeyOnDemand") {
      const { keyId, arn } = this.key(routed.keyId!);
      this.#pending = { keyId, describes: 0 };
      return { status: 200, headers: { "content-type": "application/x-amz-json-1.1" }, body: { KeyId: arn } };
    }
    if (routed.operation === "DescribeKey" && this.#pending !== undefined && ++this.#pending.describes > this.describesUntilRotated) {
      this.rotate(this.#pending.keyId);
      this.#pending = undefined;
    }
    return super.handle(req, routed);
  }
}

const emulator = new SlowRotationEmulator({ credentials: [AWS_EMULATOR_IDENTITY, PARTIAL, TEMPORARY] });
const providers: AwsKmsProvider[] = [];
let keyId: string;
let arn: string;
const alias = "alias/provider-test";

/** A provider through the real SDK (default identity unless given), closed after each test. */
function provider(accessKeyId?: string, extra: Parameters<typeof awsKmsProvider>[0] = {}): AwsKmsProvider {
  const p = awsKmsProvider({ ...emulator.clientConfig(accessKeyId), ...extra });
  providers.push(p);
  return p;
}

beforeAll(async () => {
  await emulator.start();
  ({ keyId, arn } = emulator.createKey({ alias }));
});

afterAll(async () => {
  await emulator.stop();
});

beforeEach(() => {
  emulator.resetLog();
  emulator.setAllowedActions(PARTIAL.accessKeyId, ALL_ACTIONS);
});

afterEach(async () => {
  emulator.clearFaults();
  emulator.describesUntilRotated = Infinity;
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

describe("key id forms", () => {
  it("a uuid, a key ARN, an alias and an alias ARN all work, and name the same key", async () => {
    const p = provider();
    const forms = [keyId, arn, alias, `arn:aws:kms:${REGION}:${ACCOUNT}:${alias}`];
    const dk = await p.generateDataKey({ keyId: alias, context: CONTEXT });
    for (const form of forms) {
      const unwrapped = await p.unwrapDataKey({ keyId: form, keyVersion: dk.keyVersion, wrappedKey: dk.wrappedKey, context: CONTEXT });
      expect({ form, same: Buffer.from(unwrapped).equals(Buffer.from(dk.plaintextKey)) }).toEqual({ form, same: true });
      expect(await p.describeKey(form)).toEqual({ keyId: form, enabled: true, currentVersion: dk.keyVersion, createdAt: expect.any(Date) });
    }
    // Unwrap and DescribeKey name the key as given; ListKeyRotations takes no alias, so describeKey sends it the ARN.
    expect(emulator.requests.map((r) => r.keyId)).toEqual([alias, ...forms.flatMap((f) => [f, f, arn])]);
  });

  it("an id in none of the four forms is INPUT_INVALID, without a call", async () => {
    const p = provider();
    for (const bad of ["", "key-1", `key/${keyId}`, "alias/", `arn:aws:kms:${REGION}:${ACCOUNT}:key/`, "arn:aws:s3:::bucket", `${keyId} `]) {
      const error = await kmsErrorOf(p.describeKey(bad));
      expect({ bad, code: error.code, message: error.message }).toEqual({ bad, code: "INPUT_INVALID", message: `aws-kms: ${AWS_KEY_ID_RULE} ${docs("INPUT_INVALID")}` });
    }
    expect(emulator.count()).toBe(0);
  });
});

describe("error mapping", () => {
  const injected: [string, Parameters<typeof emulator.inject>[1], KmsErrorCode, boolean, string][] = [
    ["throttle", { kind: "throttle" }, "KMS_THROTTLED", true, `GenerateDataKey on ${alias} was throttled (ThrottlingException)`],
    ["serverError 500", { kind: "serverError" }, "KMS_UNAVAILABLE", true, `GenerateDataKey on ${alias} failed: AWS KMS is unavailable (KMSInternalException)`],
    ["serverError 503", { kind: "serverError", status: 503 }, "KMS_UNAVAILABLE", true, `GenerateDataKey on ${alias} failed: AWS KMS is unavailable (KMSInternalException)`],
    ["connectionReset", { kind: "connectionReset" }, "KMS_UNAVAILABLE", true, `GenerateDataKey on ${alias} failed: AWS KMS is unavailable (socket hang up)`],
    ["accessDenied", { kind: "accessDenied" }, "KMS_ACCESS_DENIED", false, `access denied: arn:aws:iam::${ACCOUNT}:user/${AWS_EMULATOR_IDENTITY.accessKeyId} may not perform kms:GenerateDataKey on ARN`],
    ["keyDisabled", { kind: "keyDisabled" }, "KMS_KEY_DISABLED", false, `key ${alias} is disabled`],
    ["keyNotFound", { kind: "keyNotFound" }, "KMS_KEY_NOT_FOUND", false, `key ${alias} does not exist (or is in another region or account)`],
  ];

  it.each(injected)("%s → the right code and retryability; the message names the key, carries the docs link and no secret", async (_, fault, code, retryable, start) => {
    const p = provider();
    const secret = await p.generateDataKey({ keyId: alias, context: CONTEXT }); // a data key that must not leak
    emulator.inject("GenerateDataKey", fault, { times: 1 });
    const error = await kmsErrorOf(p.generateDataKey({ keyId: alias, context: CONTEXT }));
    expect({ code: error.code, retryable: error.retryable, provider: error.provider }).toEqual({ code, retryable, provider: "aws-kms" });
    expect(error.message.startsWith(`aws-kms: ${start.replace("ARN", arn)}: `)).toBe(true);
    expect(error.message.endsWith(docs(code))).toBe(true);
    expect(error.docsUrl).toBe(`${TROUBLESHOOTING_URL}#${code.toLowerCase()}`);
    // An HTTP answer has a request id; a dropped connection has none.
    expect(typeof error.requestId).toBe(fault.kind === "connectionReset" ? "undefined" : "string");
    expect(error.cause).toBeInstanceOf(Error);
    const text = everythingIn(error);
    for (const leak of [...encodings(secret.plaintextKey), AWS_EMULATOR_IDENTITY.secretAccessKey, CONTEXT.ssn]) expect(text.includes(leak)).toBe(false);
    expect(emulator.count("GenerateDataKey")).toBe(2);
  });

  it("the access-denied message names the principal, the IAM action and the key ARN, and says what to do", async () => {
    emulator.setAllowedActions(PARTIAL.accessKeyId, ["kms:DescribeKey"]);
    const error = await kmsErrorOf(provider(PARTIAL.accessKeyId).wrapDataKey({ keyId: alias, plaintextKey: randomBytes(32), context: CONTEXT }));
    expect(error.message).toBe(
      `aws-kms: access denied: ${PARTIAL.principal} may not perform kms:Encrypt on ${arn}: ` +
        `allow this action for the caller in its IAM policy and in the key policy ${docs("KMS_ACCESS_DENIED")}`,
    );
  });

  it("an outage (connection refused) is a retryable KMS_UNAVAILABLE", async () => {
    const p = provider();
    const restore = await emulator.outage();
    try {
      const error = await kmsErrorOf(p.describeKey(alias));
      expect({ code: error.code, retryable: error.retryable, message: error.message }).toEqual({
        code: "KMS_UNAVAILABLE",
        retryable: true,
        message: `aws-kms: DescribeKey on ${alias} failed: AWS KMS is unavailable (ECONNREFUSED): check the network path to the KMS endpoint and the AWS Health Dashboard, then try again ${docs("KMS_UNAVAILABLE")}`,
      });
    } finally {
      await restore();
    }
  });

  it("a key pending deletion is KMS_KEY_DISABLED with its state; a blob of another key or a wrong context is ENVELOPE_AUTH_FAILED", async () => {
    const p = provider();
    const doomed = emulator.createKey();
    emulator.scheduleKeyDeletion(doomed.keyId);
    const pending = await kmsErrorOf(p.generateDataKey({ keyId: doomed.keyId, context: CONTEXT }));
    expect({ code: pending.code, message: pending.message }).toEqual({
      code: "KMS_KEY_DISABLED",
      message: `aws-kms: key ${doomed.keyId} cannot be used in its current state (pending deletion): cancel its deletion (kms:CancelKeyDeletion) and enable it, or point the tenant at another key ${docs("KMS_KEY_DISABLED")}`,
    });
    const other = emulator.createKey();
    const dk = await p.generateDataKey({ keyId: alias, context: CONTEXT });
    for (const [id, context] of [[other.keyId, CONTEXT], [alias, { ...CONTEXT, ssn: "other" }]] as const) {
      const error = await kmsErrorOf(p.unwrapDataKey({ keyId: id, keyVersion: dk.keyVersion, wrappedKey: dk.wrappedKey, context }));
      expect({ code: error.code, retryable: error.retryable, message: error.message }).toEqual({
        code: "ENVELOPE_AUTH_FAILED",
        retryable: false,
        message: `aws-kms: the data key could not be unwrapped with this key and encryption context: decrypt with the key and encryption context the data was encrypted under ${docs("ENVELOPE_AUTH_FAILED")}`,
      });
      expect((error.cause as Error).name).toBe(id === alias ? "InvalidCiphertextException" : "IncorrectKeyException");
    }
  });

  it("rejected credentials are KMS_ACCESS_DENIED that say so, without the secret", async () => {
    const cases: [{ accessKeyId: string; secretAccessKey: string; sessionToken?: string }, string][] = [
      [{ accessKeyId: AWS_EMULATOR_IDENTITY.accessKeyId, secretAccessKey: "wrong-secret-value" }, "InvalidSignatureException"],
      [{ accessKeyId: "AKIAUNKNOWN000000000", secretAccessKey: "wrong-secret-value" }, "UnrecognizedClientException"],
      [{ ...TEMPORARY, sessionToken: "wrong-token-value" }, "UnrecognizedClientException"],
    ];
    for (const [credentials, name] of cases) {
      const error = await kmsErrorOf(provider(undefined, { credentials }).describeKey(alias));
      expect({ code: error.code, message: error.message }).toEqual({
        code: "KMS_ACCESS_DENIED",
        message: `aws-kms: the AWS credentials were rejected (${name}) calling DescribeKey on ${alias}: check the access key id, secret access key and session token the provider uses (and this host's clock) ${docs("KMS_ACCESS_DENIED")}`,
      });
      const text = everythingIn(error);
      expect([text.includes("wrong-secret-value"), text.includes("wrong-token-value")]).toEqual([false, false]);
    }
    expect((await provider(TEMPORARY.accessKeyId).describeKey(alias)).enabled).toBe(true);
  });

  it("core's abort wins: the provider rejects with the signal's reason", async () => {
    const p = provider();
    emulator.inject("DescribeKey", { kind: "latency", ms: HELD_MS }, { times: 1 });
    const controller = new AbortController();
    const pending = kmsErrorOf(p.describeKey(alias, { signal: controller.signal }));
    while (emulator.pending === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    const reason = new KmsError("KMS_TIMEOUT", "aws-kms describeKey timed out after 10 ms");
    controller.abort(reason);
    expect(await pending).toBe(reason);
    // A plain abort (no KmsError reason) is a KMS_TIMEOUT too, and an aborted signal makes no call.
    const plain = new AbortController();
    plain.abort();
    expect((await kmsErrorOf(p.describeKey(alias, { signal: plain.signal }))).code).toBe("KMS_TIMEOUT");
  });

  it("the SDK's own request timeout (requestTimeoutMs) is a retryable KMS_TIMEOUT: the SDK reports it as ETIMEDOUT", async () => {
    emulator.inject("DescribeKey", { kind: "latency", ms: HELD_MS }, { times: 1 });
    const error = await kmsErrorOf(provider(undefined, { requestTimeoutMs: 1000 }).describeKey(alias));
    expect({ code: error.code, retryable: error.retryable }).toEqual({ code: "KMS_TIMEOUT", retryable: true });
    expect(error.message.startsWith(`aws-kms: DescribeKey on ${alias} timed out in the AWS SDK (connection or request timeout): `)).toBe(true);
  });

  it("maps errors the emulator cannot produce by name, code and status, copying no AWS text", () => {
    const call = { operation: "Decrypt", keyId: alias };
    const cases: [unknown, KmsErrorCode][] = [
      [{ name: "LimitExceededException", $metadata: { httpStatusCode: 400 } }, "KMS_THROTTLED"],
      [{ name: "DependencyTimeoutException", $metadata: { httpStatusCode: 500 } }, "KMS_UNAVAILABLE"],
      [{ name: "KeyUnavailableException", $metadata: { httpStatusCode: 500 } }, "KMS_UNAVAILABLE"],
      [{ name: "SomethingNewException", $metadata: { httpStatusCode: 502 } }, "KMS_UNAVAILABLE"],
      [{ name: "ExpiredTokenException", $metadata: { httpStatusCode: 400 } }, "KMS_ACCESS_DENIED"],
      [{ name: "CredentialsProviderError", message: "Could not load credentials from any providers" }, "KMS_ACCESS_DENIED"],
      [Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET", name: "TimeoutError" }), "KMS_UNAVAILABLE"],
      [Object.assign(new Error("write EPIPE"), { code: "EPIPE" }), "KMS_UNAVAILABLE"],
      [Object.assign(new Error("connect ETIMEDOUT 10.0.0.1:443"), { code: "ETIMEDOUT" }), "KMS_TIMEOUT"],
      [Object.assign(new Error("the request timed out"), { name: "TimeoutError" }), "KMS_TIMEOUT"],
      [{ name: "ValidationException", message: "1 validation error detected: Value 'secret-context' at 'keyId'", $metadata: { httpStatusCode: 400 } }, "KMS_PROVIDER_ERROR"],
      ["a string", "KMS_PROVIDER_ERROR"],
    ];
    for (const [error, code] of cases) {
      const mapped = mapAwsError(error, call);
      expect({ error, code: mapped.code }).toEqual({ error, code });
      expect(mapped.message.includes("secret-context")).toBe(false);
    }
    // Only what the strict patterns take from an access-denied message reaches ours.
    const sneaky = mapAwsError(
      {
        name: "AccessDeniedException",
        message: `User: arn:aws:iam::${ACCOUNT}:user/app is not authorized to perform: kms:Decrypt on resource: ${arn} with an explicit deny (context secret-context)`,
        $metadata: { httpStatusCode: 400, requestId: "req-1" },
      },
      call,
    );
    expect(sneaky.message.startsWith(`aws-kms: access denied: arn:aws:iam::${ACCOUNT}:user/app may not perform kms:Decrypt on ${arn}: `)).toBe(true);
    expect([sneaky.message.includes("secret-context"), sneaky.requestId]).toEqual([false, "req-1"]);
    const unparsable = mapAwsError({ name: "AccessDeniedException", message: "The ciphertext refers to a key you are not allowed to access (secret-context)" }, call);
    expect(unparsable.message.startsWith(`aws-kms: access denied: the caller may not perform kms:Decrypt on ${alias}: `)).toBe(true);
  });
});

describe("validatePermissions", () => {
  const ok = (permission: string) => ({ permission, ok: true, docsUrl: AWS_PERMISSIONS_DOCS_URL });

  it("is all ok with every action allowed, checking each with one call", async () => {
    expect(await provider(PARTIAL.accessKeyId).validatePermissions(alias)).toEqual(ALL_ACTIONS.map(ok));
    // Counted for this identity only: under a loaded CI, the previous test's request (its SDK timed out
    // before sending it) can still reach the emulator now.
    const calls = emulator.requests.filter((r) => r.identity === PARTIAL.accessKeyId).map((r) => r.operation);
    expect(calls).toEqual(["DescribeKey", "ListKeyRotations", "GenerateDataKey", "Encrypt", "Decrypt"]);
  });

  it("checks exactly AWS_RUNTIME_PERMISSIONS, in its order (the list deploy/terraform/aws grants), and no shredding action", async () => {
    const checks = await provider(PARTIAL.accessKeyId).validatePermissions(alias);
    expect(checks.map((c) => c.permission)).toEqual([...AWS_RUNTIME_PERMISSIONS]);
    expect([...AWS_RUNTIME_PERMISSIONS]).toEqual(ALL_ACTIONS);
    expect(Object.isFrozen(AWS_RUNTIME_PERMISSIONS)).toBe(true);
    expect(AWS_SHREDDING_PERMISSIONS.filter((a) => a !== "kms:DescribeKey").some((a) => (AWS_RUNTIME_PERMISSIONS as readonly string[]).includes(a))).toBe(false);
  });

  it.each(ALL_ACTIONS)("without %s: exactly that check fails, naming the action and the key ARN (and, for an alias, what it leaves unchecked)", async (missing) => {
    emulator.setAllowedActions(PARTIAL.accessKeyId, ALL_ACTIONS.filter((a) => a !== missing));
    const checks = await provider(PARTIAL.accessKeyId).validatePermissions(alias);
    expect(checks.map((c) => ({ ...c, error: c.error?.code }))).toEqual(
      ALL_ACTIONS.map((permission) =>
        permission === missing
          ? {
              permission,
              ok: false,
              remediation:
                `${permission} on ${arn}: allow this action for the caller in its IAM policy and in the key policy` +
                (permission === "kms:ListKeyRotations" ? ": describeKey reads with it when the current key material became current (the key age of rotation and of the key-age metrics)" : ""),
              docsUrl: AWS_PERMISSIONS_DOCS_URL,
              error: "KMS_ACCESS_DENIED",
            }
          : missing === "kms:DescribeKey" && permission === "kms:ListKeyRotations"
            ? {
                // ListKeyRotations takes no alias: without DescribeKey's ARN it is not checked, never sent an alias.
                permission,
                ok: false,
                remediation: `${permission} on ${alias}: allow kms:DescribeKey too, then validate again to check kms:ListKeyRotations`,
                docsUrl: AWS_PERMISSIONS_DOCS_URL,
                error: "KMS_PROVIDER_ERROR",
              }
            : ok(permission),
      ),
    );
    if (missing === "kms:DescribeKey") expect(emulator.requests.filter((r) => r.identity === PARTIAL.accessKeyId && r.operation === "ListKeyRotations")).toEqual([]);
    const denied = checks.find((c) => !c.ok)!.error!;
    expect(denied.message.startsWith(`aws-kms: access denied: ${PARTIAL.principal} may not perform ${missing} on ${arn}: `)).toBe(true);
  });

  it("without kms:GenerateDataKey and kms:Encrypt, kms:Decrypt is reported as not checked, never as ok", async () => {
    emulator.setAllowedActions(PARTIAL.accessKeyId, ["kms:DescribeKey", "kms:ListKeyRotations", "kms:Decrypt"]);
    const checks = await provider(PARTIAL.accessKeyId).validatePermissions(alias);
    expect(checks.map((c) => [c.permission, c.ok, c.error?.code])).toEqual([
      ["kms:DescribeKey", true, undefined],
      ["kms:ListKeyRotations", true, undefined],
      ["kms:GenerateDataKey", false, "KMS_ACCESS_DENIED"],
      ["kms:Encrypt", false, "KMS_ACCESS_DENIED"],
      ["kms:Decrypt", false, "KMS_PROVIDER_ERROR"],
    ]);
    expect(checks[4]!.remediation).toBe(`kms:Decrypt on ${arn}: allow kms:GenerateDataKey (or kms:Encrypt) too, then validate again to check kms:Decrypt`);
    expect(emulator.count("Decrypt")).toBe(0);
  });

  it("a disabled key fails the cryptographic checks with KMS_KEY_DISABLED and says how to fix it", async () => {
    const disabled = emulator.createKey();
    emulator.disableKey(disabled.keyId);
    const checks = await provider().validatePermissions(disabled.keyId);
    expect(checks.map((c) => [c.permission, c.ok, c.error?.code, c.remediation])).toEqual([
      ["kms:DescribeKey", true, undefined, undefined],
      ["kms:ListKeyRotations", true, undefined, undefined],
      ["kms:GenerateDataKey", false, "KMS_KEY_DISABLED", `kms:GenerateDataKey on ${disabled.arn}: enable the key (kms:EnableKey) or point the tenant at an enabled key`],
      ["kms:Encrypt", false, "KMS_KEY_DISABLED", `kms:Encrypt on ${disabled.arn}: enable the key (kms:EnableKey) or point the tenant at an enabled key`],
      ["kms:Decrypt", false, "KMS_PROVIDER_ERROR", `kms:Decrypt on ${disabled.arn}: allow kms:GenerateDataKey (or kms:Encrypt) too, then validate again to check kms:Decrypt`],
    ]);
  });
});

describe("key management", () => {
  it("describeKey: enabled, the current KeyMaterialId as version, the creation date", async () => {
    const created = emulator.createKey();
    const description = await provider().describeKey(created.arn);
    expect(description).toEqual({ keyId: created.arn, enabled: true, currentVersion: emulator.key(created.keyId).keyMaterialIds[0], createdAt: expect.any(Date) });
    emulator.disableKey(created.keyId);
    expect((await provider().describeKey(created.keyId)).enabled).toBe(false);
  });

  it("wrapDataKey records the version read before the Encrypt", async () => {
    const created = emulator.createKey();
    const wrapped = await provider().wrapDataKey({ keyId: created.keyId, plaintextKey: randomBytes(32), context: CONTEXT });
    expect(wrapped.keyVersion).toBe(emulator.key(created.keyId).keyMaterialIds[0]);
    expect(emulator.requests.map((r) => r.operation)).toEqual(["DescribeKey", "Encrypt"]);
  });

  it("rotateKey waits for AWS's asynchronous rotation, polling DescribeKey", async () => {
    const created = emulator.createKey();
    const [v1] = emulator.key(created.keyId).keyMaterialIds;
    emulator.describesUntilRotated = 2;
    const rotation = await provider(undefined, { rotationPollIntervalMs: 1 }).rotateKey(created.keyId);
    const [, v2] = emulator.key(created.keyId).keyMaterialIds;
    expect(rotation).toEqual({ keyId: created.keyId, previousVersion: v1, currentVersion: v2 });
    expect(emulator.requests.map((r) => r.operation)).toEqual(["DescribeKey", "RotateKeyOnDemand", "DescribeKey", "DescribeKey", "DescribeKey"]);
  });

  it("rotateKey gives up after rotationWaitMs with a non-retryable KMS_TIMEOUT, or at once when aborted", async () => {
    const created = emulator.createKey();
    const error = await kmsErrorOf(provider(undefined, { rotationPollIntervalMs: 1, rotationWaitMs: 20 }).rotateKey(created.keyId));
    expect({ code: error.code, retryable: error.retryable }).toEqual({ code: "KMS_TIMEOUT", retryable: false });
    // Aborted while it waits between polls: the 60 s pause ends at once with the signal's reason.
    emulator.resetLog();
    const controller = new AbortController();
    const reason = new KmsError("KMS_TIMEOUT", "core timed out");
    const pending = kmsErrorOf(provider(undefined, { rotationPollIntervalMs: 60_000 }).rotateKey(created.keyId, { signal: controller.signal }));
    while (emulator.count("DescribeKey") < 2) await new Promise((resolve) => setTimeout(resolve, 5));
    controller.abort(reason);
    expect(await pending).toBe(reason);
    expect(emulator.requests.map((r) => r.operation)).toEqual(["DescribeKey", "RotateKeyOnDemand", "DescribeKey"]);
  });

  it("checkHealth: healthy only when every key is enabled; never throws for KMS errors", async () => {
    const p = provider();
    const disabled = emulator.createKey();
    emulator.disableKey(disabled.keyId);
    const missing = randomUUID();
    expect(await p.checkHealth([alias, keyId, alias])).toEqual({ healthy: true, insecure: false, detail: "2 key(s) enabled" });
    expect(await p.checkHealth([])).toEqual({ healthy: true, insecure: false, detail: "no keys to check" });
    expect(await p.checkHealth([alias, disabled.keyId])).toEqual({ healthy: false, insecure: false, detail: `key ${disabled.keyId} is Disabled (KMS_KEY_DISABLED)` });
    expect(await p.checkHealth([missing])).toEqual({ healthy: false, insecure: false, detail: `key ${missing}: KMS_KEY_NOT_FOUND` });
    expect(await p.checkHealth(["nonsense"])).toEqual({ healthy: false, insecure: false, detail: "invalid key id (INPUT_INVALID)" });
    emulator.inject("*", { kind: "serverError", status: 503 });
    expect(await p.checkHealth([alias])).toEqual({ healthy: false, insecure: false, detail: `key ${alias}: KMS_UNAVAILABLE` });
  });
});

describe("disableKey (crypto-shredding)", () => {
  const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
  const DAY_MS = 86_400_000;

  /** A fresh key with a data key wrapped under it before the shredding. */
  async function keyWithDataKey(p: AwsKmsProvider) {
    const created = emulator.createKey();
    const dk = await p.generateDataKey({ keyId: created.keyId, context: CONTEXT });
    emulator.resetLog();
    return { ...created, dk };
  }

  /** The key's KeyMetadata as AWS reports it (read past the provider, through the SDK). */
  async function metadataOf(id: string) {
    const kms = new KMSClient({ ...emulator.clientConfig(), maxAttempts: 1 });
    try {
      return (await kms.send(new DescribeKeyCommand({ KeyId: id }))).KeyMetadata!;
    } finally {
      kms.destroy();
    }
  }

  it("lists both modes in capabilities.keyDisabling", () => {
    expect(provider().capabilities.keyDisabling).toEqual(["disable", "schedule-destruction"]);
  });

  it("disable: one DisableKey call, its request id returned; afterwards the key neither wraps nor unwraps (KMS_KEY_DISABLED)", async () => {
    const p = provider();
    const { keyId: id, dk } = await keyWithDataKey(p);
    const result = await p.disableKey(id, { mode: "disable" });
    expect(result).toEqual({ requestId: expect.stringMatching(UUID) });
    expect(emulator.requests.map((r) => [r.operation, r.keyId, r.status])).toEqual([["DisableKey", id, 200]]);
    expect(emulator.key(id).state).toBe("Disabled");
    const failures = [
      await kmsErrorOf(p.generateDataKey({ keyId: id, context: CONTEXT })),
      await kmsErrorOf(p.wrapDataKey({ keyId: id, plaintextKey: randomBytes(32), context: CONTEXT })),
      await kmsErrorOf(p.unwrapDataKey({ keyId: id, keyVersion: dk.keyVersion, wrappedKey: dk.wrappedKey, context: CONTEXT })),
    ];
    for (const error of failures) {
      expect({ code: error.code, retryable: error.retryable, cause: (error.cause as Error).name }).toEqual({ code: "KMS_KEY_DISABLED", retryable: false, cause: "DisabledException" });
      expect(error.message).toBe(`aws-kms: key ${id} is disabled: enable the key (kms:EnableKey) or point the tenant at an enabled key ${docs("KMS_KEY_DISABLED")}`);
    }
    // wrapDataKey reads the version first (DescribeKey still answers for a disabled key).
    expect(emulator.counts()).toEqual({ DisableKey: 1, GenerateDataKey: 1, DescribeKey: 1, Encrypt: 1, Decrypt: 1 });
    // Disabling is reversible, and disabling again is harmless (AWS answers 200).
    expect(await p.disableKey(id, { mode: "disable" })).toEqual({ requestId: expect.stringMatching(UUID) });
    emulator.enableKey(id);
    expect(await p.unwrapDataKey({ keyId: id, keyVersion: dk.keyVersion, wrappedKey: dk.wrappedKey, context: CONTEXT })).toEqual(dk.plaintextKey);
  });

  it("schedule-destruction: one ScheduleKeyDeletion with a 30-day window by default; the key is PendingDeletion and refuses cryptography", async () => {
    const p = provider();
    const { keyId: id, dk } = await keyWithDataKey(p);
    const before = Date.now();
    const result = await p.disableKey(id, { mode: "schedule-destruction" });
    expect(result).toEqual({ requestId: expect.stringMatching(UUID) });
    expect(emulator.counts()).toEqual({ ScheduleKeyDeletion: 1 });
    const meta = await metadataOf(id);
    expect(meta.KeyState).toBe("PendingDeletion");
    const window = meta.DeletionDate!.getTime() - before;
    expect(window >= 30 * DAY_MS - 1000 && window <= 30 * DAY_MS + 60_000).toBe(true);
    emulator.resetLog();
    const pending = `aws-kms: key ${id} cannot be used in its current state (pending deletion): cancel its deletion (kms:CancelKeyDeletion) and enable it, or point the tenant at another key ${docs("KMS_KEY_DISABLED")}`;
    for (const error of [
      await kmsErrorOf(p.generateDataKey({ keyId: id, context: CONTEXT })),
      await kmsErrorOf(p.unwrapDataKey({ keyId: id, keyVersion: dk.keyVersion, wrappedKey: dk.wrappedKey, context: CONTEXT })),
    ]) {
      expect({ code: error.code, cause: (error.cause as Error).name, message: error.message }).toEqual({ code: "KMS_KEY_DISABLED", cause: "KMSInvalidStateException", message: pending });
    }
    expect(emulator.counts()).toEqual({ GenerateDataKey: 1, Decrypt: 1 });
    // Scheduling again: AWS refuses (already pending), and the fix says there is nothing more to do.
    const again = await kmsErrorOf(p.disableKey(id, { mode: "schedule-destruction" }));
    expect({ code: again.code, message: again.message, requestId: typeof again.requestId }).toEqual({
      code: "KMS_KEY_DISABLED",
      message: `aws-kms: key ${id} cannot be used in its current state (pending deletion): its deletion is already scheduled: nothing more to do (DescribeKey shows its DeletionDate) ${docs("KMS_KEY_DISABLED")}`,
      requestId: "string",
    });
  });

  it("schedule-destruction uses pendingWindowInDays (7 to 30); other values are a KmsConfigError", async () => {
    const { keyId: id } = emulator.createKey();
    const before = Date.now();
    await provider(undefined, { pendingWindowInDays: 7 }).disableKey(id, { mode: "schedule-destruction" });
    const window = (await metadataOf(id)).DeletionDate!.getTime() - before;
    expect(window >= 7 * DAY_MS - 1000 && window <= 7 * DAY_MS + 60_000).toBe(true);
    for (const pendingWindowInDays of [6, 31, 7.5, Number.NaN]) {
      let error: unknown;
      try {
        awsKmsProvider({ ...emulator.clientConfig(), pendingWindowInDays });
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(KmsConfigError);
      expect((error as KmsConfigError).issues.map((i) => i.path)).toEqual(["pendingWindowInDays"]);
    }
  });

  it("an alias is resolved by DescribeKey first: DisableKey and ScheduleKeyDeletion take a key id or ARN only", async () => {
    const created = emulator.createKey({ alias: "alias/shred-me" });
    const result = await provider().disableKey("alias/shred-me", { mode: "disable" });
    expect(result).toEqual({ requestId: expect.stringMatching(UUID) });
    expect(emulator.requests.map((r) => [r.operation, r.keyId])).toEqual([
      ["DescribeKey", "alias/shred-me"],
      ["DisableKey", created.arn],
    ]);
    expect(emulator.key(created.keyId).state).toBe("Disabled");
  });

  it("an unknown mode or a malformed key id is INPUT_INVALID, without a call", async () => {
    const p = provider();
    for (const call of [
      () => p.disableKey(keyId, { mode: "destroy-now" as never }),
      () => p.disableKey(keyId, undefined as never),
      () => p.disableKey("not a key", { mode: "disable" }),
    ]) {
      expect((await kmsErrorOf(call())).code).toBe("INPUT_INVALID");
    }
    expect(emulator.count()).toBe(0);
  });

  it("without kms:DisableKey / kms:ScheduleKeyDeletion (the runtime role): KMS_ACCESS_DENIED naming the action; the key stays enabled", async () => {
    const p = provider(PARTIAL.accessKeyId);
    const created = emulator.createKey();
    for (const [mode, action] of [["disable", "kms:DisableKey"], ["schedule-destruction", "kms:ScheduleKeyDeletion"]] as const) {
      const error = await kmsErrorOf(p.disableKey(created.keyId, { mode }));
      expect({ code: error.code, retryable: error.retryable, requestId: typeof error.requestId }).toEqual({ code: "KMS_ACCESS_DENIED", retryable: false, requestId: "string" });
      expect(error.message).toBe(
        `aws-kms: access denied: ${PARTIAL.principal} may not perform ${action} on ${created.arn}: shred with the key-administration credentials, ` +
          `whose IAM policy and key policy allow this action (the application's runtime role must not) ${docs("KMS_ACCESS_DENIED")}`,
      );
    }
    expect(emulator.counts()).toEqual({ DisableKey: 1, ScheduleKeyDeletion: 1 });
    expect(emulator.key(created.keyId).state).toBe("Enabled");
    expect((await p.generateDataKey({ keyId: created.keyId, context: CONTEXT })).plaintextKey).toHaveLength(32);
  });

  it("has its own deadline (disableKeyTimeoutMs): a non-retryable KMS_TIMEOUT; a caller's abort ends it earlier with the caller's reason", async () => {
    const created = emulator.createKey();
    emulator.inject("DisableKey", { kind: "latency", ms: HELD_MS });
    const error = await kmsErrorOf(provider(undefined, { disableKeyTimeoutMs: 50 }).disableKey(created.keyId, { mode: "disable" }));
    expect({ code: error.code, retryable: error.retryable, message: error.message }).toEqual({
      code: "KMS_TIMEOUT",
      retryable: false,
      message: `aws-kms: DisableKey on ${created.keyId} did not complete within 50 ms: read the key's state (DescribeKey) before trying again: the request may have reached AWS ${docs("KMS_TIMEOUT")}`,
    });
    const controller = new AbortController();
    const pending = kmsErrorOf(provider().disableKey(created.keyId, { mode: "disable", signal: controller.signal }));
    while (emulator.pending < 2) await new Promise((resolve) => setTimeout(resolve, 5));
    const reason = new KmsError("KMS_TIMEOUT", "the caller gave up");
    controller.abort(reason);
    expect(await pending).toBe(reason);
    expect(emulator.count("DisableKey")).toBe(0); // both still held: logged only once answered (at stop())
    expect(emulator.key(created.keyId).state).toBe("Enabled");
  });
});

describe("close()", () => {
  it("destroys the client it built, once; every later call is KMS_CLOSED", async () => {
    const destroy = jest.spyOn(KMSClient.prototype, "destroy");
    try {
      const p = provider();
      await p.close();
      await p.close();
      expect(destroy).toHaveBeenCalledTimes(1);
      const calls: Promise<unknown>[] = [
        p.generateDataKey({ keyId: alias, context: CONTEXT }),
        p.wrapDataKey({ keyId: alias, plaintextKey: randomBytes(32), context: CONTEXT }),
        p.unwrapDataKey({ keyId: alias, keyVersion: "", wrappedKey: randomBytes(40), context: CONTEXT }),
        p.describeKey(alias),
        p.rotateKey(alias),
        p.checkHealth([alias]),
        p.validatePermissions(alias),
      ];
      for (const call of calls) expect((await kmsErrorOf(call)).code).toBe("KMS_CLOSED");
      expect(emulator.count()).toBe(0);
    } finally {
      destroy.mockRestore();
    }
  });

  it("leaves an injected client open for its owner", async () => {
    const client = new KMSClient({ ...emulator.clientConfig(), maxAttempts: 1 });
    try {
      const p = awsKmsProvider({ client });
      expect((await p.describeKey(alias)).enabled).toBe(true);
      await p.close();
      expect((await client.send(new DescribeKeyCommand({ KeyId: alias }))).KeyMetadata?.Arn).toBe(arn);
    } finally {
      client.destroy();
    }
  });
});

describe("settings and key ids", () => {
  it("parseSettings accepts region, endpoint, static credentials and timeouts", () => {
    const raw = { region: "eu-central-1", endpoint: "https://kms-fips.eu-central-1.amazonaws.com", credentials: { accessKeyId: "AKIAEXAMPLE", secretAccessKey: "s3cr3t", sessionToken: "tok" }, connectionTimeoutMs: 1000, requestTimeoutMs: 5000 };
    expect(awsKms.parseSettings(raw)).toEqual({ ok: true, settings: raw });
    expect(awsKms.parseSettings({ region: "us-gov-west-1" })).toEqual({ ok: true, settings: { region: "us-gov-west-1" } });
  });

  it("parseSettings reports every problem with its path, and never echoes a value", () => {
    const result = awsKms.parseSettings({
      endpoint: "https://user:pw-secret@kms.example.com",
      credentials: { accessKeyId: "AKIA EXAMPLE", secretAccessKey: "", extra: "x" },
      maxAttempts: 3,
      requestTimeoutMs: 0,
      retries: 1,
    });
    expect(result).toEqual({
      ok: false,
      issues: [
        { path: "maxAttempts", message: "not configurable: the SDK makes one attempt per call, and core's resilience.retry does the retrying" },
        { path: "retries", message: "unknown setting (expected region, endpoint, credentials, connectionTimeoutMs, requestTimeoutMs)" },
        { path: "region", message: "must be an AWS region such as us-east-1" },
        { path: "endpoint", message: "must not carry credentials: use settings.credentials or the SDK's credential chain" },
        { path: "credentials.extra", message: "unknown setting (expected accessKeyId, secretAccessKey, sessionToken)" },
        { path: "credentials.accessKeyId", message: "must be an access key id (letters and digits)" },
        { path: "credentials.secretAccessKey", message: "must be a non-empty string" },
        { path: "requestTimeoutMs", message: "must be a whole number of milliseconds, 1 to 600000" },
      ],
    });
    expect(JSON.stringify(result).includes("pw-secret")).toBe(false);
    expect(awsKms.parseSettings(undefined)).toEqual({ ok: false, issues: [{ path: "", message: "must be an object with at least a region" }] });
    expect(awsKms.parseSettings({ region: "us-east-1", endpoint: "ftp://x" })).toEqual({
      ok: false,
      issues: [{ path: "endpoint", message: "must be an http(s) URL such as https://kms.us-east-1.amazonaws.com" }],
    });
  });

  it("keyIdProblem accepts the four AWS forms (and multi-Region keys) and explains the rest", () => {
    const good = [keyId, arn, alias, `arn:aws:kms:${REGION}:${ACCOUNT}:${alias}`, "mrk-1234abcd12ab34cd56ef1234567890ab", `arn:aws-us-gov:kms:us-gov-west-1:${ACCOUNT}:key/${keyId}`];
    expect(good.map((id) => awsKms.keyIdProblem!(id))).toEqual(good.map(() => undefined));
    for (const bad of ["key-1", "alias", "alias/with space", `arn:aws:kms:${REGION}:${ACCOUNT}:key/not-a-uuid`, `${keyId.toUpperCase()}`]) {
      expect({ bad, problem: awsKms.keyIdProblem!(bad) }).toEqual({ bad, problem: AWS_KEY_ID_RULE });
    }
  });

  it("awsKmsProvider throws one KmsConfigError listing every problem", () => {
    const thrown = (fn: () => unknown) => {
      try {
        fn();
      } catch (error) {
        return error as KmsConfigError;
      }
      throw new Error("expected a throw");
    };
    const error = thrown(() => awsKmsProvider({ region: "nowhere", rotationWaitMs: 0 }));
    expect(error).toBeInstanceOf(KmsConfigError);
    expect(error.issues.map((i) => [i.path, i.code])).toEqual([["region", "KMS_CONFIG_INVALID"], ["rotationWaitMs", "KMS_CONFIG_INVALID"]]);
    const client = new KMSClient({ region: REGION });
    try {
      expect(thrown(() => awsKmsProvider({ client, region: REGION })).issues.map((i) => i.path)).toEqual(["region"]);
    } finally {
      client.destroy();
    }
  });

  it("createKms refuses a configured key id AWS could never resolve, at start-up", () => {
    const create = () =>
      createKms({
        registry: [awsKms],
        config: { providers: { "aws-kms": { region: REGION } }, tenants: { defaultKey: { provider: "aws-kms", keyId: "my-key" } } },
        env: {},
      });
    expect(create).toThrow(KmsConfigError);
    expect(create).toThrow(AWS_KEY_ID_RULE);
  });
});
