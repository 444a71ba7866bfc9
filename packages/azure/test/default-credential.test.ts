/**
 * `azureKeyVault()` without a credential: each provider created authenticates with its own
 * `new DefaultAzureCredential()`, made in `create`, not before. Here the chain finds App Service's
 * managed identity (`IDENTITY_ENDPOINT` / `IDENTITY_HEADER`, the testkit's endpoint on 127.0.0.1);
 * `AZURE_TOKEN_CREDENTIALS=prod` keeps developer credentials (Azure CLI…) out of it, so nothing
 * beyond this machine is tried. The emulator's certificate is trusted through the `ca` setting.
 *
 * One identity endpoint for the whole file: MSAL keeps the managed identity source and its tokens
 * process-wide (static), so a second endpoint in the same process would not be asked.
 */
import { afterAll, beforeAll, describe, expect, it } from "@jest/globals";
import { createKms, docsUrlFor, KmsConfigError } from "@kms/core";
import { AppServiceManagedIdentityEndpoint, AzureKeyVaultEmulator } from "@kms/testkit/emulators";
import { azureKeyVault } from "../src";

const IDENTITY = "kms-service";
const KEY = "tenant-keys";
const ENV = ["IDENTITY_ENDPOINT", "IDENTITY_HEADER", "AZURE_TOKEN_CREDENTIALS", "AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_FEDERATED_TOKEN_FILE", "MSI_ENDPOINT", "IDENTITY_SERVER_THUMBPRINT", "IMDS_ENDPOINT"];
const saved = Object.fromEntries(ENV.map((name) => [name, process.env[name]]));
// Made before the environment below exists: the credential must not be made here.
const definition = azureKeyVault();
const emulator = new AzureKeyVaultEmulator();
const endpoint = new AppServiceManagedIdentityEndpoint(emulator.credential(IDENTITY));

beforeAll(async () => {
  await emulator.start();
  await emulator.createKey(KEY);
  await endpoint.start();
  for (const name of ENV) delete process.env[name];
});

afterAll(async () => {
  for (const name of ENV) {
    if (saved[name] === undefined) delete process.env[name];
    else process.env[name] = saved[name];
  }
  await endpoint.stop();
  await emulator.stop();
});

describe("azureKeyVault() without a credential", () => {
  it("makes a DefaultAzureCredential when a provider is created, not before (an invalid AZURE_TOKEN_CREDENTIALS fails there, as a configuration issue)", async () => {
    process.env.AZURE_TOKEN_CREDENTIALS = "nonsense";
    try {
      const again = azureKeyVault();
      expect(again.id).toBe("azure-key-vault");
      expect(again.parseSettings({ vaultUrl: emulator.url }).ok).toBe(true);
      let thrown: unknown;
      try {
        again.create({ vaultUrl: emulator.url });
      } catch (error) {
        thrown = error;
      }
      expect(thrown).toBeInstanceOf(KmsConfigError);
      expect((thrown as KmsConfigError).code).toBe("KMS_CONFIG_INVALID");
      expect((thrown as KmsConfigError).issues).toEqual([
        {
          path: "providers.azure-key-vault",
          code: "KMS_CONFIG_INVALID",
          message:
            "the Azure credential (DefaultAzureCredential) could not be created: AZURE_TOKEN_CREDENTIALS must be one of prod, dev, EnvironmentCredential, WorkloadIdentityCredential, ManagedIdentityCredential, VisualStudioCodeCredential, AzureCliCredential, AzurePowerShellCredential, AzureDeveloperCliCredential",
          docsUrl: docsUrlFor("KMS_CONFIG_INVALID"),
        },
      ]);
      // The value is the user's: not repeated.
      expect((thrown as Error).message).not.toContain("nonsense");
      // Accepted values are compared as @azure/identity does: case and surrounding blanks ignored.
      // (AzureCliCredential: made without touching MSAL's process-wide managed identity state.)
      process.env.AZURE_TOKEN_CREDENTIALS = " azureCLIcredential ";
      await again.create({ vaultUrl: emulator.url }).close();
    } finally {
      delete process.env.AZURE_TOKEN_CREDENTIALS;
    }
    expect(endpoint.requests).toEqual([]);
    expect(emulator.count()).toBe(0);
  });

  it("validates and encrypts through createKms as the managed identity: no request until the first call, one token", async () => {
    Object.assign(process.env, endpoint.env(), { AZURE_TOKEN_CREDENTIALS: "prod" });
    const kms = createKms({
      registry: [definition],
      config: {
        providers: { "azure-key-vault": { vaultUrl: emulator.url, ca: emulator.ca, disableChallengeResourceVerification: true } },
        tenants: { defaultKey: { provider: "azure-key-vault", keyId: KEY } },
      },
    });
    try {
      expect(endpoint.requests).toEqual([]);
      expect(emulator.count()).toBe(0);
      const report = await kms.validatePermissions();
      expect(report.keys.flatMap((k) => k.checks.map((c) => [c.permission, c.ok]))).toEqual([
        ["get", true],
        ["wrapKey", true],
        ["unwrapKey", true],
      ]);
      const envelope = await kms.encrypt("tenant-a", "hello", { table: "t" });
      expect((await kms.decrypt("tenant-a", envelope, { table: "t" })).toString()).toBe("hello");
      expect(endpoint.requests).toEqual([{ resource: "https://vault.azure.net", status: 200 }]);
      const authenticated = emulator.requests.filter((r) => r.operation !== "Challenge");
      expect(authenticated.map((r) => [r.operation, r.status, r.identity])).toEqual([
        ["GetKey", 200, IDENTITY],
        ["WrapKey", 200, IDENTITY],
        ["UnwrapKey", 200, IDENTITY],
        ["WrapKey", 200, IDENTITY],
        ["UnwrapKey", 200, IDENTITY],
      ]);
    } finally {
      await kms.close();
    }
  });
});
