/**
 * Questions on a terminal (node:readline): the default in brackets, the answer checked at once, and
 * asked again after a bad one. Lines are read through one async iterator, so answers typed ahead are
 * kept, not lost.
 */
import { createInterface } from "node:readline";
import { CliError } from "./errors";
import { paint } from "./output";

export interface Asker {
  /** The answer (the default on an empty line), once `check` finds no problem in it. */
  ask(question: string, fallback: string | undefined, check: (answer: string) => string | undefined): Promise<string>;
  close(): void;
}

export function terminalAsker(): Asker {
  const rl = createInterface({ input: process.stdin, output: process.stdout, terminal: true });
  rl.on("SIGINT", () => rl.close());
  const lines = rl[Symbol.asyncIterator]();
  const stdout = process.stdout;
  return {
    async ask(question, fallback, check) {
      for (;;) {
        rl.setPrompt(`${paint(stdout, "bold", question)}${fallback === undefined || fallback === "" ? "" : ` [${fallback}]`}: `);
        rl.prompt();
        const next = await lines.next();
        if (next.done) throw new CliError("cancelled: no file was written");
        const answer = next.value.trim() === "" ? (fallback ?? "") : next.value.trim();
        const problem = check(answer);
        if (problem === undefined) return answer;
        stdout.write(`${paint(stdout, "red", "  ✗")} ${problem}\n`);
      }
    },
    close: () => rl.close(),
  };
}
