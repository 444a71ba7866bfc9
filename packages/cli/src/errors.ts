/**
 * How the CLI fails: exit codes, and the one-line forms of errors. A KmsError is shown by its code,
 * core's fixed public text and its docs link, never its own message (which may come from a provider
 * SDK); configuration issues by code, path, message and link, as core wrote them.
 */
import { type ConfigIssue, docsUrlFor, isKmsError, type KmsError, type KmsErrorCode, publicMessageOf } from "@kms/core";
import { err } from "./output";

export const EXIT = {
  OK: 0,
  /** A check failed, or an operation failed at the KMS or on a bad envelope. */
  FAILED: 1,
  /** Bad usage or configuration: nothing was attempted. */
  USAGE: 2,
  /** The KMS could not be reached (`kms validate`). */
  UNREACHABLE: 3,
} as const;

/** A failure the CLI detected itself: one `error ...` line on stderr and an exit code. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = EXIT.USAGE,
    /** Core's code, when one fits (`error CODE: message (docs)`). */
    readonly code?: KmsErrorCode,
  ) {
    super(message);
    this.name = "CliError";
  }
}

/** Bad command-line usage: the message, then the command's usage, exit 2. */
export class UsageError extends CliError {
  constructor(message: string) {
    super(message, EXIT.USAGE);
    this.name = "UsageError";
  }
}

/** A configuration core (or the CLI) refused: every issue, one line each, exit 2. */
export class ConfigProblem extends Error {
  readonly exitCode = EXIT.USAGE;
  constructor(readonly issues: readonly ConfigIssue[]) {
    super(`${issues.length} configuration problem(s)`);
    this.name = "ConfigProblem";
  }
}

export function issueLine(issue: ConfigIssue): string {
  return `${issue.code} ${issue.path || "(root)"}: ${issue.message} (${issue.docsUrl})`;
}

export function kmsErrorLine(error: KmsError): string {
  return `error ${error.code}: ${publicMessageOf(error)} (${error.docsUrl})`;
}

/** Prints any failure as the CLI's lines on stderr and returns its exit code. */
export function reportError(error: unknown): number {
  if (error instanceof ConfigProblem) {
    for (const issue of error.issues) err(issueLine(issue));
    return error.exitCode;
  }
  if (error instanceof CliError) {
    err(error.code === undefined ? `error: ${error.message}` : `error ${error.code}: ${error.message} (${docsUrlFor(error.code)})`);
    return error.exitCode;
  }
  if (isKmsError(error)) {
    err(kmsErrorLine(error));
    // A configuration refused late (e.g. by the scheduler's own checks) is still a configuration error.
    return error.code.startsWith("KMS_CONFIG") || error.code === "KMS_PROVIDER_UNKNOWN" || error.code === "KMS_PROVIDER_NOT_INSTALLED" ? EXIT.USAGE : EXIT.FAILED;
  }
  err(unexpectedFailureLine(error));
  return EXIT.FAILED;
}

/**
 * The line for a failure nothing else explains (also bin.ts's, should `main` itself fail): a KmsError
 * by its name, code and core's public text; anything else by its errno code (`ENOENT`…), else its
 * name, never its message, which could quote anything (a secret, a value from the environment).
 */
export function unexpectedFailureLine(error: unknown): string {
  if (isKmsError(error)) return `error: unexpected failure (${error.name} ${error.code}: ${publicMessageOf(error)})`;
  const code = (error as NodeJS.ErrnoException | null | undefined)?.code;
  return `error: unexpected failure (${typeof code === "string" ? code : error instanceof Error ? error.name : typeof error})`;
}
