/**
 * The setup wizard's questions and configuration check: what `kms init` asks (packages/cli
 * `src/commands/init.ts`), checked answer by answer with the same functions (core's `keyIdProblem`,
 * each provider's `parseSettings` and `keyIdProblem`), turned into the same file (`buildConfig`,
 * `toYaml`), and the whole file checked by core's `validateConfig` with the server's provider
 * registry, exactly as `kms init` and the server's start-up do. No provider is called.
 *
 * Departures from `kms init`, because the file is written for another machine: `--credentials
 * environment` is not checked against this server's environment, nor is Vault's `VAULT_TOKEN`
 * (`kms validate` checks them where the file is used); `--ca-cert` is the PEM's text (uploaded by the page), not a path; `--config` is only
 * the download's file name (JSON, or YAML for .yaml/.yml).
 *
 * The server cannot import @kms/cli (not a dependency), so the question table is mirrored here:
 * a change to `kms init`'s questions needs the same change here.
 */
import { isKmsError, keyIdProblem, kmsConfigSchema, LOCAL_DEFAULT_PATH, validateConfig, type ConfigIssue, type KmsConfigError, type ProviderDefinition } from "@kms/core";

export const PROVIDERS = ["local", "aws-kms", "vault", "gcp-kms", "azure-key-vault"] as const;
type ProviderId = (typeof PROVIDERS)[number];
const DEFAULT_CRYPTOPERIOD_DAYS = 90;
const CACHE_DEFAULTS = kmsConfigSchema.shape.cache.parse(undefined);
const MAX_CACHE_CAPACITY = 1_000_000;
const VAULT_TOKEN_ENV = "VAULT_TOKEN";
export const DEFAULT_FILE_NAME = "kms.config.json";

type Answers = Record<string, string>;

interface Question {
  readonly flag: string;
  readonly text: string;
  readonly providers?: readonly ProviderId[];
  readonly optional?: boolean;
  readonly choices?: readonly string[];
  /** The answer is the content of a file the user picks (the page reads it). */
  readonly file?: boolean;
  fallback(answers: Answers): string | undefined;
  check(answer: string, answers: Answers): string | undefined;
}

/** What the page gets of a question. */
export interface PublicQuestion {
  flag: string;
  text: string;
  providers?: readonly string[];
  optional?: boolean;
  choices?: readonly string[];
  file?: boolean;
  /** The default for the provider chosen (by `provider`), when there is one. */
  defaults: Record<string, string>;
}

export interface SetupCheck {
  ok: boolean;
  /** Problems by question (`flag`), or by configuration path (`path`) from core's validation. */
  issues: { flag?: string; path?: string; code?: string; message: string; docsUrl?: string }[];
  config?: Record<string, unknown>;
  fileName?: string;
  text?: string;
}

const isLoopback = (url: string) => /^(127(\.\d{1,3}){3}|\[::1\]|localhost)$/i.test(new URL(url).hostname);
const integerFrom = (min: number, max: number) => (answer: string) =>
  /^\d{1,15}$/.test(answer) && Number(answer) >= min && Number(answer) <= max ? undefined : `must be an integer from ${min} to ${max}`;

function gcpSettings(url: string, caCertPem: string): Record<string, unknown> | string {
  const settings: Record<string, unknown> = {};
  if (url !== "") {
    let parsed: URL | undefined;
    try {
      parsed = new URL(url);
    } catch {
      parsed = undefined;
    }
    if (parsed?.protocol !== "https:") return "must be an https URL such as https://cloudkms.googleapis.com, or https://localhost:8085 for an emulator (with a certificate)";
    settings.apiEndpoint = parsed.hostname.replace(/^\[|\]$/g, "");
    if (parsed.port !== "") settings.port = Number(parsed.port);
  }
  return caCertPem === "" ? settings : { ...settings, emulator: { caCert: caCertPem } };
}

export interface SetupWizard {
  questions(): PublicQuestion[];
  check(answers: Answers, fileName: string | undefined): Promise<SetupCheck>;
}

