import { describe, expect, it, jest } from "@jest/globals";
import { validateConfig } from "../src/config";
import { KmsConfigError, isKmsError } from "../src/errors";
import { localKms } from "../src/local-provider";
import { definitionOf, type ProviderDefinition } from "../src/provider";
import { FakeProvider } from "./support/fake-provider";

const fake = definitionOf(new FakeProvider("local"), "@kms/core");
const base = {
  providers: { local: {} },
  tenants: { defaultKey: { provider: "local", keyId: "default" } },
};

function configError(raw: unknown, env: Record<string, string> = {}, registry: readonly ProviderDefinition<unknown>[] = [fake]): KmsConfigError {
  try {
    validateConfig(raw, { registry, env });
  } catch (error) {
    expect(isKmsError(error)).toBe(true);
    expect(error).toBeInstanceOf(KmsConfigError);
    return error as KmsConfigError;
  }
  throw new Error("expected a KmsConfigError");
}

describe("validateConfig", () => {
  it("accepts a minimal configuration and fills every default", () => {
    const { config, providers, production } = validateConfig(base, { registry: [fake], env: {} });
    expect(production).toBe(false);
    expect([...providers.keys()]).toEqual(["local"]);
    expect(config.cache.encrypt).toEqual({ maxAgeMs: 300_000, maxMessages: 1_000_000, maxBytes: 2 ** 36, capacity: 10_000 });
    expect(config.cache.decrypt).toEqual({ maxAgeMs: 300_000, capacity: 10_000 });
    expect(config.cache.hardMaxAgeMs).toBe(3_600_000);
    expect(config.resilience.retry).toEqual({ maxAttempts: 3, baseDelayMs: 50, maxDelayMs: 1_000 });
    expect(config.tenants.defaultKey?.previous).toEqual([]);
  });

  it("rejects a provider the toolkit does not know, with KMS_PROVIDER_UNKNOWN", () => {
    const error = configError({ providers: { "my-kms": {} }, tenants: { defaultKey: { provider: "my-kms", keyId: "k" } } });
    expect(error.code).toBe("KMS_PROVIDER_UNKNOWN");
    expect(error.issues.map((i) => i.path)).toEqual(["providers.my-kms", "tenants.defaultKey.provider"]);
    expect(error.message).toContain("known providers: local, aws-kms, vault, gcp-kms, azure-key-vault");
    expect(error.message).toContain("KMS_TROUBLESHOOTING.md#kms_provider_unknown");
  });

  it("names the package to install when a known provider is not installed (gcp-kms)", () => {
    // The workspace holds every provider package, so the app without @kms/gcp is simulated: a
    // config module whose package resolution finds nothing.
    jest.isolateModules(() => {
      jest.doMock("node:module", () => ({
        ...jest.requireActual<typeof import("node:module")>("node:module"),
        createRequire: () => ({
          resolve: (id: string) => {
            throw Object.assign(new Error(`Cannot find module '${id}'`), { code: "MODULE_NOT_FOUND" });
          },
        }),
      }));
      const isolated = jest.requireActual<typeof import("../src/config")>("../src/config");
      let error: unknown;
      try {
        isolated.validateConfig({ providers: { "gcp-kms": { project: "p" } }, tenants: { defaultKey: { provider: "gcp-kms", keyId: "app" } } }, { registry: [fake], env: {} });
      } catch (thrown) {
        error = thrown;
      }
      expect(error).toMatchObject({ code: "KMS_PROVIDER_NOT_INSTALLED", docsUrl: expect.stringMatching(/#kms_provider_not_installed$/) });
      expect((error as KmsConfigError).issues[0]!.message).toContain("install @kms/gcp (pnpm add @kms/gcp)");
    });
  });

  it("never falls back to local when the configured provider is missing", () => {
    const error = configError({ providers: { local: {}, "aws-kms": { region: "eu-west-1" } }, tenants: { defaultKey: { provider: "aws-kms", keyId: "alias/app" } } });
    expect(error.code).toBe("KMS_PROVIDER_NOT_INSTALLED");
    expect(error.issues.every((i) => i.message.includes("@kms/aws"))).toBe(true);
  });

  it("reports missing provider settings", () => {
    const error = configError({ providers: {}, tenants: { defaultKey: { provider: "local", keyId: "default" } } });
    expect(error.code).toBe("KMS_CONFIG_INVALID");
    expect(error.issues).toEqual([expect.objectContaining({ path: "tenants.defaultKey.provider", message: 'provider "local" has no settings: add providers.local' })]);
  });

  it("reports settings the provider's own schema rejects, under the provider's path", () => {
    const error = configError({ ...base, providers: { local: { path: 1 } } });
    expect(error.issues[0]).toMatchObject({ path: "providers.local", code: "KMS_CONFIG_INVALID" });
  });

  it("refuses local in production without the opt-in, and accepts it with the opt-in", () => {
    const error = configError(base, { NODE_ENV: "production" });
    expect(error.code).toBe("KMS_LOCAL_IN_PRODUCTION");
    expect(error.message).toContain("allowLocalInProduction");
    const ok = validateConfig({ ...base, allowLocalInProduction: true }, { registry: [fake], env: { NODE_ENV: "production" } });
    expect(ok.production).toBe(true);
  });

  it.each(["Production", " production ", "PROD", "prod"])("treats NODE_ENV=%j as production", (nodeEnv) => {
    expect(configError(base, { NODE_ENV: nodeEnv }).code).toBe("KMS_LOCAL_IN_PRODUCTION");
  });

  it.each(["development", "test", "", "productionish", "staging"])("does not treat NODE_ENV=%j as production", (nodeEnv) => {
    expect(validateConfig(base, { registry: [fake], env: { NODE_ENV: nodeEnv } }).production).toBe(false);
  });

  it("reports every problem at once, each with its own code and link", () => {
    const error = configError({
      providers: { local: {}, vault: {} },
      tenants: { defaultKey: { provider: "local", keyId: "default" }, keys: { t1: { provider: "nope", keyId: "k" } } },
    }, { NODE_ENV: "production" });
    expect(error.code).toBe("KMS_CONFIG_INVALID");
    expect(error.issues.map((i) => [i.path, i.code])).toEqual([
      ["providers.vault", "KMS_PROVIDER_NOT_INSTALLED"],
      ["tenants.keys.t1.provider", "KMS_PROVIDER_UNKNOWN"],
      ["providers.local", "KMS_LOCAL_IN_PRODUCTION"],
    ]);
    for (const issue of error.issues) expect(error.message).toContain(issue.docsUrl);
  });

  it.each([
    ["a negative max age", { cache: { encrypt: { maxAgeMs: -1 } } }, "cache.encrypt.maxAgeMs"],
    ["a zero capacity", { cache: { decrypt: { capacity: 0 } } }, "cache.decrypt.capacity"],
    ["max messages above 2^32", { cache: { encrypt: { maxMessages: 2 ** 32 + 1 } } }, "cache.encrypt.maxMessages"],
    ["a string where a number belongs", { resilience: { timeoutMs: "2000" } }, "resilience.timeoutMs"],
    ["an unknown option", { cache: { maxAge: 5 } }, "cache"],
    ["jitter above 0.5", { cache: { jitter: 0.9 } }, "cache.jitter"],
    ["a hard max age below the max age", { cache: { hardMaxAgeMs: 1000 } }, "cache.hardMaxAgeMs"],
    ["max delay below base delay", { resilience: { retry: { baseDelayMs: 500, maxDelayMs: 100 } } }, "resilience.retry.maxDelayMs"],
    ["a key id with a control character", { tenants: { defaultKey: { provider: "local", keyId: "a\u0000b" } } }, "tenants.defaultKey.keyId"],
    ["a key id over 2048 UTF-8 bytes", { tenants: { defaultKey: { provider: "local", keyId: "é".repeat(1025) } } }, "tenants.defaultKey.keyId"],
    ["an empty previous key id", { tenants: { defaultKey: { provider: "local", keyId: "k", previous: [{ provider: "local", keyId: "" }] } } }, "tenants.defaultKey.previous[0].keyId"],
    ["a tenant id with a control character", { tenants: { keys: { "t\n1": { provider: "local", keyId: "k" } } } }, "tenants.keys"],
    ["a tenant id over 256 UTF-8 bytes", { tenants: { keys: { ["é".repeat(129)]: { provider: "local", keyId: "k" } } } }, "tenants.keys"],
  ])("rejects %s with KMS_CONFIG_INVALID at its path", (_name, patch, path) => {
    const error = configError({ ...base, ...patch });
    expect(error.code).toBe("KMS_CONFIG_INVALID");
    expect(error.issues.map((i) => i.path)).toContain(path);
  });

  it("reports provider, tenant and production problems even when another part fails the schema", () => {
    const error = configError(
      {
        providers: { local: {}, nope: {} },
        tenants: { defaultKey: { provider: "vault", keyId: "k" } },
        cache: { encrypt: { maxAgeMs: 0 } },
      },
      { NODE_ENV: "production" },
    );
    expect(error.issues.map((i) => [i.path, i.code])).toEqual([
      ["cache.encrypt.maxAgeMs", "KMS_CONFIG_INVALID"],
      ["providers.nope", "KMS_PROVIDER_UNKNOWN"],
      ["tenants.defaultKey.provider", "KMS_PROVIDER_NOT_INSTALLED"],
      ["providers.local", "KMS_LOCAL_IN_PRODUCTION"],
    ]);
  });

  it("reports a key id the provider's own syntax refuses, at start-up", () => {
    const strict = { ...definitionOf(new FakeProvider("local"), "@kms/core"), keyIdProblem: (id: string) => (id.includes(":") ? "no colons" : undefined) };
    const error = configError(
      { providers: { local: {} }, tenants: { defaultKey: { provider: "local", keyId: "tenant:1", previous: [{ provider: "local", keyId: "ok" }] } } },
      {},
      [strict],
    );
    expect(error.issues).toEqual([expect.objectContaining({ path: "tenants.defaultKey.keyId", code: "KMS_CONFIG_INVALID", message: "local: no colons" })]);
  });

  it("the local provider refuses a key id outside its syntax at start-up, not at the first encrypt", () => {
    const error = configError({ providers: { local: {} }, tenants: { defaultKey: { provider: "local", keyId: "tenant:1" } } }, {}, [localKms]);
    expect(error.issues).toEqual([
      expect.objectContaining({ path: "tenants.defaultKey.keyId", code: "KMS_CONFIG_INVALID", message: "local: key ids are 1 to 256 characters of A-Z a-z 0-9 . _ / -" }),
    ]);
  });

  it("requires some tenant key unless the app resolves keys itself", () => {
    expect(configError({ providers: { local: {} } }).issues[0]!.path).toBe("tenants");
    expect(() => validateConfig({ providers: { local: {} } }, { registry: [fake], env: {}, customResolver: true })).not.toThrow();
  });

  it("has an optional rotation section: cryptoperiodDays from 1 to 3650, default 90", () => {
    expect(validateConfig(base, { registry: [fake], env: {} }).config.rotation).toEqual({ cryptoperiodDays: 90 });
    expect(validateConfig({ ...base, rotation: { cryptoperiodDays: 30 } }, { registry: [fake], env: {} }).config.rotation).toEqual({ cryptoperiodDays: 30 });
    const error = configError({ ...base, rotation: { cryptoperiodDays: 0, every: "day" } });
    expect(error.issues.map((i) => [i.path, i.code])).toEqual([
      ["rotation.cryptoperiodDays", "KMS_CONFIG_INVALID"],
      ["rotation", "KMS_CONFIG_INVALID"], // the unknown key "every"
    ]);
    expect(configError({ ...base, rotation: { cryptoperiodDays: 3651 } }).issues.map((i) => i.path)).toEqual(["rotation.cryptoperiodDays"]);
    expect(configError({ ...base, rotation: { cryptoperiodDays: 1.5 } }).issues.map((i) => i.path)).toEqual(["rotation.cryptoperiodDays"]);
  });

  it("rejects a configuration that is not an object", () => {
    expect(configError("providers: local").code).toBe("KMS_CONFIG_INVALID");
    expect(configError(null).code).toBe("KMS_CONFIG_INVALID");
  });
});

describe("validateConfig when a provider's create throws", () => {
  it("closes the providers it already created, then rethrows", () => {
    const first = new FakeProvider("local");
    const failing: ProviderDefinition<unknown> = {
      id: "fake-two",
      packageName: "fake-two",
      parseSettings: () => ({ ok: true, settings: {} }),
      create: () => {
        throw new KmsConfigError([]);
      },
    };
    const raw = { providers: { local: {}, "fake-two": {} }, tenants: { defaultKey: { provider: "local", keyId: "default" } } };
    expect(() => validateConfig(raw, { registry: [definitionOf(first, "@kms/core"), failing], env: {} })).toThrow(KmsConfigError);
    expect(first.closed).toBe(true);
  });
});
