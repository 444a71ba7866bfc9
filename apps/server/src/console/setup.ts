/**
 * The setup wizard's questions and configuration check: @kms/core's setup questions (`kms init`
 * asks the same ones), each answer checked by core with the server's provider registry, turned into
 * the file `kms init` writes for the same answers (`buildSetupConfig`, `setupConfigText`), and the
 * whole file checked by core's `validateConfig` with the server's provider registry, exactly as
 * `kms init` and the server's start-up do. No provider is called.
 *
 * Departures from `kms init`, because the file is written for another machine: `--credentials
 * environment` is not checked against this server's environment, nor is Vault's `VAULT_TOKEN`
 * (`kms validate` checks them where the file is used); `--ca-cert` is the PEM's text (uploaded by the
 * page), not a path; `--config` is only the download's file name (JSON, or YAML for .yaml/.yml).
 * Every bad answer is reported (by question), not only the first.
 */
import {
  buildSetupConfig,
  isKmsError,
  SETUP_PROVIDERS,
  SETUP_QUESTIONS,
  setupConfigText,
  setupQuestionApplies,
  validateConfig,
  VAULT_TOKEN_ENV,
  type ConfigIssue,
  type KmsConfigError,
  type ProviderDefinition,
  type SetupContext,
} from "@kms/core";

export const DEFAULT_FILE_NAME = "kms.config.json";

type Answers = Record<string, string>;

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

export interface SetupWizard {
  questions(): PublicQuestion[];
  check(answers: Answers, fileName: string | undefined): Promise<SetupCheck>;
}

export function createSetupWizard(registry: readonly ProviderDefinition<unknown>[], env: Readonly<Record<string, string | undefined>> = process.env): SetupWizard {
  // Messages name other questions by what they ask for ("with a certificate"), not by kms init's flags.
  const context: SetupContext = { registry };

  return {
    questions() {
      return SETUP_QUESTIONS.map((q) => {
        const defaults: Record<string, string> = {};
        for (const provider of SETUP_PROVIDERS) {
          const value = q.fallback({ provider }, env);
          if (value !== undefined && value !== "") defaults[provider] = value;
        }
        return {
          flag: q.id,
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
      for (const q of SETUP_QUESTIONS) {
        const raw = given[q.id];
        if (!setupQuestionApplies(q, answers.provider)) continue;
        const answer = raw === undefined || raw.trim() === "" ? (q.fallback(answers, env) ?? "") : q.file ? raw : raw.trim();
        if (answer === "" && !q.optional) {
          issues.push({ flag: q.id, message: "an answer is needed" });
          if (q.id === "provider") break;
          continue;
        }
        const problem = q.check(answer, answers, context);
        if (problem !== undefined) {
          issues.push({ flag: q.id, message: problem });
          if (q.id === "provider") break;
          continue;
        }
        answers[q.id] = answer;
      }
      if (!/^[A-Za-z0-9._-]{1,128}$/.test(fileName) || fileName.startsWith(".")) issues.push({ flag: "file", message: "must be a file name of letters, digits, . _ - (e.g. kms.config.json or kms.config.yaml)" });
      if (issues.length > 0) return { ok: false, issues };
      const config = buildSetupConfig(answers);
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
      return { ok: true, issues: [], config, fileName, text: setupConfigText(config, fileName) };
    },
  };
}
