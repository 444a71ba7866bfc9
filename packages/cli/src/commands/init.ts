/**
 * `kms init`: writes a configuration file (JSON, or YAML by extension; mode 0600) for one provider
 * and a default tenant key, checks it with core, then runs `kms validate`. Every question has a
 * flag; on a terminal the unanswered ones are asked, with `--yes` they take their defaults or fail
 * naming the flag. The file never holds a secret: credentials come from the provider SDK's default
 * chain or the environment (AWS_ACCESS_KEY_ID…, GOOGLE_APPLICATION_CREDENTIALS, Azure's
 * DefaultAzureCredential; for Vault the file names the variable: `auth: { tokenFromEnv: "VAULT_TOKEN" }`,
 * which @kms/vault reads).
 * A cache setting equal to core's default is left out of the file, which then follows core's default.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { keyIdProblem, kmsConfigSchema, LOCAL_DEFAULT_PATH } from "@kms/core";
import { bool, str, type Command, type Flags } from "../command";
import { closeProviders, configLocation, REGISTRY, validate } from "../config";
import { CliError, EXIT, UsageError } from "../errors";
import { out } from "../output";
import { type Asker, terminalAsker } from "../prompt";
import { runValidate } from "./validate";

const PROVIDERS = ["local", "aws-kms", "vault", "gcp-kms", "azure-key-vault"] as const;
type ProviderId = (typeof PROVIDERS)[number];
const DEFAULT_CRYPTOPERIOD_DAYS = 90;
/** Core's cache settings with their defaults (`cache.encrypt`'s max age and capacity are `cache.decrypt`'s too). */
const CACHE_DEFAULTS = kmsConfigSchema.shape.cache.parse(undefined);
/** A cache capacity's upper bound in core's schema. */
const MAX_CACHE_CAPACITY = 1_000_000;

/** The variable holding Vault's token: written into the file as `auth.tokenFromEnv`, always checked. */
const VAULT_TOKEN_ENV = "VAULT_TOKEN";

/**
 * Where each provider's credentials come from with `--credentials environment`: the variables of one
 * alternative must all be set. Azure: what @azure/identity 4.13's DefaultAzureCredential reads, a
 * service principal's secret or certificate (EnvironmentCredential), a federated token file (workload
 * identity), or the managed identity endpoint App Service, Functions, Container Apps, Arc and Service
 * Fabric set. A VM's managed identity (IMDS) sets no variable: `default` there.
 */
