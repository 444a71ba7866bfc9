import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "@jest/globals";
import { describeProviderConformance } from "@kms/testkit";
import { AZURE_EMULATOR_IDENTITY, AzureKeyVaultEmulator } from "@kms/testkit/emulators";
import { azureKeyVaultProvider } from "../src";

const emulator = new AzureKeyVaultEmulator();

beforeAll(async () => {
  await emulator.start();
});

afterAll(async () => {
  await emulator.stop();
});

/** A provider through the real SDK, over HTTPS, trusting the emulator's certificate for this provider only. */
const newProvider = () =>
  azureKeyVaultProvider({ vaultUrl: emulator.url, credential: emulator.credential(), ca: emulator.ca, disableChallengeResourceVerification: true });

const summary = describeProviderConformance(
  "azure-key-vault",
  async () => {
    const name = `conformance-${randomUUID()}`;
    await emulator.createKey(name);
    return { provider: newProvider(), keyId: name };
  },
  {
    // RSA-OAEP has no AAD: the envelope's own AAD and HMAC bind tenant and context (README).
    capabilities: { encryptionContext: false, rotation: true, generatesDataKeys: false },
    faults: {
      missingKeyId: () => `missing-${randomUUID()}`,
      disabledKeyId: async () => {
        const name = `disabled-${randomUUID()}`;
        await emulator.createKey(name);
        emulator.disableKey(name);
        return name;
      },
      // A whole-service outage: connection refused on the emulator's port until it listens again.
      makeUnavailable: () => emulator.outage(),
      // The identity loses every key permission, as when its role assignment is removed.
      denyAccess: () => {
        emulator.setPermissions(AZURE_EMULATOR_IDENTITY, []);
        return () => emulator.setPermissions(AZURE_EMULATOR_IDENTITY, "*");
      },
    },
  },
);

describe("the azure-key-vault conformance run", () => {
  it("registers every case but the ones a service without native context binding cannot have", () => {
    expect(summary.notRun).toEqual([
      { case: "generateDataKey", reason: "capabilities.generatesDataKeys is false (core draws keys and calls wrapDataKey)" },
      { case: "encryption context binding", reason: "capabilities.encryptionContext is false (the envelope's own AAD still binds it)" },
    ]);
  });
});
