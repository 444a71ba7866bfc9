/** `loadServerConfig` in-process: defaults, the configuration file, production detection. */
import { afterAll, beforeAll, describe, expect, it } from "@jest/globals";
import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { docsUrlFor } from "@kms/core";
import { loadServerConfig, MAX_CONFIG_FILE_BYTES } from "../src/config";

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

function textFile(name: string, content: string): string {
  const path = join(dir, name);
  writeFileSync(path, content);
  return path;
}

describe("YAML configuration files", () => {
  const yaml = [
    "# the same configuration as JSON",
    "providers:",
    "  local:",
    "    path: keys.json",
    "tenants:",
    "  defaultKey: { provider: local, keyId: default }",
    "  keys:",
    "    tenant-b:",
    "      provider: local",
    "      keyId: tenant-b",
    "cache:",
    "  encrypt:",
    "    maxAgeMs: 300000",
    "allowLocalInProduction: false",
    "",
  ].join("\n");

  it.each(["config.yaml", "config.yml", "CONFIG.YAML"])("%s reads like its JSON equivalent", (name) => {
    const loaded = loadServerConfig({ KMS_CONFIG_FILE: textFile(name, yaml) }, dir);
    expect(loaded.ok && loaded.config.kms).toEqual({
      providers: { local: { path: join(dir, "keys.json") } },
      tenants: { defaultKey: { provider: "local", keyId: "default" }, keys: { "tenant-b": { provider: "local", keyId: "tenant-b" } } },
      cache: { encrypt: { maxAgeMs: 300000 } },
      allowLocalInProduction: false,
    });
  });

  const SECRET_VALUE = "s3cr3t-value-never-echoed";
  const laughs = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'];
  for (let i = 1; i < 9; i++) laughs.push(`${String.fromCharCode(97 + i)}: &${String.fromCharCode(97 + i)} [${Array(9).fill(`*${String.fromCharCode(96 + i)}`).join(",")}]`);

  const bad: [string, string, string][] = [
    ["a duplicate key", `providers: {local: {}}\nproviders: {local: {token: ${SECRET_VALUE}}}\n`, "not valid YAML: a duplicate key (at line 2 column 1)"],
    ["a custom tag", `providers: !secret ${SECRET_VALUE}\n`, "not valid YAML: an unknown tag"],
    ["a YAML 1.1 tag (!!binary)", `providers: {local: {path: !!binary aGk=}}\n`, "not accepted: explicit tags (!tag, !!type) are not allowed (at line 1"],
    ["a standard tag (!!str)", `providers: {local: {path: !!str keys}}\n`, "not accepted: explicit tags"],
    ["an alias", `providers: {local: &l {}}\nextra: *l\n`, "not accepted: aliases (*name) are not allowed (at line 2 column 8)"],
    ["a billion-laughs document", `${laughs.join("\n")}\nproviders: {local: {}}\n`, "not accepted: aliases (*name) are not allowed"],
    ["a merge key", `base: &b {local: {}}\nproviders: {<<: *b}\n`, "not accepted: aliases"],
    ["two documents", `providers: {local: {}}\n---\nproviders: {}\n`, "not valid YAML: more than one document"],
    ["a syntax error", `providers: [local\ntenants: ${SECRET_VALUE}\n`, "not valid YAML: a YAML syntax error"],
    ["a non-string key", `providers: {local: {}}\n? [a, b]\n: 1\n`, "not accepted: keys must be strings (at line 2 column 3)"],
    ["a sequence at the top", `- providers\n- ${SECRET_VALUE}\n`, "must hold a YAML mapping"],
    ["an empty file", "", "must hold a YAML mapping"],
  ];

  it.each(bad)("%s: KMS_CONFIG_INVALID at KMS_CONFIG_FILE, quoting nothing from the file", (_name, content, message) => {
    const path = textFile("bad.yaml", content);
    const loaded = loadServerConfig({ KMS_CONFIG_FILE: path }, dir);
    expect(loaded.ok).toBe(false);
    expect(!loaded.ok && loaded.issues.map((i) => [i.path, i.code])).toEqual([["KMS_CONFIG_FILE", "KMS_CONFIG_INVALID"]]);
    const text = !loaded.ok ? loaded.issues[0]!.message : "";
    expect(text).toContain(`configuration file ${path} `);
    expect(text).toContain(message);
    expect(text).not.toContain(SECRET_VALUE);
    expect(!loaded.ok && loaded.partial.kms).toBeUndefined();
  });

  it.each(["big.yaml", "big.json"])("%s over the size limit is refused before parsing", (name) => {
    const path = textFile(name, `# ${"x".repeat(MAX_CONFIG_FILE_BYTES)}\n`);
    const loaded = loadServerConfig({ KMS_CONFIG_FILE: path }, dir);
    expect(!loaded.ok && loaded.issues.map((i) => i.message)).toEqual([
      `configuration file ${path} is ${MAX_CONFIG_FILE_BYTES + 3} bytes, the limit is ${MAX_CONFIG_FILE_BYTES}`,
    ]);
  });
});