const CREDENTIAL_ENV: Record<Exclude<ProviderId, "local">, readonly (readonly string[])[]> = {
  "aws-kms": [["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]],
  vault: [[VAULT_TOKEN_ENV]],
  "gcp-kms": [["GOOGLE_APPLICATION_CREDENTIALS"]],
  "azure-key-vault": [
    ["AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET"],
    ["AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_CERTIFICATE_PATH"],
    ["AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_FEDERATED_TOKEN_FILE"],
    ["IDENTITY_ENDPOINT"],
  ],
};

/** Why the environment holds none of the provider's credential alternatives, or undefined. */
function credentialEnvProblem(provider: Exclude<ProviderId, "local">): string | undefined {
  const alternatives = CREDENTIAL_ENV[provider];
  if (alternatives.some((names) => names.every((name) => process.env[name]))) return undefined;
  if (alternatives.length > 1) return `not set in the environment: ${alternatives.map((names) => names.join(" + ")).join(", or ")}`;
  const missing = alternatives[0]!.filter((name) => !process.env[name]);
  return `${missing.join(" and ")} ${missing.length === 1 ? "is" : "are"} not set in the environment`;
}

/** A loopback host (127.0.0.0/8, ::1, localhost): an emulator, not Azure. */
const isLoopback = (url: string) => /^(127(\.\d{1,3}){3}|\[::1\]|localhost)$/i.test(new URL(url).hostname);

interface Question {
  readonly flag: string;
  readonly text: string;
  /** Which providers ask it (all when absent). */
  readonly providers?: readonly ProviderId[];
  /** An empty answer is allowed (the provider's own default applies). */
  readonly optional?: boolean;
  fallback(answers: Answers): string | undefined;
  /** The problem with an answer, or undefined. */
  check(answer: string, answers: Answers): string | undefined;
}

type Answers = Record<string, string>;

const definition = (id: string) => REGISTRY.find((d) => d.id === id)!;

/** The provider's own settings check, for one setting: its message, or undefined. */
function settingProblem(provider: ProviderId, settings: Record<string, unknown>, path: string): string | undefined {
  const result = definition(provider).parseSettings(settings);
  return result.ok ? undefined : result.issues.find((i) => i.path === path || i.path.startsWith(`${path}.`))?.message;
}

/** The problem with an answer that must be an integer from `min` to `max`, or undefined. */
const integerFrom = (min: number, max: number) => (answer: string) =>
  /^\d{1,15}$/.test(answer) && Number(answer) >= min && Number(answer) <= max ? undefined : `must be an integer from ${min} to ${max}`;

/**
 * `--endpoint` and `--ca-cert` for GCP: the URL becomes host and port; the PEM file of an emulator's
 * certificate, read now, becomes emulator mode (TLS trusting that certificate only, no credentials).
 * Cloud KMS is only ever reached over TLS. Returns the settings, or the problem.
 */
function gcpSettings(url: string, caCertFile: string): Record<string, unknown> | string {
  const settings: Record<string, unknown> = {};
  if (url !== "") {
    let parsed: URL | undefined;
    try {
      parsed = new URL(url);
    } catch {
      parsed = undefined;
    }
    if (parsed?.protocol !== "https:") return "must be an https URL such as https://cloudkms.googleapis.com, or https://localhost:8085 for an emulator (with --ca-cert)";
    settings.apiEndpoint = parsed.hostname.replace(/^\[|\]$/g, "");
    if (parsed.port !== "") settings.port = Number(parsed.port);
  }
  if (caCertFile === "") return settings;
  try {
    return { ...settings, emulator: { caCert: readFileSync(caCertFile, "utf8") } };
  } catch (error) {
    return `cannot read ${caCertFile} (${(error as NodeJS.ErrnoException).code ?? "unreadable"})`;
  }
}

/** The problems @kms/gcp finds with settings from `gcpSettings` (each with its path), or undefined. */
function gcpProblem(settings: Record<string, unknown> | string): string | undefined {
  if (typeof settings === "string") return settings;
  const result = definition("gcp-kms").parseSettings(settings);
  return result.ok ? undefined : result.issues.map((i) => `${i.path}: ${i.message}`).join("; ");
}

const QUESTIONS: readonly Question[] = [
  {
    flag: "provider",
    text: `Provider (${PROVIDERS.join(", ")})`,
    fallback: () => "local",
    check: (a) => ((PROVIDERS as readonly string[]).includes(a) ? undefined : `must be one of ${PROVIDERS.join(", ")}`),
  },
  {
    flag: "key",
    text: "Key id of the default tenant key",
    fallback: (a) => (a.provider === "local" || a.provider === "vault" ? "default" : undefined),
    check: (key, a) => keyIdProblem(key) ?? definition(a.provider!).keyIdProblem?.(key),
  },
  {
    flag: "region",
    text: "AWS region",
    providers: ["aws-kms"],
    fallback: () => process.env.AWS_REGION || process.env.AWS_DEFAULT_REGION || undefined,
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
    fallback: () => "",
    check: (file, a) => (file === "" ? undefined : gcpProblem(gcpSettings(a.endpoint!, file))),
  },
  {
    flag: "vault-address",
    text: "Vault address (e.g. https://vault.example.com:8200)",
    providers: ["vault"],
    fallback: () => process.env.VAULT_ADDR || undefined,
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
    fallback: () => "default",
    check: (answer, a) => {
      if (answer !== "default" && answer !== "environment") return "must be default or environment";
      return answer === "environment" || a.provider === "vault" ? credentialEnvProblem(a.provider as Exclude<ProviderId, "local">) : undefined;
    },
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
    // Up to core's hard max age (kept as its default), which a max age may not exceed.
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

/** Answers every question for the provider: from flags, the terminal, or (with --yes) defaults. */
async function collectAnswers(flags: Flags, asker: Asker | undefined): Promise<Answers> {
  const answers: Answers = {};
  for (const q of QUESTIONS) {
    const given = str(flags, q.flag);
    const applies = q.providers === undefined || q.providers.includes(answers.provider as ProviderId);
    if (!applies) {
      if (given !== undefined) throw new UsageError(`--${q.flag} does not apply to --provider ${answers.provider}`);
      continue;
    }
    if (given !== undefined || asker === undefined) {
      const answer = given ?? q.fallback(answers);
      if (answer === undefined) throw new UsageError(`missing --${q.flag} (no default with --provider ${answers.provider})`);
      const problem = q.check(answer, answers);
      if (problem !== undefined) throw new UsageError(`--${q.flag}: ${problem}`);
      answers[q.flag] = answer;
    } else {
      answers[q.flag] = await asker.ask(q.text, q.fallback(answers), (a) => (a === "" && !q.optional ? "an answer is needed" : q.check(a, answers)));
    }
  }
  return answers;
}

function providerSettings(a: Answers): Record<string, unknown> {
  switch (a.provider as ProviderId) {
    case "local":
      return { path: a["local-path"] };
    case "aws-kms":
      return { region: a.region, ...(a.endpoint ? { endpoint: a.endpoint } : {}) };
    case "vault":
      return { endpoint: a["vault-address"], auth: { tokenFromEnv: VAULT_TOKEN_ENV } };
    case "gcp-kms":
      return gcpSettings(a.endpoint!, a["ca-cert"]!) as Record<string, unknown>;
    case "azure-key-vault":
      // The URL's origin (as @kms/azure reads it). An emulator's challenge names Azure's resource, not
      // its loopback host: the SDK's check of that resource is turned off there, and only there.
      return { vaultUrl: new URL(a["vault-url"]!).origin, ...(isLoopback(a["vault-url"]!) ? { disableChallengeResourceVerification: true } : {}) };
  }
}

export function buildConfig(a: Answers): Record<string, unknown> {
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

/** YAML for the plain objects `buildConfig` makes: strings double-quoted (JSON escapes are YAML's). */
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

async function init(flags: Flags): Promise<number> {
  const location = configLocation(str(flags, "config"));
  if (existsSync(location.path) && !bool(flags, "force")) {
    throw new CliError(`${location.path} already exists: pass --force to overwrite it`, EXIT.USAGE);
  }
  const interactive = !bool(flags, "yes");
  if (interactive && process.stdin.isTTY !== true) {
    throw new UsageError("stdin is not a terminal: pass --yes (and flags for the answers) to run init without questions");
  }
  const asker = interactive ? terminalAsker() : undefined;
  let answers: Answers;
  try {
    answers = await collectAnswers(flags, asker);
  } finally {
    asker?.close();
  }
  const config = buildConfig(answers);
  // Core's checks before anything is written (they read no file and call no KMS, so a relative local
  // key store path needs no resolving here): a refused configuration leaves no file behind.
  await closeProviders(validate(config));
  const text = /\.ya?ml$/i.test(location.path) ? toYaml(config) : `${JSON.stringify(config, null, 2)}\n`;
  mkdirSync(dirname(location.path), { recursive: true, mode: 0o700 });
  writeFileSync(location.path, text, { mode: 0o600, flag: bool(flags, "force") ? "w" : "wx" });
  chmodSync(location.path, 0o600); // an overwritten file keeps its old mode otherwise
  out(`wrote ${location.path}`);
  if (bool(flags, "no-validate")) return EXIT.OK;
  return runValidate(location.path, false);
}

export const initCommand: Command = {
  name: "init",
  summary:
    "Writes a configuration file for one provider and a default tenant key, then runs `kms validate`.\n" +
    "JSON, or YAML for .yaml/.yml; mode 0600. Asks on a terminal; --yes takes defaults. No secret is ever\n" +
    "written: credentials come from the SDK's default chain or the environment.",
  usage:
    "init [--config F] [--provider local|aws-kms|vault|gcp-kms|azure-key-vault] [--key KEY_ID] [--region R]\n" +
    "          [--endpoint URL] [--ca-cert FILE] [--vault-address URL] [--vault-url URL] [--credentials default|environment]\n" +
    "          [--local-path P] [--cache-max-age-ms N] [--cache-capacity N] [--rotation-days N] [--yes] [--force]\n" +
    "          [--no-validate]",
  flags: {
    config: { type: "string", value: "F", help: "file to write (default: $KMS_CONFIG_FILE, else ./kms.config.json)" },
    provider: { type: "string", value: "ID", help: "local (default), aws-kms, vault, gcp-kms or azure-key-vault" },
    key: { type: "string", value: "KEY_ID", help: "the default tenant key (default: default, for local and vault)" },
    region: { type: "string", value: "R", help: "aws-kms: the key's region (default: $AWS_REGION)" },
    endpoint: { type: "string", value: "URL", help: "aws-kms, gcp-kms: another endpoint (VPC endpoint, emulator)" },
    "ca-cert": { type: "string", value: "FILE", help: "gcp-kms: an emulator's certificate (PEM), trusted for it only (--endpoint https://localhost:PORT)" },
    "vault-address": { type: "string", value: "URL", help: "vault: Vault's address (default: $VAULT_ADDR)" },
    "vault-url": { type: "string", value: "URL", help: "azure-key-vault: the vault's https URL (https://NAME.vault.azure.net)" },
    credentials: { type: "string", value: "C", help: "default (SDK chain) or environment (variables only; checked now)" },
    "local-path": { type: "string", value: "P", help: `local: key store file (default: ${LOCAL_DEFAULT_PATH})` },
    "cache-max-age-ms": {
      type: "string",
      value: "N",
      help: `data key cache max age in ms, 1 to ${CACHE_DEFAULTS.hardMaxAgeMs} (default: core's, ${CACHE_DEFAULTS.encrypt.maxAgeMs})`,
    },
    "cache-capacity": { type: "string", value: "N", help: `data key cache entries, 1 to ${MAX_CACHE_CAPACITY} (default: core's, ${CACHE_DEFAULTS.encrypt.capacity})` },
    "rotation-days": { type: "string", value: "N", help: `cryptoperiod in days, 1 to 3650 (default: ${DEFAULT_CRYPTOPERIOD_DAYS})` },
    yes: { type: "boolean", help: "ask nothing: defaults for what no flag gives" },
    force: { type: "boolean", help: "overwrite an existing file" },
    "no-validate": { type: "boolean", help: "do not run `kms validate` afterwards" },
  },
  run: init,
};
