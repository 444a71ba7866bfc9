// The SDK warns once per process on Node 20 (it will require Node 22 from 2027); not under test here.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = "true";

/**
 * describeKey's `rotatedAt` (DescribeKey + ListKeyRotations), against the emulator on a clock of its
 * own, and the rotation scheduler's rule on top of it: a key is due when
 * `now - (rotatedAt ?? createdAt) >= cryptoperiod` (@kms/rotation, scheduler.ts `versionStart`).
 * Without `rotatedAt`, an AWS key older than the cryptoperiod was due at every pass and rotated on
 * demand each time.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "@jest/globals";
import { type KeyDescription, TROUBLESHOOTING_URL } from "@kms/core";
import { AWS_EMULATOR_IDENTITY, AwsKmsEmulator, type AwsKmsRoute, type EmulatorRequest, type EmulatorResponse } from "@kms/testkit/emulators";
import { AWS_ROTATION_PERMISSIONS, AWS_RUNTIME_PERMISSIONS, type AwsKmsProvider, awsKmsProvider } from "../src";
import { kmsErrorOf } from "@kms/testkit";

const DAY_MS = 86_400_000;
const CRYPTOPERIOD_MS = 90 * DAY_MS;
const START = new Date("2026-01-05T10:00:00.000Z");
const ROTATOR = { accessKeyId: "AKIAROTATOR000000001", secretAccessKey: "rotator-secret-access-key", principal: "arn:aws:iam::111122223333:role/rotator" };
const JSON_TYPE = { "content-type": "application/x-amz-json-1.1" };

/**
 * The emulator, with two hooks on ListKeyRotations: `pageSize` overrides the request's Limit (to page
 * through a short list), and `listReply` answers instead of the emulator (what it never says: other
 * orders, missing fields, a lagging list, errors).
 */
class ListingEmulator extends AwsKmsEmulator {
  pageSize: number | undefined;
  listReply: ((input: Record<string, unknown>) => EmulatorResponse) | undefined;

  protected override handle(req: EmulatorRequest, routed: AwsKmsRoute): EmulatorResponse {
    const input = routed.state?.input;
    if (routed.operation === "ListKeyRotations" && input !== undefined) {
      if (this.listReply !== undefined) return this.listReply(input);
      if (this.pageSize !== undefined) input.Limit = this.pageSize;
    }
    return super.handle(req, routed);
  }
}

let now = START;
const emulator = new ListingEmulator({ now: () => now, credentials: [AWS_EMULATOR_IDENTITY, ROTATOR] });
const providers: AwsKmsProvider[] = [];

function provider(accessKeyId?: string): AwsKmsProvider {
  const p = awsKmsProvider({ ...emulator.clientConfig(accessKeyId), rotationPollIntervalMs: 1 });
  providers.push(p);
  return p;
}

const advance = (days: number) => (now = new Date(now.getTime() + days * DAY_MS));

beforeAll(async () => {
  await emulator.start();
});

afterAll(async () => {
  await emulator.stop();
});

beforeEach(() => {
  now = START;
  emulator.resetLog();
  emulator.setAllowedActions(ROTATOR.accessKeyId, AWS_ROTATION_PERMISSIONS);
});

afterEach(async () => {
  emulator.clearFaults();
  emulator.pageSize = undefined;
  emulator.listReply = undefined;
  await Promise.all(providers.splice(0).map((p) => p.close()));
});

/** A key created at START, `ageDays` ago now. */
function oldKey(ageDays: number, alias?: string) {
  now = START;
  const key = emulator.createKey(alias === undefined ? {} : { alias });
  advance(ageDays);
  emulator.resetLog();
  return key;
}

/** The scheduler's rule (@kms/rotation scheduler.ts): due when the current version is a cryptoperiod old. */
function due(key: KeyDescription): boolean {
  const start = (key.rotatedAt ?? key.createdAt)?.getTime();
  return start !== undefined && now.getTime() - start >= CRYPTOPERIOD_MS;
}

