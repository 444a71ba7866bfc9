/**
 * The setup wizard's questions, checks, configuration and file text (`kms init` and the server's
 * console both use them): the exact file for several answer sets, and each check's message. The cloud
 * providers are stand-ins here (core does not depend on their packages): what is tested is how core
 * asks a definition and words its answer; the real providers' messages are in @kms/cli's tests.
 */
import { describe, expect, it } from "@jest/globals";
import { parse } from "yaml";
import {
  buildSetupConfig,
  localKms,
  SETUP_PROVIDERS,
  SETUP_QUESTIONS,
  setupConfigText,
  setupConfigYaml,
  setupQuestionApplies,
  type ProviderDefinition,
  type SettingsResult,
  type SetupAnswers,
  type SetupContext,
} from "../src/index";

type Settings = Record<string, unknown>;
type Issue = { path: string; message: string };

/** A stand-in definition: `problems` lists the issues of some settings (an empty list: fine). */
function standIn(id: string, problems: (s: Settings) => Issue[], keyIdProblem?: (keyId: string) => string | undefined): ProviderDefinition<unknown> {
  return {
    id,
    packageName: `@kms/${id}`,
    parseSettings(raw): SettingsResult<unknown> {
      const issues = problems(raw as Settings);
      return issues.length === 0 ? { ok: true, settings: raw } : { ok: false, issues };
    },
    ...(keyIdProblem === undefined ? {} : { keyIdProblem }),
    create: () => {
      throw new Error("not called by the wizard");
    },
  };
}

