// The SDK warns once per process on Node 20 (it will require Node 22 from 2027); not under test here.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = "true";

import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "@jest/globals";
import { describeProviderConformance } from "@kms/testkit";
import { AWS_EMULATOR_IDENTITY, AwsKmsEmulator } from "@kms/testkit/emulators";
import { type AwsKmsProvider, awsKmsProvider } from "../src";

const emulator = new AwsKmsEmulator();

beforeAll(async () => {
  await emulator.start();
});

afterAll(async () => {
  await emulator.stop();
});

/** A provider through the real SDK, signing as the emulator's default identity. */
const newProvider = (): AwsKmsProvider => awsKmsProvider(emulator.clientConfig());

const summary = describeProviderConformance(
  "aws-kms",
  () => {
    // A key per test, by alias: every id form resolves through the same path (key-id forms are
    // covered one by one in provider.test.ts).
    const alias = `alias/conformance-${randomUUID()}`;
    emulator.createKey({ alias });
    return { provider: newProvider(), keyId: alias };
  },
  {
    capabilities: { encryptionContext: true, rotation: true, generatesDataKeys: true },
    faults: {
      missingKeyId: () => randomUUID(),
      disabledKeyId: () => {
        const { keyId } = emulator.createKey();
        emulator.disableKey(keyId);
        return keyId;
      },
      // A whole-service outage: connection refused on the emulator's port until it listens again.
      makeUnavailable: () => emulator.outage(),
      // The identity loses every KMS action, as when its IAM policy is detached.
      denyAccess: () => {
        emulator.setAllowedActions(AWS_EMULATOR_IDENTITY.accessKeyId, []);
        return () => emulator.setAllowedActions(AWS_EMULATOR_IDENTITY.accessKeyId, "*");
      },
    },
  },
);

describe("the aws-kms conformance run", () => {
  it("registers every case: nothing is left out", () => {
    expect(summary.notRun).toEqual([]);
  });
});