/** One scheduler pass over one key, as @kms/rotation runs it: describe, and rotate only when due. */
async function pass(p: AwsKmsProvider, keyId: string): Promise<"rotated" | "current"> {
  if (!due(await p.describeKey(keyId))) return "current";
  await p.rotateKey(keyId);
  return "rotated";
}

const listReply = (body: Record<string, unknown>): EmulatorResponse => ({ status: 200, headers: JSON_TYPE, body });
const seconds = (date: Date) => date.getTime() / 1000;

describe("describeKey: rotatedAt from ListKeyRotations", () => {
  it("a key never rotated has no rotatedAt (createdAt dates it): one DescribeKey and one ListKeyRotations", async () => {
    const { keyId } = oldKey(10);
    const description = await provider().describeKey(keyId);
    expect(description).toEqual({ keyId, enabled: true, currentVersion: emulator.key(keyId).keyMaterialIds[0], createdAt: START });
    expect(emulator.counts()).toEqual({ DescribeKey: 1, ListKeyRotations: 1 });
  });

  it("rotatedAt is the date of the rotation that made the current key material current, automatic or on demand", async () => {
    const { keyId, arn } = oldKey(100, "alias/rotated");
    const p = provider();
    emulator.rotate(keyId); // AWS's scheduled rotation, 100 days after creation
    const automatic = emulator.key(keyId).rotations[0]!;
    expect(automatic).toEqual({ keyMaterialId: emulator.key(keyId).keyMaterialIds[1], rotationDate: now, rotationType: "AUTOMATIC" });
    expect(await p.describeKey("alias/rotated")).toEqual({
      keyId: "alias/rotated",
      enabled: true,
      currentVersion: automatic.keyMaterialId,
      createdAt: START,
      rotatedAt: automatic.rotationDate,
    });

    advance(30);
    await p.rotateKey(keyId); // RotateKeyOnDemand, 130 days after creation
    const onDemand = emulator.key(keyId).rotations[1]!;
    expect(onDemand).toMatchObject({ rotationDate: now, rotationType: "ON_DEMAND" });
    emulator.resetLog();
    const description = await p.describeKey("alias/rotated");
    expect({ version: description.currentVersion, rotatedAt: description.rotatedAt }).toEqual({ version: onDemand.keyMaterialId, rotatedAt: onDemand.rotationDate });
    expect(emulator.counts()).toEqual({ DescribeKey: 1, ListKeyRotations: 1 });
    // DescribeKey takes the alias; ListKeyRotations takes no alias and is sent the ARN DescribeKey returned.
    expect(emulator.requests.map((r) => `${r.operation} ${r.keyId}`)).toEqual(["DescribeKey alias/rotated", `ListKeyRotations ${arn}`]);
  });

  it("pages through ListKeyRotations (Limit / NextMarker) until it finds the current key material", async () => {
    const { keyId } = oldKey(1);
    for (let i = 0; i < 3; i++) {
      advance(1);
      emulator.rotate(keyId);
    }
    emulator.pageSize = 1;
    emulator.resetLog();
    const description = await provider().describeKey(keyId);
    expect(description.rotatedAt).toEqual(emulator.key(keyId).rotations[2]!.rotationDate);
    expect(emulator.counts()).toEqual({ DescribeKey: 1, ListKeyRotations: 3 }); // oldest first: the current one is last
  });

  it(`reads at most 10 pages: a longer list is a KMS_PROVIDER_ERROR, not a guess`, async () => {
    const { keyId } = oldKey(1);
    for (let i = 0; i < 11; i++) emulator.rotate(keyId);
    emulator.pageSize = 1;
    emulator.resetLog();
    const error = await kmsErrorOf(provider().describeKey(keyId));
    expect({ code: error.code, retryable: error.retryable }).toEqual({ code: "KMS_PROVIDER_ERROR", retryable: false });
    expect(error.message).toContain(`ListKeyRotations on ${keyId} has more than 10 pages of rotations`);
    expect(emulator.counts()).toEqual({ DescribeKey: 1, ListKeyRotations: 10 });
    // A truncated page without a marker to go on with is refused the same way.
    emulator.listReply = () => listReply({ Rotations: [], Truncated: true });
    expect((await kmsErrorOf(provider().describeKey(keyId))).message).toContain("returned a truncated page without a usable NextMarker");
  });

  it("any order is fine; entries naming no key material: the latest RotationDate; none at all: no rotatedAt", async () => {
    const { keyId } = oldKey(200);
    const current = emulator.key(keyId).keyMaterialIds[0]!;
    const [d1, d2, d3] = [new Date(START.getTime() + 50 * DAY_MS), new Date(START.getTime() + 150 * DAY_MS), new Date(START.getTime() + 100 * DAY_MS)];
    // Newest first, with the current material's entry in the middle: its date, not the latest.
    emulator.listReply = () =>
      listReply({
        Rotations: [
          { KeyId: keyId, KeyMaterialId: "b".repeat(64), RotationDate: seconds(d2), RotationType: "ON_DEMAND" },
          { KeyId: keyId, KeyMaterialId: current, RotationDate: seconds(d3), RotationType: "AUTOMATIC" },
          { KeyId: keyId, KeyMaterialId: "a".repeat(64), RotationDate: seconds(d1), RotationType: "AUTOMATIC" },
        ],
        Truncated: false,
      });
    expect((await provider().describeKey(keyId)).rotatedAt).toEqual(d3);
    // A service that names no key material in the entries (as before 2025): the latest date.
    emulator.listReply = () =>
      listReply({ Rotations: [d1, d2, d3].map((d) => ({ KeyId: keyId, RotationDate: seconds(d), RotationType: "AUTOMATIC" })), Truncated: false });
    expect((await provider().describeKey(keyId)).rotatedAt).toEqual(d2);
    emulator.listReply = () => listReply({ Truncated: false });
    expect((await provider().describeKey(keyId)).rotatedAt).toBeUndefined();
  });

  it("a list that names key materials but not the current one lags DescribeKey: a retryable KMS_PROVIDER_ERROR, never an older date", async () => {
    const { keyId } = oldKey(200);
    emulator.listReply = () =>
      listReply({ Rotations: [{ KeyId: keyId, KeyMaterialId: "a".repeat(64), RotationDate: seconds(START), RotationType: "ON_DEMAND" }], Truncated: false });
    const error = await kmsErrorOf(provider().describeKey(keyId));
    expect({ code: error.code, retryable: error.retryable }).toEqual({ code: "KMS_PROVIDER_ERROR", retryable: true });
    expect(error.message).toContain(`ListKeyRotations on ${keyId} does not list the current key material yet`);
  });

  it("a key that cannot rotate (UnsupportedOperationException) has no rotatedAt; other ListKeyRotations errors are mapped as usual", async () => {
    const { keyId } = oldKey(5);
    emulator.listReply = () => ({ status: 400, headers: { ...JSON_TYPE, "x-amzn-ErrorType": "UnsupportedOperationException" }, body: { __type: "UnsupportedOperationException", message: "not supported" } });
    expect(await provider().describeKey(keyId)).toEqual({ keyId, enabled: true, currentVersion: emulator.key(keyId).keyMaterialIds[0], createdAt: START });
    emulator.listReply = undefined;
    emulator.inject("ListKeyRotations", { kind: "throttle" }, { times: 1 });
    expect((await kmsErrorOf(provider().describeKey(keyId))).code).toBe("KMS_THROTTLED");
    emulator.inject("ListKeyRotations", { kind: "serverError", status: 500 }, { times: 1 });
    expect((await kmsErrorOf(provider().describeKey(keyId))).code).toBe("KMS_UNAVAILABLE");
  });
});