const https = (url: unknown) => typeof url === "string" && url.startsWith("https://");
const REGISTRY: readonly ProviderDefinition<unknown>[] = [
  localKms,
  standIn(
    "aws-kms",
    (s) => [
      // Issues elsewhere come first: a question's message is the first one at its own path (or under it).
      { path: "regions", message: "not this one" },
      ...(/^[a-z]{2}-[a-z]+-\d$/.test(String(s.region)) ? [] : [{ path: "region", message: "must be an AWS region such as eu-west-1" }]),
      ...(s.endpoint === undefined || /^https?:\/\//.test(String(s.endpoint)) ? [] : [{ path: "endpoint.url", message: "must be an http(s) URL" }]),
    ].filter((i, _, all) => all.length > 1),
    (key) => (key.startsWith("alias/") || key.startsWith("arn:") ? undefined : "AWS KMS key ids are a key id, an ARN or alias/<name>"),
  ),
  standIn("vault", (s) => (https(s.endpoint) ? [] : [{ path: "endpoint", message: "must be an https URL" }])),
  standIn("gcp-kms", (s) => {
    const issues: Issue[] = [];
    const emulator = s.emulator as { caCert: string } | undefined;
    if (emulator !== undefined && !emulator.caCert.startsWith("-----BEGIN CERTIFICATE-----")) issues.push({ path: "emulator.caCert", message: "must be PEM text of a certificate" });
    if (emulator !== undefined && s.apiEndpoint !== "localhost" && s.apiEndpoint !== "::1") issues.push({ path: "apiEndpoint", message: "with emulator, must be a loopback address" });
    if (emulator !== undefined && s.port === undefined) issues.push({ path: "port", message: "with emulator, the emulator's port is required" });
    return issues;
  }),
  standIn("azure-key-vault", (s) => (https(s.vaultUrl) ? [] : [{ path: "vaultUrl", message: "must be the vault's https URL" }])),
];
const CONTEXT: SetupContext = { registry: REGISTRY };
const PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

const question = (id: string) => SETUP_QUESTIONS.find((q) => q.id === id)!;
const check = (id: string, answer: string, answers: SetupAnswers = {}, context = CONTEXT) => question(id).check(answer, answers, context);

/** Every question that applies answered: the answers given, else the defaults (with no environment). */
function filled(given: SetupAnswers): SetupAnswers {
  const answers: Record<string, string> = {};
  for (const q of SETUP_QUESTIONS) {
    if (!setupQuestionApplies(q, answers.provider)) continue;
    const answer = given[q.id] ?? q.fallback(answers, {});
    if (answer === undefined) throw new Error(`no answer for ${q.id}`);
    expect([q.id, q.check(answer, answers, CONTEXT)]).toEqual([q.id, undefined]);
    answers[q.id] = answer;
  }
  return answers;
}

describe("the questions", () => {
  it("are kms init's, in its order, with the providers that ask each", () => {
    expect(SETUP_QUESTIONS.map((q) => [q.id, q.providers ?? "all", q.optional === true, q.file === true])).toEqual([
      ["provider", "all", false, false],
      ["key", "all", false, false],
      ["region", ["aws-kms"], false, false],
      ["endpoint", ["aws-kms", "gcp-kms"], true, false],
      ["ca-cert", ["gcp-kms"], true, true],
      ["vault-address", ["vault"], false, false],
      ["vault-url", ["azure-key-vault"], false, false],
      ["credentials", ["aws-kms", "vault", "gcp-kms", "azure-key-vault"], false, false],
      ["local-path", ["local"], false, false],
      ["cache-max-age-ms", "all", false, false],
      ["cache-capacity", "all", false, false],
      ["rotation-days", "all", false, false],
    ]);
    expect(question("provider")).toMatchObject({ text: "Provider", choices: ["local", "aws-kms", "vault", "gcp-kms", "azure-key-vault"] });
    expect(question("credentials").choices).toEqual(["default", "environment"]);
    expect(SETUP_PROVIDERS).toEqual(question("provider").choices);
    expect(setupQuestionApplies(question("region"), "aws-kms")).toBe(true);
    expect(setupQuestionApplies(question("region"), "vault")).toBe(false);
    expect(setupQuestionApplies(question("key"), undefined)).toBe(true);
  });

  it("have these defaults, some from the environment", () => {
    const defaults = (provider: string, env: Record<string, string> = {}) =>
      Object.fromEntries(SETUP_QUESTIONS.filter((q) => setupQuestionApplies(q, provider)).map((q) => [q.id, q.fallback({ provider }, env)]));
    expect(defaults("local")).toEqual({
      provider: "local",
      key: "default",
      "local-path": ".kms/local-keys.json",
      "cache-max-age-ms": "300000",
      "cache-capacity": "10000",
      "rotation-days": "90",
    });
    expect(defaults("aws-kms")).toMatchObject({ key: undefined, region: undefined, endpoint: "", credentials: "default" });
    expect(defaults("aws-kms", { AWS_DEFAULT_REGION: "eu-west-3" }).region).toBe("eu-west-3");
    expect(defaults("aws-kms", { AWS_REGION: "eu-west-1", AWS_DEFAULT_REGION: "eu-west-3" }).region).toBe("eu-west-1");
    expect(defaults("vault")).toMatchObject({ key: "default", "vault-address": undefined });
    expect(defaults("vault", { VAULT_ADDR: "https://vault:8200" })["vault-address"]).toBe("https://vault:8200");
    expect(defaults("gcp-kms")).toMatchObject({ key: undefined, endpoint: "", "ca-cert": "" });
    expect(defaults("azure-key-vault")).toMatchObject({ key: undefined, "vault-url": undefined });
  });

  it("have integer ranges: core's hard max age, its capacity bound, 10 years", () => {
    expect(SETUP_QUESTIONS.filter((q) => q.integer !== undefined).map((q) => [q.id, q.integer])).toEqual([
      ["cache-max-age-ms", { min: 1, max: 3_600_000 }],
      ["cache-capacity", { min: 1, max: 1_000_000 }],
      ["rotation-days", { min: 1, max: 3650 }],
    ]);
  });
});

describe("each answer's check", () => {
  it("provider: one of the five, installed", () => {
    expect(check("provider", "local")).toBeUndefined();
    expect(check("provider", "cloud")).toBe("must be one of local, aws-kms, vault, gcp-kms, azure-key-vault");
    expect(check("provider", "gcp-kms", {}, { registry: [localKms] })).toBe("the provider gcp-kms is not installed here (@kms/gcp)");
  });

  it("key: core's rules, then the provider's", () => {
    expect(check("key", "", { provider: "local" })).toBe("key ids must be non-empty strings");
    expect(check("key", "a\u0000b", { provider: "aws-kms" })).toBe("key ids must not contain control characters or unpaired surrogates");
    expect(check("key", "app", { provider: "aws-kms" })).toBe("AWS KMS key ids are a key id, an ARN or alias/<name>");
    expect(check("key", "alias/app", { provider: "aws-kms" })).toBeUndefined();
    expect(check("key", "anything", { provider: "vault" })).toBeUndefined();
  });

  it("region, endpoint (AWS), Vault address, Key Vault URL, local path: the provider's message for that setting only", () => {
    const aws = { provider: "aws-kms" };
    expect(check("region", "mars-1", aws)).toBe("must be an AWS region such as eu-west-1");
    expect(check("region", "eu-west-1", aws)).toBeUndefined();
    expect(check("endpoint", "", aws)).toBeUndefined();
    expect(check("endpoint", "ftp://kms", aws)).toBe("must be an http(s) URL");
    expect(check("endpoint", "http://127.0.0.1:4566", aws)).toBeUndefined();
    expect(check("vault-address", "http://vault:8200", { provider: "vault" })).toBe("must be an https URL");
    expect(check("vault-url", "my-vault", { provider: "azure-key-vault" })).toBe("must be the vault's https URL");
    expect(check("local-path", "", { provider: "local" })).toBe("must be a non-empty file path");
    expect(check("local-path", "keys/store.json", { provider: "local" })).toBeUndefined();
  });

  it("endpoint (GCP): https only, naming the certificate question as the caller does", () => {
    const gcp = { provider: "gcp-kms" };
    const message = (certificate: string) => `must be an https URL such as https://cloudkms.googleapis.com, or https://localhost:8085 for an emulator (with ${certificate})`;
    expect(check("endpoint", "http://localhost:8085", gcp)).toBe(message("a certificate"));
    expect(check("endpoint", "not a URL", gcp)).toBe(message("a certificate"));
    expect(check("endpoint", "http://localhost:8085", gcp, { ...CONTEXT, mention: (id) => `--${id}` })).toBe(message("--ca-cert"));
    expect(check("endpoint", "https://localhost:8085", gcp)).toBeUndefined();
  });

  it("ca-cert: the PEM text, checked with the endpoint by the provider, every issue with its path", () => {
    expect(check("ca-cert", "", { provider: "gcp-kms", endpoint: "" })).toBeUndefined();
    expect(check("ca-cert", PEM, { provider: "gcp-kms", endpoint: "https://localhost:8085" })).toBeUndefined();
    expect(check("ca-cert", "not PEM", { provider: "gcp-kms", endpoint: "https://localhost:8085" })).toBe("emulator.caCert: must be PEM text of a certificate");
    expect(check("ca-cert", PEM, { provider: "gcp-kms", endpoint: "" })).toBe("apiEndpoint: with emulator, must be a loopback address; port: with emulator, the emulator's port is required");
  });

  it("credentials: default or environment (the environment itself is the caller's to check)", () => {
    expect(check("credentials", "default", { provider: "aws-kms" })).toBeUndefined();
    expect(check("credentials", "environment", { provider: "vault" })).toBeUndefined();
    expect(check("credentials", "sometimes", { provider: "aws-kms" })).toBe("must be default or environment");
  });

  it.each([
    ["cache-max-age-ms", ["0", "3600001", "1.5", "-1", "1e3", " 5", "", "9999999999999999"], ["1", "3600000"], "must be an integer from 1 to 3600000"],
    ["cache-capacity", ["0", "1000001", "ten"], ["1", "1000000"], "must be an integer from 1 to 1000000"],
    ["rotation-days", ["0", "3651", "30d"], ["1", "3650"], "must be an integer from 1 to 3650"],
  ])("%s: an integer in its range", (id, bad, good, message) => {
    for (const answer of bad) expect([answer, check(id, answer)]).toEqual([answer, message]);
    for (const answer of good) expect(check(id, answer)).toBeUndefined();
  });
});

describe("the configuration and its file", () => {
  it("local, all defaults, JSON: no cache section (core's defaults apply)", () => {
    const config = buildSetupConfig(filled({ provider: "local" }));
    expect(setupConfigText(config, "kms.config.json")).toBe(
      [
        "{",
        '  "providers": {',
        '    "local": {',
        '      "path": ".kms/local-keys.json"',
        "    }",
        "  },",
        '  "tenants": {',
        '    "defaultKey": {',
        '      "provider": "local",',
        '      "keyId": "default"',
        "    }",
        "  },",
        '  "rotation": {',
        '    "cryptoperiodDays": 90',
        "  }",
        "}",
        "",
      ].join("\n"),
    );
  });

  it("aws-kms with an endpoint and a capacity, YAML: the capacity on both sides, the default max age left out", () => {
    const answers = filled({ provider: "aws-kms", key: "alias/tenants", region: "eu-west-1", endpoint: "http://127.0.0.1:4566", "cache-capacity": "500" });
    expect(setupConfigText(buildSetupConfig(answers), "kms.config.yaml")).toBe(
      [
        "providers:",
        "  aws-kms:",
        '    region: "eu-west-1"',
        '    endpoint: "http://127.0.0.1:4566"',
        "tenants:",
        "  defaultKey:",
        '    provider: "aws-kms"',
        '    keyId: "alias/tenants"',
        "cache:",
        "  encrypt:",
        "    capacity: 500",
        "  decrypt:",
        "    capacity: 500",
        "rotation:",
        "  cryptoperiodDays: 90",
        "",
      ].join("\n"),
    );
    // No endpoint: none in the file.
    expect(buildSetupConfig(filled({ provider: "aws-kms", key: "alias/tenants", region: "eu-west-1" })).providers).toEqual({ "aws-kms": { region: "eu-west-1" } });
  });

  it("vault, .yml: the token's variable, never a token", () => {
    const answers = filled({ provider: "vault", "vault-address": "https://vault.example.com:8200", "rotation-days": "30", credentials: "environment" });
    expect(setupConfigText(buildSetupConfig(answers), "kms.yml")).toBe(
      [
        "providers:",
        "  vault:",
        '    endpoint: "https://vault.example.com:8200"',
        "    auth:",
        '      tokenFromEnv: "VAULT_TOKEN"',
        "tenants:",
        "  defaultKey:",
        '    provider: "vault"',
        '    keyId: "default"',
        "rotation:",
        "  cryptoperiodDays: 30",
        "",
      ].join("\n"),
    );
  });

  it("azure-key-vault: the URL's origin; a loopback emulator turns the challenge resource check off", () => {
    const azure = (vaultUrl: string) => buildSetupConfig(filled({ provider: "azure-key-vault", key: "tenants", "vault-url": vaultUrl, "cache-max-age-ms": "60000" }));
    expect(azure("https://my-vault.vault.azure.net/keys/")).toEqual({
      providers: { "azure-key-vault": { vaultUrl: "https://my-vault.vault.azure.net" } },
      tenants: { defaultKey: { provider: "azure-key-vault", keyId: "tenants" } },
      cache: { encrypt: { maxAgeMs: 60000 }, decrypt: { maxAgeMs: 60000 } },
      rotation: { cryptoperiodDays: 90 },
    });
    expect(setupConfigText(azure("https://127.0.0.1:8443"), "azure.JSON")).toBe(
      [
        "{",
        '  "providers": {',
        '    "azure-key-vault": {',
        '      "vaultUrl": "https://127.0.0.1:8443",',
        '      "disableChallengeResourceVerification": true',
        "    }",
        "  },",
        '  "tenants": {',
        '    "defaultKey": {',
        '      "provider": "azure-key-vault",',
        '      "keyId": "tenants"',
        "    }",
        "  },",
        '  "cache": {',
        '    "encrypt": {',
        '      "maxAgeMs": 60000',
        "    },",
        '    "decrypt": {',
        '      "maxAgeMs": 60000',
        "    }",
        "  },",
        '  "rotation": {',
        '    "cryptoperiodDays": 90',
        "  }",
        "}",
        "",
      ].join("\n"),
    );
    for (const loopback of ["https://localhost:8443", "https://[::1]:8443", "https://127.1.2.3"]) {
      expect((azure(loopback).providers as Record<string, Settings>)["azure-key-vault"]).toHaveProperty("disableChallengeResourceVerification", true);
    }
  });

  it("gcp-kms: Google's service is empty settings; an emulator is host, port and the certificate's text", () => {
    const key = "projects/p/locations/global/keyRings/r/cryptoKeys/k";
    expect(setupConfigText(buildSetupConfig(filled({ provider: "gcp-kms", key })), "gcp.yaml")).toBe(
      ["providers:", "  gcp-kms: {}", "tenants:", "  defaultKey:", '    provider: "gcp-kms"', `    keyId: "${key}"`, "rotation:", "  cryptoperiodDays: 90", ""].join("\n"),
    );
    const emulator = buildSetupConfig(filled({ provider: "gcp-kms", key, endpoint: "https://localhost:8085", "ca-cert": PEM, "cache-max-age-ms": "1000", "cache-capacity": "20" }));
    expect(setupConfigText(emulator, "gcp.yaml")).toBe(
      [
        "providers:",
        "  gcp-kms:",
        '    apiEndpoint: "localhost"',
        "    port: 8085",
        "    emulator:",
        '      caCert: "-----BEGIN CERTIFICATE-----\\nMIIB\\n-----END CERTIFICATE-----\\n"',
        "tenants:",
        "  defaultKey:",
        '    provider: "gcp-kms"',
        `    keyId: "${key}"`,
        "cache:",
        "  encrypt:",
        "    maxAgeMs: 1000",
        "    capacity: 20",
        "  decrypt:",
        "    maxAgeMs: 1000",
        "    capacity: 20",
        "rotation:",
        "  cryptoperiodDays: 90",
        "",
      ].join("\n"),
    );
    const ipv6 = buildSetupConfig(filled({ provider: "gcp-kms", key, endpoint: "https://[::1]:8085", "ca-cert": PEM }));
    expect((ipv6.providers as Record<string, Settings>)["gcp-kms"]).toEqual({ apiEndpoint: "::1", port: 8085, emulator: { caCert: PEM } });
    // A public endpoint without a port: the host only.
    expect(buildSetupConfig(filled({ provider: "gcp-kms", key, endpoint: "https://eu-cloudkms.googleapis.com" })).providers).toEqual({ "gcp-kms": { apiEndpoint: "eu-cloudkms.googleapis.com" } });
  });

  it("the YAML reads back as the same object, whatever the strings hold; odd keys are quoted", () => {
    const tricky = { a: { "odd key": "yes", "1x": "null", n: 1.5, t: true, s: "multi\nline \"quoted\" é \u2028 #not a comment", empty: {} }, "": "x" };
    expect(setupConfigYaml(tricky)).toBe(
      ["a:", '  "odd key": "yes"', '  "1x": "null"', "  n: 1.5", "  t: true", '  s: "multi\\nline \\"quoted\\" é \u2028 #not a comment"', "  empty: {}", '"": "x"', ""].join("\n"),
    );
    expect(parse(setupConfigYaml(tricky))).toEqual(tricky);
    const answerSets: SetupAnswers[] = [{ provider: "local" }, { provider: "gcp-kms", key: "k", endpoint: "https://localhost:8085", "ca-cert": PEM }];
    for (const given of answerSets) {
      const config = buildSetupConfig(filled(given));
      expect(parse(setupConfigText(config, "x.yaml"))).toEqual(config);
    }
  });

  it("YAML for .yaml or .yml in any case, JSON for anything else", () => {
    const config = { a: "b" };
    for (const name of ["k.yaml", "k.yml", "K.YAML", "k.Yml"]) expect(setupConfigText(config, name)).toBe('a: "b"\n');
    for (const name of ["k.json", "k", "k.yaml.json", "yaml"]) expect(setupConfigText(config, name)).toBe('{\n  "a": "b"\n}\n');
  });
});
