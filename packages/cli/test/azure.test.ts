/**
 * `kms validate` with an Azure Key Vault configuration file, the built CLI run as a child process
 * against the Key Vault emulator. The CLI authenticates as it would in Azure: `DefaultAzureCredential`,
 * here through App Service's managed identity (`IDENTITY_ENDPOINT` / `IDENTITY_HEADER`, served by the
 * testkit's endpoint). `AZURE_TOKEN_CREDENTIALS=prod` keeps the developer credentials (Azure CLI,
 * VS Code…) out of the chain, so nothing outside this machine is ever tried; the emulator's certificate
 * is trusted through NODE_EXTRA_CA_CERTS, TLS verification staying on. `kms init` writes such a file.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "@jest/globals";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { docsUrlFor } from "@kms/core";
import { AppServiceManagedIdentityEndpoint, AzureKeyVaultEmulator } from "@kms/testkit/emulators";
import { kms } from "./run";

const IDENTITY = "kms-cli";
const KEY = "tenant-keys";
const DOCS = "https://github.com/kms-toolkit/kms/blob/main/docs/setup/AZURE_KEY_VAULT_SETUP.md#permissions";
const PERMISSIONS = ["get", "wrapKey", "unwrapKey"] as const;
let dir: string;
let config: string;
let emulator: AzureKeyVaultEmulator;
let identity: AppServiceManagedIdentityEndpoint;
let env: Record<string, string>;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "kms-cli-azure-"));
  emulator = new AzureKeyVaultEmulator();
  await emulator.start();
  await emulator.createKey(KEY);
  identity = new AppServiceManagedIdentityEndpoint(emulator.credential(IDENTITY));
  await identity.start();
  const ca = join(dir, "emulator-ca.pem");
  writeFileSync(ca, emulator.ca);
  env = { ...identity.env(), AZURE_TOKEN_CREDENTIALS: "prod", NODE_EXTRA_CA_CERTS: ca };
  config = join(dir, "kms.config.json");
  writeFileSync(
    config,
    JSON.stringify({
      providers: { "azure-key-vault": { vaultUrl: emulator.url, disableChallengeResourceVerification: true } },
      tenants: { defaultKey: { provider: "azure-key-vault", keyId: KEY } },
      resilience: { retry: { maxAttempts: 1 } },
    }),
  );
});

afterAll(async () => {
  await identity.stop();
  await emulator.stop();
  rmSync(dir, { recursive: true, force: true });
});

beforeEach(() => {
  emulator.setPermissions(IDENTITY, "*");
  emulator.resetLog();
  identity.resetLog();
});

describe("kms validate against the Azure Key Vault emulator, as a managed identity", () => {
  it("passes every check, with one token from the identity endpoint", async () => {
    const result = await kms(["validate", "--config", config], { cwd: dir, env });
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    expect(result.stdout.split("\n")).toEqual([...PERMISSIONS.map((p) => `PASS azure-key-vault ${KEY} ${p}`), "3 checks: 3 passed, 0 failed", ""]);
    expect(identity.requests).toEqual([{ resource: "https://vault.azure.net", status: 200 }]);
    expect(emulator.requests.filter((r) => r.operation !== "Challenge").map((r) => [r.operation, r.status, r.identity])).toEqual([
      ["GetKey", 200, IDENTITY],
      ["WrapKey", 200, IDENTITY],
      ["UnwrapKey", 200, IDENTITY],
    ]);
  });

  it("names exactly the missing data action and its fix (exit 1)", async () => {
    emulator.setPermissions(IDENTITY, ["get", "wrapKey"]);
    const result = await kms(["validate", "--config", config], { cwd: dir, env });
    expect(result.stderr).toBe("");
    expect(result.code).toBe(1);
    expect(result.stdout.split("\n")).toEqual([
      `PASS azure-key-vault ${KEY} get`,
      `PASS azure-key-vault ${KEY} wrapKey`,
      `FAIL azure-key-vault ${KEY} unwrapKey — unwrapKey on key ${KEY}: assign the role "Key Vault Crypto Service Encryption User" (Managed HSM: "Managed HSM Crypto Service Encryption User") to the identity on the key or vault, or, with access policies, grant the key permission "unwrapKey" (${DOCS})`,
      "3 checks: 2 passed, 1 failed",
      "",
    ]);
    expect(emulator.requests.filter((r) => r.operation === "UnwrapKey").map((r) => r.status)).toEqual([403]);
  });

  it("a wrong IDENTITY_HEADER: access denied, the header's value never printed (exit 1)", async () => {
    const wrong = "0".repeat(48);
    const run = (json: boolean) => kms(["validate", "--config", config, ...(json ? ["--json"] : [])], { cwd: dir, env: { ...env, IDENTITY_HEADER: wrong } });
    const CREDENTIAL_FIX = "check the provider's credential (by default DefaultAzureCredential: AZURE_* service principal variables, workload identity, managed identity, az login) and that it issues tokens for https://vault.azure.net";
    const text = await run(false);
    expect(text.code).toBe(1);
    expect(text.stdout.split("\n")).toEqual([
      `FAIL azure-key-vault ${KEY} get — get on key ${KEY}: ${CREDENTIAL_FIX} (${DOCS})`,
      `FAIL azure-key-vault ${KEY} wrapKey — wrapKey on key ${KEY}: ${CREDENTIAL_FIX} (${DOCS})`,
      `FAIL azure-key-vault ${KEY} unwrapKey — unwrapKey on key ${KEY}: grant wrapKey too, then validate again to check unwrapKey (${DOCS})`,
      "3 checks: 0 passed, 3 failed",
      "",
    ]);
    const json = await run(true);
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stdout).keys[0].checks.map((c: { error?: { code: string } }) => c.error?.code)).toEqual(["KMS_ACCESS_DENIED", "KMS_ACCESS_DENIED", "KMS_PROVIDER_ERROR"]);
    for (const output of [text.stdout, text.stderr, json.stdout, json.stderr]) {
      expect(output).not.toContain(wrong);
      expect(output).not.toContain(env.IDENTITY_HEADER);
    }
    // Refused by the identity endpoint (once per Key Vault client that asked: get and wrapKey, in each
    // run); Key Vault saw challenges only, never a token.
    expect(identity.requests).toEqual(Array.from({ length: 4 }, () => ({ resource: "https://vault.azure.net", status: 401 })));
    expect(emulator.requests.filter((r) => r.operation !== "Challenge")).toEqual([]);
  });
});

describe("kms init --provider azure-key-vault", () => {
  const written = () => join(dir, "init.json");
  const init = (extra: readonly string[], runEnv: Record<string, string> = env) =>
    kms(["init", "--yes", "--force", "--config", written(), "--provider", "azure-key-vault", "--key", KEY, ...extra], { cwd: dir, env: runEnv });

  beforeEach(() => rmSync(written(), { force: true }));

  it("writes the vault URL and the key name, no credential, and its validate passes", async () => {
    const result = await init(["--vault-url", emulator.url]);
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    expect(result.stdout.split("\n")).toEqual([`wrote ${written()}`, ...PERMISSIONS.map((p) => `PASS azure-key-vault ${KEY} ${p}`), "3 checks: 3 passed, 0 failed", ""]);
    // A loopback host is an emulator: the challenge's resource (Azure's) cannot match it.
    expect(readFileSync(written(), "utf8")).toBe(
      `${JSON.stringify(
        {
          providers: { "azure-key-vault": { vaultUrl: emulator.url, disableChallengeResourceVerification: true } },
          tenants: { defaultKey: { provider: "azure-key-vault", keyId: KEY } },
          rotation: { cryptoperiodDays: 90 },
        },
        null,
        2,
      )}\n`,
    );
    expect(statSync(written()).mode & 0o777).toBe(0o600);
    expect(readFileSync(written(), "utf8")).not.toContain(env.IDENTITY_HEADER);
    expect(identity.requests).toEqual([{ resource: "https://vault.azure.net", status: 200 }]);
  });

  it("an Azure vault URL is written as its origin, the challenge check kept (--no-validate)", async () => {
    const result = await init(["--vault-url", "https://my-vault.vault.azure.net/", "--no-validate"]);
    expect(result).toEqual({ code: 0, stdout: `wrote ${written()}\n`, stderr: "" });
    expect(JSON.parse(readFileSync(written(), "utf8")).providers).toEqual({ "azure-key-vault": { vaultUrl: "https://my-vault.vault.azure.net" } });
  });

  it("--credentials environment: a managed identity endpoint or service principal variables must be set (exit 2 otherwise, nothing written)", async () => {
    const ok = await init(["--vault-url", emulator.url, "--credentials", "environment", "--no-validate"]);
    expect(ok).toEqual({ code: 0, stdout: `wrote ${written()}\n`, stderr: "" });
    const principal = { AZURE_TENANT_ID: "t", AZURE_CLIENT_ID: "c", AZURE_CLIENT_SECRET: "a client secret" };
    const secret = await init(["--vault-url", emulator.url, "--credentials", "environment", "--no-validate"], principal);
    expect(secret).toEqual({ code: 0, stdout: `wrote ${written()}\n`, stderr: "" });
    expect(readFileSync(written(), "utf8")).not.toContain(principal.AZURE_CLIENT_SECRET);
    rmSync(written());
    const missing = await init(["--vault-url", emulator.url, "--credentials", "environment"], { AZURE_TENANT_ID: "t", AZURE_CLIENT_ID: "c" });
    expect(missing.code).toBe(2);
    expect(missing.stdout).toBe("");
    expect(missing.stderr.split("\n")[0]).toBe(
      "kms init: --credentials: not set in the environment: AZURE_TENANT_ID + AZURE_CLIENT_ID + AZURE_CLIENT_SECRET, or AZURE_TENANT_ID + AZURE_CLIENT_ID + AZURE_CLIENT_CERTIFICATE_PATH, or AZURE_TENANT_ID + AZURE_CLIENT_ID + AZURE_FEDERATED_TOKEN_FILE, or IDENTITY_ENDPOINT",
    );
    expect(existsSync(written())).toBe(false);
  });

  it("--vault-url is required, https only, checked by @kms/azure's settings (exit 2)", async () => {
    const missing = await init([]);
    expect([missing.code, missing.stderr.split("\n")[0]]).toEqual([2, "kms init: missing --vault-url (no default with --provider azure-key-vault)"]);
    const http = await init(["--vault-url", "http://my-vault.vault.azure.net"]);
    expect([http.code, http.stderr.split("\n")[0]]).toEqual([
      2,
      "kms init: --vault-url: must be the vault's https URL, such as https://my-vault.vault.azure.net (https only: the access token travels with every request)",
    ]);
    const key = await init(["--vault-url", emulator.url, "--key", "alias/app"]);
    expect([key.code, key.stderr.split("\n")[0]]).toEqual([
      2,
      "kms init: --key: Azure Key Vault key ids are a key name in the configured vault (1-127 letters, digits and dashes), optionally pinned to one version as <name>/<32 hex digit version>",
    ]);
    const other = await kms(["init", "--yes", "--config", written(), "--provider", "vault", "--vault-address", "https://vault.example.com:8200", "--vault-url", emulator.url], { cwd: dir, env });
    expect([other.code, other.stderr.split("\n")[0]]).toEqual([2, "kms init: --vault-url does not apply to --provider vault"]);
    expect(existsSync(written())).toBe(false);
  });
});

describe("an invalid AZURE_TOKEN_CREDENTIALS", () => {
  it("is a configuration issue naming the accepted values, not an unexpected failure (exit 2)", async () => {
    const result = await kms(["validate", "--config", config], { cwd: dir, env: { ...env, AZURE_TOKEN_CREDENTIALS: "nonsense" } });
    expect(result).toEqual({
      code: 2,
      stdout: "",
      stderr: `KMS_CONFIG_INVALID providers.azure-key-vault: the Azure credential (DefaultAzureCredential) could not be created: AZURE_TOKEN_CREDENTIALS must be one of prod, dev, EnvironmentCredential, WorkloadIdentityCredential, ManagedIdentityCredential, VisualStudioCodeCredential, AzureCliCredential, AzurePowerShellCredential, AzureDeveloperCliCredential (${docsUrlFor("KMS_CONFIG_INVALID")})\n`,
    });
    expect(identity.requests).toEqual([]);
  });
});