describe("permissions", () => {
  it("a denied kms:ListKeyRotations fails describeKey with KMS_ACCESS_DENIED naming it (never a creation-date answer)", async () => {
    const { keyId, arn } = oldKey(100);
    emulator.setAllowedActions(ROTATOR.accessKeyId, ["kms:DescribeKey", "kms:RotateKeyOnDemand"]);
    const error = await kmsErrorOf(provider(ROTATOR.accessKeyId).describeKey(keyId));
    const fix =
      "allow this action for the caller in its IAM policy and in the key policy: describeKey reads with it when the current key material became current (the key age of rotation and of the key-age metrics)";
    expect({ code: error.code, retryable: error.retryable, message: error.message }).toEqual({
      code: "KMS_ACCESS_DENIED",
      retryable: false,
      message: `aws-kms: access denied: ${ROTATOR.principal} may not perform kms:ListKeyRotations on ${arn}: ${fix} (KMS_ACCESS_DENIED; see ${TROUBLESHOOTING_URL}#kms_access_denied)`,
    });
    expect(emulator.counts()).toEqual({ DescribeKey: 1, ListKeyRotations: 1 });
  });

  it("AWS_ROTATION_PERMISSIONS are what describeKey and rotateKey need; AWS_RUNTIME_PERMISSIONS cover describeKey too", async () => {
    expect(AWS_ROTATION_PERMISSIONS).toEqual(["kms:DescribeKey", "kms:ListKeyRotations", "kms:RotateKeyOnDemand"]);
    const { keyId } = oldKey(100);
    const p = provider(ROTATOR.accessKeyId); // allowed exactly AWS_ROTATION_PERMISSIONS
    await p.rotateKey(keyId);
    expect((await p.describeKey(keyId)).rotatedAt).toEqual(now);
    // A runtime identity (key-age metrics, re-wrap's current-version check) dates the key the same way.
    emulator.setAllowedActions(ROTATOR.accessKeyId, AWS_RUNTIME_PERMISSIONS);
    expect((await p.describeKey(keyId)).rotatedAt).toEqual(now);
    // Without kms:ListKeyRotations, describeKey is refused, naming it (never dated by creation instead).
    emulator.setAllowedActions(ROTATOR.accessKeyId, AWS_RUNTIME_PERMISSIONS.filter((a) => a !== "kms:ListKeyRotations"));
    expect((await kmsErrorOf(p.describeKey(keyId))).message).toContain("may not perform kms:ListKeyRotations");
  });
});

