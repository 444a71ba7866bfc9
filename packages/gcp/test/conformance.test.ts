import { afterAll, beforeAll, describe, expect, it } from "@jest/globals";
import { KeyManagementServiceClient } from "@google-cloud/kms";
import { describeProviderConformance } from "@kms/testkit";
import { GCP_EMULATOR_IDENTITY, GcpKmsEmulator } from "@kms/testkit/emulators";
import { type GcpKmsProvider, gcpKmsProvider } from "../src";
import { reconnected } from "./support";

const emulator = new GcpKmsEmulator();
/** The client behind each provider (injected, so the test can wait for its reconnection after an outage). */
const clients = new Map<GcpKmsProvider, KeyManagementServiceClient>();

beforeAll(async () => {
  await emulator.start();
});

afterAll(async () => {
  await Promise.all([...clients.values()].map((client) => client.close()));
  await emulator.stop();
});

const summary = describeProviderConformance(
  "gcp-kms",
  () => {
    // A client of the test's own (the provider leaves an injected client open; afterAll closes it).
    const client = new KeyManagementServiceClient(emulator.clientOptions());
    const provider = gcpKmsProvider({ client });
    clients.set(provider, client);
    return { provider, keyId: emulator.createKey() };
  },
  {
    capabilities: { encryptionContext: true, rotation: true, generatesDataKeys: true },
    faults: {
      missingKeyId: () => emulator.keyName(`missing-${Date.now()}`),
      disabledKeyId: () => {
        const keyId = emulator.createKey();
        emulator.disableVersion(keyId);
        return keyId;
      },
      // A whole-service outage: connection refused on the emulator's port until it listens again;
      // the restore waits until the provider's channel is connected again (grpc-js reconnects after a backoff).
      makeUnavailable: async (provider) => {
        const restore = await emulator.outage();
        return async () => {
          await restore();
          const client = clients.get(provider);
          if (client !== undefined) await reconnected(client);
        };
      },
      // The identity loses every permission, as when its IAM bindings are removed.
      denyAccess: () => {
        emulator.setPermissions(GCP_EMULATOR_IDENTITY, []);
        return () => emulator.setPermissions(GCP_EMULATOR_IDENTITY, "*");
      },
    },
  },
);

describe("the gcp-kms conformance run", () => {
  it("registers every case: nothing is left out", () => {
    expect(summary.notRun).toEqual([]);
  });
});
