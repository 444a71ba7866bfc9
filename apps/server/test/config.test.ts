/** `loadServerConfig` in-process: defaults, the configuration file, production detection. */
import { afterAll, beforeAll, describe, expect, it } from "@jest/globals";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { docsUrlFor } from "@kms/core";
import { loadServerConfig } from "../src/config";

let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "kms-server-config-"));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

function configFile(name: string, content: unknown): string {
  const path = join(dir, name);
  writeFileSync(path, JSON.stringify(content));
  return path;
}

describe("the KMS configuration", () => {
  it("without KMS_CONFIG_FILE: the local provider and a default tenant key (the dev start)", () => {
    const loaded = loadServerConfig({}, dir);
    expect(loaded.ok).toBe(true);
    expect(loaded.ok && loaded.config.kms).toEqual({
      providers: { local: { path: join(dir, ".kms/local-keys.json") } },
      tenants: { defaultKey: { provider: "local", keyId: "default" } },
    });
  });

  it("a file without providers is an error at `providers`, not a fallback to local", () => {
    const path = configFile("no-providers.json", { tenants: { defaultKey: { provider: "aws", keyId: "k" } } });
    const loaded = loadServerConfig({ KMS_CONFIG_FILE: path }, dir);
    expect(loaded.ok).toBe(false);
    expect(!loaded.ok && loaded.issues).toEqual([
      {
        path: "providers",
        code: "KMS_CONFIG_INVALID",
        message:
          `configuration file ${path} names no providers: add them, e.g. "providers": {"local": {}} ` +
          "(the local provider is the default only when KMS_CONFIG_FILE is not set)",
        docsUrl: docsUrlFor("KMS_CONFIG_INVALID"),
      },
    ]);
    // Nothing was filled in.
    expect(!loaded.ok && loaded.partial.kms).toEqual({ tenants: { defaultKey: { provider: "aws", keyId: "k" } } });
  });

  it("a file's tenant keys are its own: no default tenant key is added", () => {
    const path = configFile("local-only.json", { providers: { local: { path: "keys.json" } } });
    const loaded = loadServerConfig({ KMS_CONFIG_FILE: path }, dir);
    expect(loaded.ok && loaded.config.kms).toEqual({ providers: { local: { path: join(dir, "keys.json") } } });
  });

  it("an unreadable file leaves no KMS configuration for core to check", () => {
    const loaded = loadServerConfig({ KMS_CONFIG_FILE: join(dir, "missing.json") }, dir);
    expect(loaded.ok).toBe(false);
    expect(!loaded.ok && loaded.issues.map((i) => i.path)).toEqual(["KMS_CONFIG_FILE"]);
    expect(!loaded.ok && loaded.partial.kms).toBeUndefined();
  });
});

describe("production", () => {
  it.each(["production", "Production", " PRODUCTION ", "prod"])("NODE_ENV=%j requires configured tokens", (nodeEnv) => {
    const loaded = loadServerConfig({ NODE_ENV: nodeEnv, KMS_ALLOW_LOCAL_IN_PRODUCTION: "true" }, dir);
    expect(loaded.ok).toBe(false);
    expect(!loaded.ok && loaded.partial.production).toBe(true);
    expect(!loaded.ok && loaded.issues.map((i) => [i.path, i.code])).toEqual([["KMS_TENANT_TOKENS", "KMS_CONFIG_INVALID"]]);
  });

  it.each(["development", "test", "productionish"])("NODE_ENV=%j is not production", (nodeEnv) => {
    const loaded = loadServerConfig({ NODE_ENV: nodeEnv }, dir);
    expect(loaded.ok && loaded.config.production).toBe(false);
  });
});

describe("tenant ids in the environment", () => {
  it.each([
    ["KMS_TENANT_TOKENS", { KMS_TENANT_TOKENS: JSON.stringify({ "tenant\u0000a": "t".repeat(32) }) }],
    ["KMS_TENANT_TOKENS", { KMS_TENANT_TOKENS: JSON.stringify({ ["é".repeat(129)]: "t".repeat(32) }) }],
    ["KMS_DEMO_TENANTS", { KMS_DEMO_TENANTS: "tenant-a,tenant\u007fb" }],
  ])("%s: a tenant id core would refuse is a start-up error", (path, env) => {
    const loaded = loadServerConfig(env, dir);
    expect(loaded.ok).toBe(false);
    expect(!loaded.ok && loaded.issues.map((i) => [i.path, i.code])).toEqual([[path, "KMS_CONFIG_INVALID"]]);
  });
});
