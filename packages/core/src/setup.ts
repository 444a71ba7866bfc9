/**
 * The setup wizard: its questions (ids, texts, defaults, which providers ask each, the check of each
 * answer), the configuration its answers make, and that configuration as a file's text. Shared by
 * `kms init` (@kms/cli), which asks on a terminal or takes flags, and the server's admin console,
 * which asks in a form: each asks in its own way and reads what it must (a certificate file), this
 * module only holds data and pure functions (no terminal, no file, no network).
 *
 * An answer is checked with core's `keyIdProblem` and the installed providers' own `parseSettings`
 * and `keyIdProblem`, so a refused answer has the provider's message. The file never holds a secret:
 * credentials come from the provider SDK's default chain or the environment; for Vault the file names
 * the variable (`auth: { tokenFromEnv: "VAULT_TOKEN" }`). A cache setting equal to core's default is
 * left out of the file, which then follows core's default.
 */
import { CRYPTOPERIOD_DAYS, MAX_CACHE_CAPACITY, kmsConfigSchema } from "./config";
import { keyIdProblem } from "./envelope";
import { LOCAL_DEFAULT_PATH } from "./local-provider";
import { KNOWN_PROVIDERS, type ProviderDefinition } from "./provider";

/** The providers the wizard sets up, in the order it offers them. */
export const SETUP_PROVIDERS = ["local", "aws-kms", "vault", "gcp-kms", "azure-key-vault"] as const;
export type SetupProviderId = (typeof SETUP_PROVIDERS)[number];

/** Answers by question id (checked answers, for `buildSetupConfig`). */
export type SetupAnswers = Readonly<Record<string, string>>;

/** The variable holding Vault's token: written into the file as `auth.tokenFromEnv`. */
export const VAULT_TOKEN_ENV = "VAULT_TOKEN";

/** What the checks need besides the answers. */
export interface SetupContext {
  /** The provider definitions installed: answers are checked by their `parseSettings` and `keyIdProblem`. */
  readonly registry: readonly ProviderDefinition<unknown>[];
  /**
   * How a message names another question. Default: what it asks for (`a certificate`); `kms init`
   * names its flag (`--ca-cert`).
   */
  readonly mention?: (questionId: string) => string;
}

export interface SetupQuestion {
  /** Stable: `kms init`'s flag (`--<id>`), the console's field, the key in `SetupAnswers`. */
  readonly id: string;
  readonly text: string;
  /** Which providers ask it (all when absent). */
  readonly providers?: readonly SetupProviderId[];
  /** An empty answer is allowed (the provider's own default applies). */
  readonly optional?: boolean;
  /** The only answers there are. */
  readonly choices?: readonly string[];
  /** The answer is a file's content (a PEM certificate): the caller reads the file the user names or picks. */
  readonly file?: boolean;
  /** An integer answer's range. */
  readonly integer?: { readonly min: number; readonly max: number };
  /** The default, from the answers so far and the environment, or undefined when there is none. */
  fallback(answers: SetupAnswers, env: Readonly<Record<string, string | undefined>>): string | undefined;
  /** The problem with an answer, or undefined. The earlier questions' answers must have passed. */
  check(answer: string, answers: SetupAnswers, context: SetupContext): string | undefined;
}

/** Core's cache settings with their defaults (`cache.encrypt`'s max age and capacity are `cache.decrypt`'s too). */
const CACHE_DEFAULTS = kmsConfigSchema.shape.cache.parse(undefined);

const definition = (context: SetupContext, id: string) => context.registry.find((d) => d.id === id);

/** The provider's own settings check, for one setting: its message, or undefined. */
function settingProblem(context: SetupContext, provider: SetupProviderId, settings: Record<string, unknown>, path: string): string | undefined {
  const result = definition(context, provider)?.parseSettings(settings);
  return result === undefined || result.ok ? undefined : result.issues.find((i) => i.path === path || i.path.startsWith(`${path}.`))?.message;
}

/** A loopback host (127.0.0.0/8, ::1, localhost): an emulator, not Azure. */
const isLoopback = (url: string) => /^(127(\.\d{1,3}){3}|\[::1\]|localhost)$/i.test(new URL(url).hostname);