describe("JWT credentials (KMS_AUTH=jwt)", () => {
  const secret = "x".repeat(32);
  const pem = generateKeyPairSync("rsa", { modulusLength: 2048 }).publicKey.export({ format: "pem", type: "spki" }) as string;

  it("HS256 with defaults: no tokens, no generated ones, production satisfied", () => {
    const loaded = loadServerConfig(
      { NODE_ENV: "production", KMS_ALLOW_LOCAL_IN_PRODUCTION: "true", KMS_AUTH: "jwt", KMS_JWT_ALG: "HS256", KMS_JWT_SECRET: secret },
      dir,
    );
    expect(loaded.ok).toBe(true);
    expect(loaded.ok && loaded.config.tokens).toBeUndefined();
    expect(loaded.ok && loaded.config.jwt).toEqual({
      algorithm: "HS256",
      secret: Buffer.from(secret),
      issuer: undefined,
      audience: undefined,
      tenantClaim: "tenant",
      adminClaim: "role",
      adminValue: "kms-admin",
      clockSkewSeconds: 60,
    });
  });

  it("RS256 with a PEM file (relative to the base directory)", () => {
    textFile("jwt.pem", pem);
    const loaded = loadServerConfig({ KMS_AUTH: "jwt", KMS_JWT_ALG: "RS256", KMS_JWT_PUBLIC_KEY_FILE: "jwt.pem", KMS_JWT_AUDIENCE: "kms" }, dir);
    expect(loaded.ok && loaded.config.jwt?.publicKeys?.length).toBe(1);
    expect(loaded.ok && loaded.config.jwt?.audience).toBe("kms");
  });

  const bad: [string, Record<string, string>, string[]][] = [
    ["an unknown KMS_AUTH", { KMS_AUTH: "oauth" }, ["KMS_AUTH"]],
    ["no algorithm", { KMS_AUTH: "jwt" }, ["KMS_JWT_ALG"]],
    ["alg none", { KMS_AUTH: "jwt", KMS_JWT_ALG: "none" }, ["KMS_JWT_ALG"]],
    ["a 31-byte secret", { KMS_AUTH: "jwt", KMS_JWT_ALG: "HS256", KMS_JWT_SECRET: "x".repeat(31) }, ["KMS_JWT_SECRET"]],
    ["static tokens as well", { KMS_AUTH: "jwt", KMS_JWT_ALG: "HS256", KMS_JWT_SECRET: secret, KMS_ADMIN_TOKEN: "admin-token-0123456789" }, ["KMS_ADMIN_TOKEN"]],
    ["RS256 without a key", { KMS_AUTH: "jwt", KMS_JWT_ALG: "RS256" }, ["KMS_JWT_PUBLIC_KEY_FILE"]],
    ["RS256 with a secret", { KMS_AUTH: "jwt", KMS_JWT_ALG: "RS256", KMS_JWT_SECRET: secret, KMS_JWT_PUBLIC_KEY_FILE: "jwt.pem" }, ["KMS_JWT_SECRET"]],
    ["a PEM file that is not a key", { KMS_AUTH: "jwt", KMS_JWT_ALG: "RS256", KMS_JWT_PUBLIC_KEY_FILE: "bad.yaml" }, ["KMS_JWT_PUBLIC_KEY_FILE"]],
    ["a missing JWKS file", { KMS_AUTH: "jwt", KMS_JWT_ALG: "RS256", KMS_JWT_JWKS_FILE: "missing.json" }, ["KMS_JWT_JWKS_FILE"]],
    ["a clock skew over 300 s", { KMS_AUTH: "jwt", KMS_JWT_ALG: "HS256", KMS_JWT_SECRET: secret, KMS_JWT_CLOCK_SKEW_SECONDS: "301" }, ["KMS_JWT_CLOCK_SKEW_SECONDS"]],
    ["the same tenant and admin claim", { KMS_AUTH: "jwt", KMS_JWT_ALG: "HS256", KMS_JWT_SECRET: secret, KMS_JWT_ADMIN_CLAIM: "tenant" }, ["KMS_JWT_ADMIN_CLAIM"]],
  ];

  it.each(bad)("%s is a start-up error", (_name, env, paths) => {
    textFile("jwt.pem", pem);
    const loaded = loadServerConfig(env, dir);
    expect(loaded.ok).toBe(false);
    expect(!loaded.ok && loaded.issues.map((i) => i.path)).toEqual(paths);
    expect(!loaded.ok && JSON.stringify(loaded.issues)).not.toContain(secret);
  });
});

