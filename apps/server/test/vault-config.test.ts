/**
 * A configuration file for Vault without a secret: `auth.tokenFromEnv` is passed to core untouched by
 * `loadServerConfig`, and @kms/vault reads the named variable when core validates the configuration
 * (in-process: what the server's start does with KMS_CONFIG_FILE, minus the HTTP server).
 */
import { afterAll, beforeAll, describe, expect, it } from "@jest/globals";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type KmsConfigError, validateConfig } from "@kms/core";
import { vaultKms } from "@kms/vault";
import { loadServerConfig } from "../src/config";

const VARIABLE = "KMS_SERVER_TEST_VAULT_TOKEN";
let dir: string;
let path: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "kms-server-vault-"));
  path = join(dir, "vault.json");
  writeFileSync(
    path,
    JSON.stringify({
      providers: { vault: { endpoint: "http://127.0.0.1:8200", auth: { tokenFromEnv: VARIABLE } } },
      tenants: { defaultKey: { provider: "vault", keyId: "app" } },
    }),
  );
});

afterAll(() => {
  delete process.env[VARIABLE];
  rmSync(dir, { recursive: true, force: true });
});

describe("Vault credentials named by the configuration file (auth.tokenFromEnv)", () => {
  it("validates with the variable set, and without it fails naming the variable", async () => {
    const loaded = loadServerConfig({ KMS_CONFIG_FILE: path }, dir);
    const kms = loaded.ok ? loaded.config.kms : undefined;
    expect(kms?.providers).toEqual({ vault: { endpoint: "http://127.0.0.1:8200", auth: { tokenFromEnv: VARIABLE } } });

    process.env[VARIABLE] = "server-test-token-value";
    const { providers } = validateConfig(kms, { registry: [vaultKms], env: {} });
    expect([...providers.keys()]).toEqual(["vault"]);
    await Promise.all([...providers.values()].map((p) => p.close()));

    delete process.env[VARIABLE];
    let error: unknown;
    try {
      validateConfig(kms, { registry: [vaultKms], env: {} });
    } catch (e) {
      error = e;
    }
    expect((error as KmsConfigError).issues.map((i) => `${i.path}: ${i.message}`)).toEqual([
      `providers.vault.auth.tokenFromEnv: the environment variable ${VARIABLE} is not set, or is empty`,
    ]);
  });
});