/**
 * The endpoint and the certificate for GCP: the URL becomes host and port; an emulator's certificate
 * (PEM text) becomes emulator mode (TLS trusting that certificate only, no credentials). Cloud KMS is
 * only ever reached over TLS. Returns the settings, or the problem with the URL.
 */
function gcpSettings(url: string, caCertPem: string, context: SetupContext | undefined): Record<string, unknown> | string {
  const settings: Record<string, unknown> = {};
  if (url !== "") {
    let parsed: URL | undefined;
    try {
      parsed = new URL(url);
    } catch {
      parsed = undefined;
    }
    if (parsed?.protocol !== "https:") {
      const certificate = context?.mention?.("ca-cert") ?? "a certificate";
      return `must be an https URL such as https://cloudkms.googleapis.com, or https://localhost:8085 for an emulator (with ${certificate})`;
    }
    settings.apiEndpoint = parsed.hostname.replace(/^\[|\]$/g, "");
    if (parsed.port !== "") settings.port = Number(parsed.port);
  }
  return caCertPem === "" ? settings : { ...settings, emulator: { caCert: caCertPem } };
}

/** The problems @kms/gcp finds with settings from `gcpSettings` (each with its path), or undefined. */
function gcpProblem(context: SetupContext, settings: Record<string, unknown> | string): string | undefined {
  if (typeof settings === "string") return settings;
  const result = definition(context, "gcp-kms")?.parseSettings(settings);
  return result === undefined || result.ok ? undefined : result.issues.map((i) => `${i.path}: ${i.message}`).join("; ");
}

/** An integer question's range and check. */
const integerFrom = (min: number, max: number) => ({
  integer: { min, max },
  check: (answer: string) => (/^\d{1,15}$/.test(answer) && Number(answer) >= min && Number(answer) <= max ? undefined : `must be an integer from ${min} to ${max}`),
});

/** The questions, in the order they are asked. */
export const SETUP_QUESTIONS: readonly SetupQuestion[] = [
  {
    id: "provider",
    text: "Provider",
    choices: SETUP_PROVIDERS,
    fallback: () => "local",
    check: (id, _a, context) => {
      if (!(SETUP_PROVIDERS as readonly string[]).includes(id)) return `must be one of ${SETUP_PROVIDERS.join(", ")}`;
      return definition(context, id) === undefined ? `the provider ${id} is not installed here (${KNOWN_PROVIDERS[id]})` : undefined;
    },
  },
  {
    id: "key",
    text: "Key id of the default tenant key",
    fallback: (a) => (a.provider === "local" || a.provider === "vault" ? "default" : undefined),
    check: (key, a, context) => keyIdProblem(key) ?? definition(context, a.provider!)?.keyIdProblem?.(key),
  },
  {
    id: "region",
    text: "AWS region",
    providers: ["aws-kms"],
    fallback: (_a, env) => env.AWS_REGION || env.AWS_DEFAULT_REGION || undefined,
    check: (region, _a, context) => settingProblem(context, "aws-kms", { region }, "region"),
  },
  {
    id: "endpoint",
    text: "Endpoint URL (empty: the service's public endpoint)",
    providers: ["aws-kms", "gcp-kms"],
    optional: true,
    fallback: () => "",
    check: (url, a, context) => {
      if (url === "") return undefined;
      if (a.provider === "aws-kms") return settingProblem(context, "aws-kms", { region: "us-east-1", endpoint: url }, "endpoint");
      return gcpProblem(context, gcpSettings(url, "", context));
    },
  },
  {
    id: "ca-cert",
    text: "Emulator certificate to trust, a PEM file (empty: Google's service)",
    providers: ["gcp-kms"],
    optional: true,
    file: true,
    fallback: () => "",
    check: (pem, a, context) => (pem === "" ? undefined : gcpProblem(context, gcpSettings(a.endpoint ?? "", pem, context))),
  },
  {
    id: "vault-address",
    text: "Vault address (e.g. https://vault.example.com:8200)",
    providers: ["vault"],
    fallback: (_a, env) => env.VAULT_ADDR || undefined,
    check: (endpoint, _a, context) => settingProblem(context, "vault", { endpoint, auth: { token: "checked-elsewhere" } }, "endpoint"),
  },
  {
    id: "vault-url",
    text: "Key Vault URL (e.g. https://my-vault.vault.azure.net)",
    providers: ["azure-key-vault"],
    fallback: () => undefined,
    check: (vaultUrl, _a, context) => settingProblem(context, "azure-key-vault", { vaultUrl }, "vaultUrl"),
  },
  {
    id: "credentials",
    text: "Credentials: default (the SDK's default chain) or environment (variables only)",
    providers: ["aws-kms", "vault", "gcp-kms", "azure-key-vault"],
    choices: ["default", "environment"],
    fallback: () => "default",
    check: (answer) => (answer === "default" || answer === "environment" ? undefined : "must be default or environment"),
  },
  {
    id: "local-path",
    text: "Local key store file (development only)",
    providers: ["local"],
    fallback: () => LOCAL_DEFAULT_PATH,
    check: (path, _a, context) => settingProblem(context, "local", { path }, "path"),
  },
  {
    id: "cache-max-age-ms",
    text: "Data key cache: max age of an entry, in ms",
    fallback: () => String(CACHE_DEFAULTS.encrypt.maxAgeMs),
    // Up to core's hard max age (kept as its default), which a max age may not exceed.
    ...integerFrom(1, CACHE_DEFAULTS.hardMaxAgeMs),
  },
  {
    id: "cache-capacity",
    text: "Data key cache: entries per cache (encrypt, decrypt)",
    fallback: () => String(CACHE_DEFAULTS.encrypt.capacity),
    ...integerFrom(1, MAX_CACHE_CAPACITY),
  },
  {
    id: "rotation-days",
    text: "Rotate keys every N days (cryptoperiod)",
    fallback: () => String(CRYPTOPERIOD_DAYS.default),
    ...integerFrom(CRYPTOPERIOD_DAYS.min, CRYPTOPERIOD_DAYS.max),
  },
];

