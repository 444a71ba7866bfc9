/** `loadServerConfig` in-process: defaults, the configuration file, production detection. */
import { afterAll, beforeAll, describe, expect, it } from "@jest/globals";
import { createHash, generateKeyPairSync } from "node:crypto";
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

describe("static tokens as SHA-256 hashes", () => {
  const sha = (token: string) => `sha256:${createHash("sha256").update(token).digest("hex")}`;
  const prod = { NODE_ENV: "production", KMS_ALLOW_LOCAL_IN_PRODUCTION: "true" };

  it("KMS_TENANT_TOKEN_HASHES and KMS_ADMIN_TOKEN_HASH satisfy production and hold the digests", () => {
    const loaded = loadServerConfig(
      { ...prod, KMS_TENANT_TOKEN_HASHES: JSON.stringify({ "tenant-a": sha("token-of-tenant-a") }), KMS_ADMIN_TOKEN_HASH: sha("the-admin-token") },
      dir,
    );
    expect(loaded.ok).toBe(true);
    const tokens = loaded.ok ? loaded.config.tokens : undefined;
    expect(tokens?.tenants["tenant-a"]).toEqual(createHash("sha256").update("token-of-tenant-a").digest());
    expect(tokens?.admin).toEqual(createHash("sha256").update("the-admin-token").digest());
  });

  it("mixes with KMS_TENANT_TOKENS, one credential per tenant, every token unique", () => {
    const mixed = loadServerConfig({ KMS_TENANT_TOKENS: JSON.stringify({ a: "token-a-0123" }), KMS_TENANT_TOKEN_HASHES: JSON.stringify({ b: sha("token-b-0123") }) }, dir);
    expect(mixed.ok && Object.keys(mixed.config.tokens!.tenants)).toEqual(["a", "b"]);
    const twice = loadServerConfig({ KMS_TENANT_TOKENS: JSON.stringify({ a: "token-a-0123" }), KMS_TENANT_TOKEN_HASHES: JSON.stringify({ a: sha("other-0123") }) }, dir);
    expect(twice.ok ? [] : twice.issues.map((i) => i.path)).toEqual(["KMS_TENANT_TOKEN_HASHES.a"]);
    const same = loadServerConfig({ KMS_TENANT_TOKENS: JSON.stringify({ a: "token-a-0123" }), KMS_ADMIN_TOKEN_HASH: sha("token-a-0123") }, dir);
    expect(same.ok ? [] : same.issues.map((i) => [i.path, i.message])).toEqual([
      ["KMS_ADMIN_TOKEN_HASH", "the same token is also configured for tenant a: every token must be unique"],
    ]);
  });

  it.each([
    ["no prefix", "0".repeat(64)],
    ["uppercase hex", `sha256:${"A".repeat(64)}`],
    ["too short", `sha256:${"0".repeat(63)}`],
    ["another algorithm", `md5:${"0".repeat(32)}`],
  ])("a hash with %s is refused", (_name, hash) => {
    const loaded = loadServerConfig({ KMS_TENANT_TOKEN_HASHES: JSON.stringify({ a: hash }), KMS_ADMIN_TOKEN_HASH: hash }, dir);
    expect(loaded.ok ? [] : loaded.issues.map((i) => i.path)).toEqual(["KMS_TENANT_TOKEN_HASHES.a", "KMS_ADMIN_TOKEN_HASH"]);
  });

  it("KMS_ADMIN_TOKEN and KMS_ADMIN_TOKEN_HASH together are refused; with KMS_AUTH=jwt every token variable is", () => {
    const both = loadServerConfig({ KMS_ADMIN_TOKEN: "admin-0123", KMS_ADMIN_TOKEN_HASH: sha("admin-0123") }, dir);
    expect(both.ok ? [] : both.issues.map((i) => i.path)).toEqual(["KMS_ADMIN_TOKEN_HASH"]);
    const jwt = loadServerConfig({ KMS_AUTH: "jwt", KMS_JWT_ALG: "HS256", KMS_JWT_SECRET: "x".repeat(32), KMS_TENANT_TOKEN_HASHES: "{}", KMS_ADMIN_TOKEN_HASH: sha("a") }, dir);
    expect(jwt.ok ? [] : jwt.issues.map((i) => i.path)).toEqual(["KMS_TENANT_TOKEN_HASHES", "KMS_ADMIN_TOKEN_HASH"]);
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
  it("a YAML file is read like JSON, its local key store path resolved against the file's directory", () => {
    const yaml = "providers:\n  local: { path: keys.json }\ntenants:\n  defaultKey: { provider: local, keyId: default }\n";
    const loaded = loadServerConfig({ KMS_CONFIG_FILE: textFile("config.yml", yaml) }, dir);
    expect(loaded.ok && loaded.config.kms).toEqual({
      providers: { local: { path: join(dir, "keys.json") } },
      tenants: { defaultKey: { provider: "local", keyId: "default" } },
    });
  });

  it("a file core's reader refuses is KMS_CONFIG_INVALID at KMS_CONFIG_FILE, leaving nothing for core to check", () => {
    // readConfigFile's rules (strict YAML, size cap, no quoting) have their own tests in @kms/core.
    const path = textFile("bad.yaml", "providers: {local: {}}\nproviders: {}\n");
    const loaded = loadServerConfig({ KMS_CONFIG_FILE: path }, dir);
    expect(!loaded.ok && loaded.issues.map((i) => [i.path, i.code, i.message])).toEqual([
      ["KMS_CONFIG_FILE", "KMS_CONFIG_INVALID", `configuration file ${path} is not valid YAML: a duplicate key (at line 2 column 1)`],
    ]);
    expect(!loaded.ok && loaded.partial.kms).toBeUndefined();
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

  it("takes the cryptoperiod from the file's rotation.cryptoperiodDays; KMS_ROTATION_CRYPTOPERIOD_DAYS wins", () => {
    const file = join(dir, "rotation.json");
    writeFileSync(
      file,
      JSON.stringify({ providers: { local: {} }, tenants: { defaultKey: { provider: "local", keyId: "k" } }, rotation: { cryptoperiodDays: 45 } }),
    );
    const fromFile = loadServerConfig({ KMS_CONFIG_FILE: file }, dir);
    expect(fromFile.ok && fromFile.config.cryptoperiodMs).toBe(45 * 86_400_000);
    const fromEnv = loadServerConfig({ KMS_CONFIG_FILE: file, KMS_ROTATION_CRYPTOPERIOD_DAYS: "7" }, dir);
    expect(fromEnv.ok && fromEnv.config.cryptoperiodMs).toBe(7 * 86_400_000);
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

describe("KMS_BENCH_NOOP_ROUTE", () => {
  it("is off by default and on with \"true\" outside production", () => {
    const off = loadServerConfig({}, dir);
    expect(off.ok && off.config.benchNoopRoute).toBe(false);
    const on = loadServerConfig({ KMS_BENCH_NOOP_ROUTE: "true" }, dir);
    expect(on.ok && on.config.benchNoopRoute).toBe(true);
  });

  it("is refused in production and must be true or false", () => {
    const tokens = { KMS_TENANT_TOKENS: JSON.stringify({ t: "a-production-token-0123" }), KMS_ADMIN_TOKEN: "an-admin-token-0123456" };
    const prod = loadServerConfig({ ...tokens, NODE_ENV: "production", KMS_ALLOW_LOCAL_IN_PRODUCTION: "true", KMS_BENCH_NOOP_ROUTE: "true" }, dir);
    expect(prod.ok ? [] : prod.issues.map((i) => [i.path, i.message])).toEqual([
      ["KMS_BENCH_NOOP_ROUTE", "the benchmark's no-op route is for benchmarks only and is refused in production"],
    ]);
    const bad = loadServerConfig({ KMS_BENCH_NOOP_ROUTE: "yes" }, dir);
    expect(bad.ok ? [] : bad.issues.map((i) => i.path)).toEqual(["KMS_BENCH_NOOP_ROUTE"]);
  });
});

describe("several instances: KMS_ROTATION_LOCKS_URL and KMS_EVIDENCE_DATABASE_URL", () => {
  const password = "s3cret-Pa55word";
  const issuesOf = (env: Record<string, string>) => {
    const loaded = loadServerConfig(env, dir);
    return loaded.ok ? [] : loaded.issues.map((i) => [i.path, i.message]);
  };

  it("unset: the in-process lock and the evidence file, as for one instance", () => {
    const loaded = loadServerConfig({ KMS_ROTATION_LOCKS_URL: "", KMS_EVIDENCE_DATABASE_URL: "" }, dir);
    expect(loaded.ok && loaded.config).toMatchObject({ rotationLocks: undefined, evidenceDatabaseUrl: undefined, evidenceFile: join(dir, ".kms", "evidence.jsonl") });
    expect(loaded.ok && loaded.config.warnings).toEqual([]);
  });

  it.each([
    ["redis", `redis://kms:${password}@redis.internal:6379/2`],
    ["redis", `rediss://kms:${password}@redis.internal:6380`],
    ["postgres", `postgres://kms:${password}@db.internal:5432/kms`],
    ["postgres", `postgresql://kms:${password}@db.internal/kms?sslmode=verify-full`],
    ["postgres", "POSTGRES:///kms?host=/var/run/postgresql"],
  ])("KMS_ROTATION_LOCKS_URL #%#: %s leases", (kind, url) => {
    const loaded = loadServerConfig({ KMS_ROTATION_LOCKS_URL: url, KMS_EVIDENCE_DATABASE_URL: `postgres://kms:${password}@db.internal/kms` }, dir);
    expect(loaded.ok && loaded.config.rotationLocks).toEqual({ kind, url });
    expect(loaded.ok && loaded.config.warnings).toEqual([]);
  });

  it("KMS_EVIDENCE_DATABASE_URL: the evidence log in PostgreSQL", () => {
    const url = `postgresql://kms:${password}@db.internal:5432/kms?options=-c%20search_path%3Daudit`;
    const loaded = loadServerConfig({ KMS_EVIDENCE_DATABASE_URL: url }, dir);
    expect(loaded.ok && loaded.config).toMatchObject({ evidenceDatabaseUrl: url, rotationLocks: undefined });
  });

  it("shared locks with the evidence in a file of each instance: a warning", () => {
    const loaded = loadServerConfig({ KMS_ROTATION_LOCKS_URL: "redis://127.0.0.1:6379" }, dir);
    expect(loaded.ok && loaded.config.warnings).toEqual([
      "KMS_ROTATION_LOCKS_URL is set but the evidence log is a file of this instance: with several instances each keeps its own " +
        "log, and a rotation's records (and its crash recovery) are only in the log of the instance that made it; " +
        "set KMS_EVIDENCE_DATABASE_URL for one log shared by every instance",
    ]);
  });

  it("a wrong scheme names the variable and the scheme, never the rest of the URL", () => {
    const env = {
      KMS_ROTATION_LOCKS_URL: `https://kms:${password}@redis.internal:6379`,
      KMS_EVIDENCE_DATABASE_URL: `redis://kms:${password}@redis.internal:6379`,
    };
    expect(issuesOf(env)).toEqual([
      ["KMS_EVIDENCE_DATABASE_URL", 'must be a postgres:// or postgresql:// URL, got "redis://…"'],
      ["KMS_ROTATION_LOCKS_URL", 'must be a redis://, rediss://, postgres:// or postgresql:// URL, got "https://…"'],
    ]);
    const loaded = loadServerConfig(env, dir);
    expect(JSON.stringify(loaded)).not.toContain(password);
    expect(JSON.stringify(loaded.ok ? [] : loaded.issues)).not.toContain("redis.internal");
  });

  it("a value that is not a URL, or a malformed one, is not repeated (it may hold a password)", () => {
    expect(
      issuesOf({
        KMS_ROTATION_LOCKS_URL: `kms:${password}@redis.internal:6379`,
        KMS_EVIDENCE_DATABASE_URL: `postgres://kms:${password}%zz@db.internal/kms`,
      }),
    ).toEqual([
      ["KMS_EVIDENCE_DATABASE_URL", "is not a valid postgres:// URL (the value is not repeated: it may hold a password)"],
      ["KMS_ROTATION_LOCKS_URL", "must be a redis://, rediss://, postgres:// or postgresql:// URL (the value is not repeated: it may hold a password)"],
    ]);
    expect(issuesOf({ KMS_ROTATION_LOCKS_URL: "redis://[::1" })).toEqual([
      ["KMS_ROTATION_LOCKS_URL", "is not a valid redis:// URL (the value is not repeated: it may hold a password)"],
    ]);
  });

  it("KMS_EVIDENCE_FILE and KMS_EVIDENCE_DATABASE_URL together are refused", () => {
    const env = { KMS_EVIDENCE_FILE: "audit/e.jsonl", KMS_EVIDENCE_DATABASE_URL: `postgres://kms:${password}@db.internal/kms` };
    expect(issuesOf(env)).toEqual([["KMS_EVIDENCE_DATABASE_URL", "set either KMS_EVIDENCE_FILE or KMS_EVIDENCE_DATABASE_URL, not both"]]);
    const loaded = loadServerConfig(env, dir);
    expect(!loaded.ok && loaded.partial.evidenceDatabaseUrl).toBeUndefined();
    expect(JSON.stringify(!loaded.ok && loaded.issues)).not.toContain(password);
  });

  it("production needs nothing more than valid URLs", () => {
    const tokens = { KMS_TENANT_TOKENS: JSON.stringify({ t: "a-production-token-0123" }), KMS_ADMIN_TOKEN: "an-admin-token-0123456" };
    const loaded = loadServerConfig(
      {
        ...tokens,
        NODE_ENV: "production",
        KMS_ALLOW_LOCAL_IN_PRODUCTION: "true",
        KMS_ROTATION_LOCKS_URL: `rediss://kms:${password}@redis.internal:6380`,
        KMS_EVIDENCE_DATABASE_URL: `postgres://kms:${password}@db.internal/kms`,
      },
      dir,
    );
    expect(loaded.ok).toBe(true);
  });
});