export function createSetupWizard(registry: readonly ProviderDefinition<unknown>[], env: Readonly<Record<string, string | undefined>> = process.env): SetupWizard {
  const definition = (id: string) => registry.find((d) => d.id === id);
  const settingProblem = (provider: ProviderId, settings: Record<string, unknown>, path: string): string | undefined => {
    const def = definition(provider);
    if (def === undefined) return `the provider ${provider} is not installed in this server`;
    const result = def.parseSettings(settings);
    return result.ok ? undefined : result.issues.find((i) => i.path === path || i.path.startsWith(`${path}.`))?.message;
  };
  const gcpProblem = (settings: Record<string, unknown> | string): string | undefined => {
    if (typeof settings === "string") return settings;
    const result = definition("gcp-kms")?.parseSettings(settings);
    return result === undefined || result.ok ? undefined : result.issues.map((i) => `${i.path}: ${i.message}`).join("; ");
  };

  const QUESTIONS: readonly Question[] = [
    {
      flag: "provider",
      text: "Provider",
      choices: PROVIDERS,
      fallback: () => "local",
      check: (a) => ((PROVIDERS as readonly string[]).includes(a) ? undefined : `must be one of ${PROVIDERS.join(", ")}`),
    },
    {
      flag: "key",
      text: "Key id of the default tenant key",
      fallback: (a) => (a.provider === "local" || a.provider === "vault" ? "default" : undefined),
      check: (key, a) => keyIdProblem(key) ?? definition(a.provider!)?.keyIdProblem?.(key),
    },
    {
      flag: "region",
      text: "AWS region",
      providers: ["aws-kms"],
      fallback: () => env.AWS_REGION || env.AWS_DEFAULT_REGION || undefined,
      check: (region) => settingProblem("aws-kms", { region }, "region"),
    },
    {
      flag: "endpoint",
      text: "Endpoint URL (empty: the service's public endpoint)",
      providers: ["aws-kms", "gcp-kms"],
      optional: true,
      fallback: () => "",
      check: (url, a) => {
        if (url === "") return undefined;
        if (a.provider === "aws-kms") return settingProblem("aws-kms", { region: "us-east-1", endpoint: url }, "endpoint");
        return gcpProblem(gcpSettings(url, ""));
      },
    },
    {
      flag: "ca-cert",
      text: "Emulator certificate to trust, a PEM file (empty: Google's service)",
      providers: ["gcp-kms"],
      optional: true,
      file: true,
      fallback: () => "",
      check: (pem, a) => (pem === "" ? undefined : gcpProblem(gcpSettings(a.endpoint ?? "", pem))),
    },
    {
      flag: "vault-address",
      text: "Vault address (e.g. https://vault.example.com:8200)",
      providers: ["vault"],
      fallback: () => env.VAULT_ADDR || undefined,
      check: (endpoint) => settingProblem("vault", { endpoint, auth: { token: "checked-elsewhere" } }, "endpoint"),
    },
    {
      flag: "vault-url",
      text: "Key Vault URL (e.g. https://my-vault.vault.azure.net)",
      providers: ["azure-key-vault"],
      fallback: () => undefined,
      check: (vaultUrl) => settingProblem("azure-key-vault", { vaultUrl }, "vaultUrl"),
    },
    {
      flag: "credentials",
      text: "Credentials: default (the SDK's default chain) or environment (variables only)",
      providers: ["aws-kms", "vault", "gcp-kms", "azure-key-vault"],
      choices: ["default", "environment"],
      fallback: () => "default",
      check: (answer) => (answer === "default" || answer === "environment" ? undefined : "must be default or environment"),
    },
    {
      flag: "local-path",
      text: "Local key store file (development only)",
      providers: ["local"],
      fallback: () => LOCAL_DEFAULT_PATH,
      check: (path) => settingProblem("local", { path }, "path"),
    },
    {
      flag: "cache-max-age-ms",
      text: "Data key cache: max age of an entry, in ms",
      fallback: () => String(CACHE_DEFAULTS.encrypt.maxAgeMs),
      check: integerFrom(1, CACHE_DEFAULTS.hardMaxAgeMs),
    },
    {
      flag: "cache-capacity",
      text: "Data key cache: entries per cache (encrypt, decrypt)",
      fallback: () => String(CACHE_DEFAULTS.encrypt.capacity),
      check: integerFrom(1, MAX_CACHE_CAPACITY),
    },
    {
      flag: "rotation-days",
      text: "Rotate keys every N days (cryptoperiod)",
      fallback: () => String(DEFAULT_CRYPTOPERIOD_DAYS),
      check: integerFrom(1, 3650),
    },
  ];

  const providerSettings = (a: Answers): Record<string, unknown> => {
    switch (a.provider as ProviderId) {
      case "local":
        return { path: a["local-path"] };
      case "aws-kms":
        return { region: a.region, ...(a.endpoint ? { endpoint: a.endpoint } : {}) };
      case "vault":
        return { endpoint: a["vault-address"], auth: { tokenFromEnv: VAULT_TOKEN_ENV } };
      case "gcp-kms":
        return gcpSettings(a.endpoint ?? "", a["ca-cert"] ?? "") as Record<string, unknown>;
      case "azure-key-vault":
        return { vaultUrl: new URL(a["vault-url"]!).origin, ...(isLoopback(a["vault-url"]!) ? { disableChallengeResourceVerification: true } : {}) };
    }
  };

  /** `kms init`'s `buildConfig`: cache settings equal to core's defaults are left out. */
  const buildConfig = (a: Answers): Record<string, unknown> => {
    const maxAgeMs = Number(a["cache-max-age-ms"]);
    const capacity = Number(a["cache-capacity"]);
    const side = {
      ...(maxAgeMs === CACHE_DEFAULTS.encrypt.maxAgeMs ? {} : { maxAgeMs }),
      ...(capacity === CACHE_DEFAULTS.encrypt.capacity ? {} : { capacity }),
    };
    return {
      providers: { [a.provider!]: providerSettings(a) },
      tenants: { defaultKey: { provider: a.provider, keyId: a.key } },
      ...(Object.keys(side).length === 0 ? {} : { cache: { encrypt: side, decrypt: side } }),
      rotation: { cryptoperiodDays: Number(a["rotation-days"]) },
    };
  };

  return {
    questions() {
      return QUESTIONS.map((q) => {
        const defaults: Record<string, string> = {};
        for (const provider of PROVIDERS) {
          const value = q.fallback({ provider });
          if (value !== undefined && value !== "") defaults[provider] = value;
        }
        return {
          flag: q.flag,
          text: q.text,
          ...(q.providers === undefined ? {} : { providers: q.providers }),
          ...(q.optional === true ? { optional: true } : {}),
          ...(q.choices === undefined ? {} : { choices: q.choices }),
          ...(q.file === true ? { file: true } : {}),
          defaults,
        };
      });
    },

    async check(given, fileName = DEFAULT_FILE_NAME) {
      const issues: SetupCheck["issues"] = [];
      const answers: Answers = {};
      for (const q of QUESTIONS) {
        const applies = q.providers === undefined || q.providers.includes(answers.provider as ProviderId);
        const raw = given[q.flag];
        if (!applies) continue;
        const answer = raw === undefined || raw.trim() === "" ? (q.fallback(answers) ?? "") : q.file ? raw : raw.trim();
        if (answer === "" && !q.optional) {
          issues.push({ flag: q.flag, message: "an answer is needed" });
          if (q.flag === "provider") break;
          continue;
        }
        const problem = q.check(answer, answers);
        if (problem !== undefined) {
          issues.push({ flag: q.flag, message: problem });
          if (q.flag === "provider") break;
          continue;
        }
        answers[q.flag] = answer;
      }
      if (!/^[A-Za-z0-9._-]{1,128}$/.test(fileName) || fileName.startsWith(".")) issues.push({ flag: "file", message: "must be a file name of letters, digits, . _ - (e.g. kms.config.json or kms.config.yaml)" });
      if (issues.length > 0) return { ok: false, issues };
      const config = buildConfig(answers);
      try {
        const validated = validateConfig(config, { registry, env });
        await Promise.allSettled([...validated.providers.values()].map((p) => p.close()));
      } catch (error) {
        if (!isKmsError(error)) throw error;
        const all: readonly ConfigIssue[] = Array.isArray((error as KmsConfigError).issues) ? (error as KmsConfigError).issues : [{ path: "", code: error.code, message: error.message, docsUrl: error.docsUrl }];
        // The file names the variable holding Vault's token (`auth.tokenFromEnv`): it is set where
        // the file is used, not on this server (@kms/vault reads process.env), so its absence here
        // is no problem with the file.
        const list = all.filter((i) => !(i.path === `providers.vault.auth.tokenFromEnv` && i.message === `the environment variable ${VAULT_TOKEN_ENV} is not set, or is empty`));
        if (list.length > 0) return { ok: false, issues: list.map((i) => ({ path: i.path, code: i.code, message: i.message, docsUrl: i.docsUrl })) };
      }
      const text = /\.ya?ml$/i.test(fileName) ? toYaml(config) : `${JSON.stringify(config, null, 2)}\n`;
      return { ok: true, issues: [], config, fileName, text };
    },
  };
}

/** `kms init`'s YAML for the plain objects `buildConfig` makes: strings double-quoted (JSON escapes are YAML's). */
export function toYaml(value: Record<string, unknown>, indent = ""): string {
  return Object.entries(value)
    .map(([key, v]) => {
      const name = /^[A-Za-z_][A-Za-z0-9_-]*$/.test(key) ? key : JSON.stringify(key);
      if (typeof v === "object" && v !== null) {
        const inner = toYaml(v as Record<string, unknown>, `${indent}  `);
        return inner === "" ? `${indent}${name}: {}\n` : `${indent}${name}:\n${inner}`;
      }
      return `${indent}${name}: ${JSON.stringify(v)}\n`;
    })
    .join("");
}
