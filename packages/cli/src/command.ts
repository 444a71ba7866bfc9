/**
 * The shape of a command, and parsing its flags with node:util `parseArgs` (strict: an unknown flag
 * or a missing value is a UsageError, exit 2). Help text is generated from the same table.
 */
import { parseArgs } from "node:util";
import { UsageError } from "./errors";

export interface FlagSpec {
  readonly type: "string" | "boolean";
  readonly multiple?: boolean;
  /** The value's placeholder in help (`F`, `N`…); string flags only. */
  readonly value?: string;
  readonly help: string;
}

export type Flags = Record<string, string | boolean | string[] | undefined>;

export interface Command {
  /** `init`, or `evidence export`. */
  readonly name: string;
  readonly summary: string;
  /** The synopsis after `kms `. */
  readonly usage: string;
  readonly flags: Readonly<Record<string, FlagSpec>>;
  run(flags: Flags): Promise<number>;
}

const HELP: FlagSpec = { type: "boolean", help: "show this help" };

/** `--config F`, the flag of every command that reads the configuration file (`init`, which writes it, has its own help). */
export const CONFIG_FLAG: FlagSpec = { type: "string", value: "F", help: "configuration file (default: $KMS_CONFIG_FILE, else ./kms.config.json)" };

export function parseFlags(command: Command, args: readonly string[]): Flags | "help" {
  const options = Object.fromEntries(
    Object.entries({ ...command.flags, help: HELP }).map(([name, spec]) => [name, { type: spec.type, ...(spec.multiple ? { multiple: true } : {}) }]),
  );
  let parsed;
  try {
    parsed = parseArgs({ args: [...args], options, strict: true, allowPositionals: false });
  } catch (error) {
    throw new UsageError(usageProblem(error));
  }
  if (parsed.values.help === true) return "help";
  return parsed.values as Flags;
}

/** parseArgs' problem, naming the flag but never a value (a value could be anything the user typed). */
function usageProblem(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  const message = error instanceof Error ? error.message : "";
  const flag = /'(-{1,2}[A-Za-z0-9-]{1,64})/.exec(message)?.[1];
  switch (code) {
    case "ERR_PARSE_ARGS_UNKNOWN_OPTION":
      return flag === undefined ? "unknown option" : `unknown option ${flag}`;
    case "ERR_PARSE_ARGS_INVALID_OPTION_VALUE":
      return flag === undefined ? "an option is missing its value" : `option ${flag} needs a value`;
    case "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL":
      return "unexpected argument (every value goes after a --flag)";
    default:
      return "invalid arguments";
  }
}

export function helpText(command: Command): string {
  const rows = Object.entries(command.flags).map(([name, spec]) => {
    const left = `  --${name}${spec.type === "string" ? ` ${spec.value ?? "VALUE"}` : ""}`;
    return `${left.padEnd(28)} ${spec.help}${spec.multiple ? " (repeatable)" : ""}`;
  });
  return [`Usage: kms ${command.usage}`, "", command.summary, "", "Options:", ...rows, `${"  --help".padEnd(28)} ${HELP.help}`, ""].join("\n");
}

// --- typed access to parsed flags -------------------------------------------------------------

export function str(flags: Flags, name: string): string | undefined {
  const value = flags[name];
  return typeof value === "string" ? value : undefined;
}

export function required(flags: Flags, name: string): string {
  const value = str(flags, name);
  if (value === undefined || value === "") throw new UsageError(`missing --${name}`);
  return value;
}

export function bool(flags: Flags, name: string): boolean {
  return flags[name] === true;
}

/** An integer flag within [min, max]; undefined when absent. */
export function int(flags: Flags, name: string, min: number, max: number): number | undefined {
  const value = str(flags, name);
  if (value === undefined) return undefined;
  const n = /^\d{1,15}$/.test(value) ? Number(value) : Number.NaN;
  if (!(n >= min && n <= max)) throw new UsageError(`--${name} must be an integer from ${min} to ${max}`);
  return n;
}

/** `--context k=v`, repeatable, into an encryption context; core checks keys and values further. */
export function contextOf(flags: Flags): Record<string, string> | undefined {
  const pairs = flags.context;
  if (!Array.isArray(pairs) || pairs.length === 0) return undefined;
  const context: Record<string, string> = {};
  pairs.forEach((pair, i) => {
    const at = pair.indexOf("=");
    // Named by position: a context value is the user's data.
    if (at < 1) throw new UsageError(`--context #${i + 1} must be key=value with a non-empty key`);
    const key = pair.slice(0, at);
    if (Object.hasOwn(context, key)) throw new UsageError(`--context #${i + 1} repeats a key given before`);
    context[key] = pair.slice(at + 1);
  });
  return context;
}
