/**
 * `kms init`: writes a configuration file (JSON, or YAML by extension; mode 0600) for one provider
 * and a default tenant key, checks it with core, then runs `kms validate`. Every question has a
 * flag; on a terminal the unanswered ones are asked, with `--yes` they take their defaults or fail
 * naming the flag. The file never holds a secret: credentials come from the provider SDK's default
 * chain or the environment (AWS_ACCESS_KEY_ID…, GOOGLE_APPLICATION_CREDENTIALS, Azure's
 * DefaultAzureCredential; for Vault the file names the variable: `auth: { tokenFromEnv: "VAULT_TOKEN" }`,
 * which @kms/vault reads).
 * A cache setting equal to core's default is left out of the file, which then follows core's default.
 * The questions, their checks, the configuration the answers make and its text are @kms/core's
 * (`SETUP_QUESTIONS`, `buildSetupConfig`, `setupConfigText`), shared with the server's admin console;
 * this command asks them, reads `--ca-cert`'s file, and checks `--credentials` in its environment.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import {
  buildSetupConfig,
  LOCAL_DEFAULT_PATH,
  SETUP_PROVIDERS,
  SETUP_QUESTIONS,
  setupConfigText,
  setupQuestionApplies,
  VAULT_TOKEN_ENV,
  type SetupContext,
  type SetupProviderId,
  type SetupQuestion,
} from "@kms/core";
import { bool, str, type Command, type Flags } from "../command";
import { closeProviders, configLocation, REGISTRY, validate } from "../config";
import { CliError, EXIT, UsageError } from "../errors";
import { out } from "../output";
import { type Asker, terminalAsker } from "../prompt";
import { runValidate } from "./validate";

/** What core's checks of the answers use: this CLI's providers, and messages naming a question by its flag. */
const CONTEXT: SetupContext = { registry: REGISTRY, mention: (id) => `--${id}` };

/**
 * Where each provider's credentials come from with `--credentials environment`: the variables of one
 * alternative must all be set. Azure: what @azure/identity 4.13's DefaultAzureCredential reads, a
 * service principal's secret or certificate (EnvironmentCredential), a federated token file (workload
 * identity), or the managed identity endpoint App Service, Functions, Container Apps, Arc and Service
 * Fabric set. A VM's managed identity (IMDS) sets no variable: `default` there.
 */
const CREDENTIAL_ENV: Record<Exclude<SetupProviderId, "local">, readonly (readonly string[])[]> = {
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
function credentialEnvProblem(provider: Exclude<SetupProviderId, "local">): string | undefined {
  const alternatives = CREDENTIAL_ENV[provider];
  if (alternatives.some((names) => names.every((name) => process.env[name]))) return undefined;
  if (alternatives.length > 1) return `not set in the environment: ${alternatives.map((names) => names.join(" + ")).join(", or ")}`;
  const missing = alternatives[0]!.filter((name) => !process.env[name]);
  return `${missing.join(" and ")} ${missing.length === 1 ? "is" : "are"} not set in the environment`;
}

type Answers = Record<string, string>;

/**
 * An answer as `kms init` takes it, checked: a file question's answer is a path, and the file's
 * content is the answer core checks and builds from; `--credentials environment` (and Vault's token,
 * always) are also checked in this process's environment. The answer to keep, or the problem.
 */
function checked(q: SetupQuestion, answer: string, answers: Answers): { answer: string } | { problem: string } {
  let value = answer;
  if (q.file === true && answer !== "") {
    try {
      value = readFileSync(answer, "utf8");
    } catch (error) {
      return { problem: `cannot read ${answer} (${(error as NodeJS.ErrnoException).code ?? "unreadable"})` };
    }
  }
  let problem = q.check(value, answers, CONTEXT);
  if (problem === undefined && q.id === "credentials" && (value === "environment" || answers.provider === "vault")) {
    problem = credentialEnvProblem(answers.provider as Exclude<SetupProviderId, "local">);
  }
  return problem === undefined ? { answer: value } : { problem };
}

/** An integer question's range and its default, for the flags' help. */
const question = (id: string) => SETUP_QUESTIONS.find((q) => q.id === id)!;
const range = (id: string) => `${question(id).integer!.min} to ${question(id).integer!.max}`;
const byDefault = (id: string) => question(id).fallback({}, {});

/** The prompt: a terminal shows no list, so the choices are named, unless the question names them already. */
const promptOf = (q: SetupQuestion) =>
  q.choices === undefined || q.choices.every((c) => q.text.includes(c)) ? q.text : `${q.text} (${q.choices.join(", ")})`;

/** Answers every question for the provider: from flags, the terminal, or (with --yes) defaults. */
async function collectAnswers(flags: Flags, asker: Asker | undefined): Promise<Answers> {
  const answers: Answers = {};
  for (const q of SETUP_QUESTIONS) {
    const given = str(flags, q.id);
    if (!setupQuestionApplies(q, answers.provider)) {
      if (given !== undefined) throw new UsageError(`--${q.id} does not apply to --provider ${answers.provider}`);
      continue;
    }
    const fallback = q.fallback(answers, process.env);
    if (given !== undefined || asker === undefined) {
      const answer = given ?? fallback;
      if (answer === undefined) throw new UsageError(`missing --${q.id} (no default with --provider ${answers.provider})`);
      const result = checked(q, answer, answers);
      if ("problem" in result) throw new UsageError(`--${q.id}: ${result.problem}`);
      answers[q.id] = result.answer;
    } else {
      let kept = "";
      await asker.ask(promptOf(q), fallback, (a) => {
        if (a === "" && !q.optional) return "an answer is needed";
        const result = checked(q, a, answers);
        if ("problem" in result) return result.problem;
        kept = result.answer;
        return undefined;
      });
      answers[q.id] = kept;
    }
  }
  return answers;
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
  const config = buildSetupConfig(answers);
  // Core's checks before anything is written (they read no file and call no KMS, so a relative local
  // key store path needs no resolving here): a refused configuration leaves no file behind.
  await closeProviders(validate(config));
  const text = setupConfigText(config, location.path);
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
    `init [--config F] [--provider ${SETUP_PROVIDERS.join("|")}] [--key KEY_ID] [--region R]\n` +
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
      help: `data key cache max age in ms, ${range("cache-max-age-ms")} (default: core's, ${byDefault("cache-max-age-ms")})`,
    },
    "cache-capacity": { type: "string", value: "N", help: `data key cache entries, ${range("cache-capacity")} (default: core's, ${byDefault("cache-capacity")})` },
    "rotation-days": { type: "string", value: "N", help: `cryptoperiod in days, ${range("rotation-days")} (default: ${byDefault("rotation-days")})` },
    yes: { type: "boolean", help: "ask nothing: defaults for what no flag gives" },
    force: { type: "boolean", help: "overwrite an existing file" },
    "no-validate": { type: "boolean", help: "do not run `kms validate` afterwards" },
  },
  run: init,
};