describe("evidence and rotation settings", () => {
  it("defaults: evidence.jsonl next to the local key store, no HMAC key, 90 days, no periodic scheduler", () => {
    const loaded = loadServerConfig({ KMS_LOCAL_KEY_STORE: "store/keys.json" }, dir);
    expect(loaded.ok && loaded.config).toMatchObject({
      evidenceFile: join(dir, "store", "evidence.jsonl"),
      evidenceHmacKey: undefined,
      cryptoperiodMs: 90 * 86_400_000,
      rotationIntervalMs: undefined,
    });
    expect(loaded.ok && loaded.config.evidenceFile).toBe(join(dir, "store", "evidence.jsonl"));
    const dev = loadServerConfig({}, dir);
    expect(dev.ok && dev.config.evidenceFile).toBe(join(dir, ".kms", "evidence.jsonl"));
  });

  it("KMS_EVIDENCE_FILE, KMS_EVIDENCE_HMAC_KEY, KMS_ROTATION_CRYPTOPERIOD_DAYS and KMS_ROTATION_INTERVAL_MS", () => {
    const key = "k".repeat(32);
    const loaded = loadServerConfig(
      { KMS_EVIDENCE_FILE: "audit/e.jsonl", KMS_EVIDENCE_HMAC_KEY: key, KMS_ROTATION_CRYPTOPERIOD_DAYS: "30", KMS_ROTATION_INTERVAL_MS: "60000" },
      dir,
    );
    expect(loaded.ok && loaded.config).toMatchObject({
      evidenceFile: join(dir, "audit", "e.jsonl"),
      evidenceHmacKey: Buffer.from(key),
      cryptoperiodMs: 30 * 86_400_000,
      rotationIntervalMs: 60_000,
    });
  });

  it("rejects a short HMAC key (without repeating it), a bad cryptoperiod and a bad interval", () => {
    const loaded = loadServerConfig(
      { KMS_EVIDENCE_HMAC_KEY: "short-secret-value", KMS_ROTATION_CRYPTOPERIOD_DAYS: "0", KMS_ROTATION_INTERVAL_MS: "10" },
      dir,
    );
    expect(loaded.ok).toBe(false);
    const issues = loaded.ok ? [] : loaded.issues;
    expect(issues.map((i) => i.path)).toEqual(["KMS_EVIDENCE_HMAC_KEY", "KMS_ROTATION_CRYPTOPERIOD_DAYS", "KMS_ROTATION_INTERVAL_MS"]);
    expect(JSON.stringify(issues)).not.toContain("short-secret-value");
  });
});