/** Whether the question is asked when `provider` was chosen. */
export function setupQuestionApplies(question: SetupQuestion, provider: string | undefined): boolean {
  return question.providers === undefined || (question.providers as readonly (string | undefined)[]).includes(provider);
}

function providerSettings(a: SetupAnswers): Record<string, unknown> {
  switch (a.provider as SetupProviderId) {
    case "local":
      return { path: a["local-path"] };
    case "aws-kms":
      return { region: a.region, ...(a.endpoint ? { endpoint: a.endpoint } : {}) };
    case "vault":
      return { endpoint: a["vault-address"], auth: { tokenFromEnv: VAULT_TOKEN_ENV } };
    case "gcp-kms":
      return gcpSettings(a.endpoint ?? "", a["ca-cert"] ?? "", undefined) as Record<string, unknown>;
    case "azure-key-vault":
      // The URL's origin (as @kms/azure reads it). An emulator's challenge names Azure's resource, not
      // its loopback host: the SDK's check of that resource is turned off there, and only there.
      return { vaultUrl: new URL(a["vault-url"]!).origin, ...(isLoopback(a["vault-url"]!) ? { disableChallengeResourceVerification: true } : {}) };
  }
}

/**
 * The configuration the answers make (answers that passed their questions' checks, every question
 * that applies answered: an optional one with ""). Check the result with `validateConfig` before
 * writing it.
 */
export function buildSetupConfig(a: SetupAnswers): Record<string, unknown> {
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
}

/**
 * YAML for the plain objects `buildSetupConfig` makes (mappings, strings, numbers, booleans): strings
 * double-quoted (JSON's escapes are YAML's), so no value is ever read back as another type.
 */
export function setupConfigYaml(value: Record<string, unknown>, indent = ""): string {
  return Object.entries(value)
    .map(([key, v]) => {
      const name = /^[A-Za-z_][A-Za-z0-9_-]*$/.test(key) ? key : JSON.stringify(key);
      if (typeof v === "object" && v !== null) {
        const inner = setupConfigYaml(v as Record<string, unknown>, `${indent}  `);
        return inner === "" ? `${indent}${name}: {}\n` : `${indent}${name}:\n${inner}`;
      }
      return `${indent}${name}: ${JSON.stringify(v)}\n`;
    })
    .join("");
}

/** The file's text for the configuration: YAML when `fileName` ends in .yaml or .yml (any case), else JSON. */
export function setupConfigText(config: Record<string, unknown>, fileName: string): string {
  return /\.ya?ml$/i.test(fileName) ? setupConfigYaml(config) : `${JSON.stringify(config, null, 2)}\n`;
}
