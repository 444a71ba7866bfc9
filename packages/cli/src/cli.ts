/**
 * `kms`: finds the command, parses its flags, runs it, and turns any failure into the CLI's lines
 * and exit code (errors.ts). Returns the exit code; never calls process.exit itself.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { helpText, parseFlags, type Command } from "./command";
import { decryptCommand, encryptCommand } from "./commands/crypt";
import { doctorCommand } from "./commands/doctor";
import { evidenceExportCommand, evidenceVerifyCommand } from "./commands/evidence";
import { initCommand } from "./commands/init";
import { rewrapCommand } from "./commands/rewrap";
import { rotateCommand } from "./commands/rotate";
import { validateCommand } from "./commands/validate";
import { EXIT, reportError, UsageError } from "./errors";
import { err, out } from "./output";

export const COMMANDS: readonly Command[] = [
  initCommand,
  validateCommand,
  doctorCommand,
  encryptCommand,
  decryptCommand,
  rotateCommand,
  rewrapCommand,
  evidenceExportCommand,
  evidenceVerifyCommand,
];

export function version(): string {
  return (JSON.parse(readFileSync(join(__dirname, "..", "package.json"), "utf8")) as { version: string }).version;
}

export function mainHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    "Usage: kms <command> [flags]",
    "",
    "Commands:",
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary.split("\n")[0]}`),
    "",
    "Run `kms <command> --help` for a command's flags; `kms --version` for the version.",
    "Exit codes: 0 ok, 1 failed, 2 usage or configuration error, 3 KMS unreachable (validate).",
    "",
  ].join("\n");
}

/** The command named by the first words of `argv`, and the rest. */
function findCommand(argv: readonly string[]): { command: Command; rest: readonly string[] } | undefined {
  for (const words of [2, 1]) {
    const name = argv.slice(0, words).join(" ");
    const command = COMMANDS.find((c) => c.name === name);
    if (command) return { command, rest: argv.slice(words) };
  }
  return undefined;
}

export async function main(argv: readonly string[]): Promise<number> {
  const first = argv[0];
  if (first === undefined || first === "--help" || first === "-h" || first === "help") {
    (first === undefined ? err : out)(mainHelp());
    return first === undefined ? EXIT.USAGE : EXIT.OK;
  }
  if (first === "--version" || first === "-v") {
    out(version());
    return EXIT.OK;
  }
  const found = findCommand(argv);
  if (found === undefined) {
    // Named only when it looks like a command word: argv may hold anything.
    const shown = /^[a-z-]{1,32}$/.test(first) ? ` "${first}${first === "evidence" && argv[1] && /^[a-z-]{1,32}$/.test(argv[1]) ? ` ${argv[1]}` : ""}"` : "";
    err(`kms: unknown command${shown}`);
    err(mainHelp());
    return EXIT.USAGE;
  }
  const { command, rest } = found;
  try {
    const flags = parseFlags(command, rest);
    if (flags === "help") {
      out(helpText(command));
      return EXIT.OK;
    }
    return await command.run(flags);
  } catch (error) {
    if (error instanceof UsageError) {
      err(`kms ${command.name}: ${error.message}`);
      err(`Usage: kms ${command.usage}`);
      err(`Run \`kms ${command.name} --help\` for details.`);
      return error.exitCode;
    }
    return reportError(error);
  }
}
