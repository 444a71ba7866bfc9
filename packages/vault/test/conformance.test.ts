import { afterAll, beforeAll, describe, expect, it } from "@jest/globals";
import { describeProviderConformance } from "@kms/testkit";
import { VaultEmulator } from "@kms/testkit/emulators";
import { type VaultKmsProvider, vaultKmsProvider } from "../src";

const TOKEN = "conformance-token";
/** The paths a data-path token needs (see the README's policy), for every key of the suite. */
const PATHS = ["transit/datakey/plaintext/*", "transit/encrypt/*", "transit/decrypt/*", "transit/keys/*"];

const emulator = new VaultEmulator({ tokens: { [TOKEN]: { name: "app", paths: PATHS } } });
let endpoint: string;
let n = 0;

beforeAll(async () => {
  endpoint = await emulator.start();
});

afterAll(async () => {
  await emulator.stop();
});

const summary = describeProviderConformance<VaultKmsProvider>(
  "vault",
  () => {
    // A fresh derived key per test: rotations in one test never show in another.
    const keyId = `conformance-${++n}`;
    emulator.createKey(keyId, { derived: true });
    return { provider: vaultKmsProvider({ endpoint, auth: { token: TOKEN } }), keyId };
  },
  {
    capabilities: { encryptionContext: true, rotation: true, generatesDataKeys: true },
    faults: {
      missingKeyId: () => "no-such-key",
      // The whole service down: connection refused until restored, on the same port.
      makeUnavailable: async () => emulator.outage(),
      // The token's policy loses every path, as `vault policy write` with an empty policy would do.
      denyAccess: () => {
        emulator.setTokenPaths(TOKEN, []);
        return () => emulator.setTokenPaths(TOKEN, PATHS);
      },
    },
  },
);

describe("the vault conformance run", () => {
  it("runs every case but the disabled key: Vault keys have no disabled state", () => {
    // The suite's case needs generateDataKey/wrapDataKey to fail with KMS_KEY_DISABLED *and*
    // describeKey to say enabled: false. Vault's closest state (min_encryption_version above a
    // version) cannot be set above the latest version, so new data keys always work, and a key read
    // has nothing that says "disabled". Refusals by version policy are mapped (provider.test.ts).
    expect(summary.notRun).toEqual([{ case: "disabled key → KMS_KEY_DISABLED", reason: "no faults.disabledKeyId hook" }]);
    expect(summary.registered).toHaveLength(23);
  });
});
