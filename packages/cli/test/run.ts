/**
 * Runs the built CLI (`dist/bin.js`) as a child process: with pipes (`kms`), or on a pseudo-terminal
 * through util-linux `script` (`kmsOnTty`), where the test answers prompts as they appear.
 */
import { spawn } from "node:child_process";
import { join } from "node:path";

export const BIN = join(__dirname, "..", "dist", "bin.js");

export interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The children's environment: no colour switch inherited, no cloud credentials or config. */
export function baseEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME, AWS_EC2_METADATA_DISABLED: "true" };
  return { ...env, ...extra };
}

export async function kms(args: readonly string[], options: { cwd: string; env?: Record<string, string>; input?: string | Buffer }): Promise<Result> {
  const result = await kmsBytes(args, options);
  return { ...result, stdout: result.stdout.toString("utf8") };
}

/** Like `kms`, but stdout as bytes (decrypt's binary output). */
export function kmsBytes(args: readonly string[], options: { cwd: string; env?: Record<string, string>; input?: string | Buffer }): Promise<{ code: number | null; stdout: Buffer; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: options.cwd, env: baseEnv(options.env), stdio: ["pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const errs: Buffer[] = [];
    child.stdout.on("data", (d: Buffer) => out.push(d));
    child.stderr.on("data", (d: Buffer) => errs.push(d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout: Buffer.concat(out), stderr: Buffer.concat(errs).toString("utf8") }));
    child.stdin.end(options.input ?? "");
  });
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

export interface TtySession {
  /** Resolves once the terminal output contains `text` (after what was already waited for). */
  waitFor(text: string): Promise<void>;
  type(text: string): void;
  /** The exit code and everything the terminal showed. */
  done: Promise<{ code: number | null; output: string }>;
}

/** The CLI on a pseudo-terminal: `script -qfec "<cmd>" /dev/null`. */
export function kmsOnTty(args: readonly string[], options: { cwd: string; env?: Record<string, string> }): TtySession {
  const command = [process.execPath, BIN, ...args].map(shellQuote).join(" ");
  const child = spawn("script", ["-qfec", command, "/dev/null"], { cwd: options.cwd, env: baseEnv({ TERM: "dumb", ...options.env }), stdio: ["pipe", "pipe", "pipe"] });
  let output = "";
  let seen = 0;
  let waiter: { text: string; resolve: () => void } | undefined;
  const check = () => {
    if (waiter === undefined) return;
    const at = output.indexOf(waiter.text, seen);
    if (at >= 0) {
      seen = at + waiter.text.length;
      const { resolve } = waiter;
      waiter = undefined;
      resolve();
    }
  };
  child.stdout.on("data", (d: Buffer) => {
    output += d.toString("utf8");
    check();
  });
  const done = new Promise<{ code: number | null; output: string }>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code) => {
      child.stdin.destroy();
      resolve({ code, output });
    });
  });
  return {
    waitFor: (text) =>
      new Promise<void>((resolve) => {
        waiter = { text, resolve };
        check();
      }),
    type: (text) => child.stdin.write(text),
    done,
  };
}