describe("the rotation scheduler's rule on top of describeKey", () => {
  it("an old key is rotated once, then not due at the next pass: one RotateKeyOnDemand, not one per pass", async () => {
    const { keyId } = oldKey(400); // far older than the 90-day cryptoperiod
    const p = provider(ROTATOR.accessKeyId);
    expect(await pass(p, keyId)).toBe("rotated");
    expect(emulator.count("RotateKeyOnDemand")).toBe(1);
    const rotatedOn = new Date(now);

    // The next pass, an hour later, and many more: the key is dated by its rotation, not its creation.
    for (let i = 0; i < 5; i++) {
      now = new Date(now.getTime() + 3_600_000);
      expect(await pass(p, keyId)).toBe("current");
    }
    const description = await p.describeKey(keyId);
    expect({ createdAt: description.createdAt, rotatedAt: description.rotatedAt }).toEqual({ createdAt: START, rotatedAt: rotatedOn });
    expect(emulator.counts()).toEqual({ DescribeKey: 1 + 2 + 5 + 1, ListKeyRotations: 1 + 5 + 1, RotateKeyOnDemand: 1 });

    // A cryptoperiod after that rotation it is due again, once.
    now = new Date(rotatedOn.getTime() + CRYPTOPERIOD_MS);
    expect(await pass(p, keyId)).toBe("rotated");
    expect(await pass(p, keyId)).toBe("current");
    expect(emulator.count("RotateKeyOnDemand")).toBe(2);
  });

  it("an old key AWS rotated automatically is not due: no on-demand rotation at all", async () => {
    const { keyId } = oldKey(400);
    advance(-30);
    emulator.rotate(keyId); // automatic rotation 30 days ago
    advance(30);
    emulator.resetLog();
    expect(await pass(provider(ROTATOR.accessKeyId), keyId)).toBe("current");
    expect(emulator.counts()).toEqual({ DescribeKey: 1, ListKeyRotations: 1 });
  });
});
