/**
 * The black-box tests' server: the BUILT server (`node apps/server/dist/main.js`, produced by the
 * build task that runs before tests) as a child process on an ephemeral port, in a temporary
 * directory (its working directory and HOME), with only the environment a test gives it.
 *
 * One `ServerHarness` per test file:
 *
 * ```ts
 * const harness = new ServerHarness("kms-example-test-");
 * beforeAll(() => (tmp = harness.setUp()));
 * afterAll(() => harness.tearDown());
 * const server = await harness.start({ KMS_LOCAL_KEY_STORE: join(tmp, "keys.json") });
 * ```
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

/** The built server every black-box test runs. */
export const MAIN = resolve(__dirname, "../../dist/main.js");

/** A server process and what it wrote so far. */
export interface ServerProcess {
  readonly child: ChildProcess;
  /** `http://127.0.0.1:<port>`, from its `listening on` log line. */
  readonly url: string;
  stdout(): string;
  stderr(): string;
  /** stdout and stderr, interleaved as they arrived. */
  output(): string;
}

export interface StartOptions {
  /**
   * Resolve only once this also holds for stdout, checked after every chunk (e.g. the development
   * tokens, printed after `listening on`).
   */
  ready?: (stdout: string) => boolean;
}

export interface ServerHarnessOptions {
  /** How long `start` waits before failing with the server's output; default 20 s. */
  startTimeoutMs?: number;
  /** How long `runToExit` lets a server run before killing it; default 10 s. */
  runTimeoutMs?: number;
}

/** What a failure shows of a server's output: its end (a server with 10,000 demo tenants prints a token for each). */
function tail(text: string): string {
  return text.length <= 4_000 ? text : `…${text.slice(-4_000)}`;
}

/** The JSON lines of a server's stdout (a line still being written is skipped). */
export function logLines(stdout: string): Record<string, unknown>[] {
  const lines: Record<string, unknown>[] = [];
  for (const line of stdout.split("\n")) {
    if (!line.startsWith("{")) continue;
    try {
      lines.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // a partial line: the rest is still to come
    }
  }
  return lines;
}

/** The URL of the server's `listening on http://host:port` log line, once written. */
function listeningUrl(stdout: string): string | undefined {
  for (const line of logLines(stdout)) {
    const m = /^listening on (http:\/\/\S+)$/.exec(typeof line.msg === "string" ? line.msg : "");
    if (m) return m[1];
  }
  return undefined;
}

/** Resolves with the child's exit code (null when a signal ended it), at once when it has exited. */
export function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((r) => child.once("exit", (code) => r(code)));
}

/** Signals the server (SIGTERM: a graceful shutdown) and resolves with its exit code. */
export function stop(server: ServerProcess, signal: NodeJS.Signals = "SIGTERM"): Promise<number | null> {
  server.child.kill(signal);
  return exited(server.child);
}

/**
 * Resolves with `found(stdout)` as soon as it is defined: checked now and after every chunk the
 * server writes. The deadline only turns output that never comes into a failure that shows it.
 */
export function waitForStdout<T>(server: ServerProcess, found: (stdout: string) => T | undefined, what: string, timeoutMs = 5_000): Promise<T> {
  const stdout = server.child.stdout!;
  return new Promise<T>((resolvePromise, reject) => {
    const fail = (why: string) => finish(new Error(`${why} before ${what}:\n${server.stdout()}\n${server.stderr()}`));
    const check = () => {
      const value = found(server.stdout());
      if (value !== undefined) finish(undefined, value);
    };
    const onEnd = () => {
      check();
      fail("the server's output ended");
    };
    const timer = setTimeout(() => fail(`${timeoutMs} ms passed`), timeoutMs);
    let done = false;
    function finish(error: Error | undefined, value?: T): void {
      if (done) return;
      done = true;
      clearTimeout(timer);
      stdout.off("data", check);
      stdout.off("end", onEnd);
      if (error) reject(error);
      else resolvePromise(value as T);
    }
    // Registered after the harness's own listener (at spawn), so the chunk is already in `server.stdout()`.
    stdout.on("data", check);
    stdout.on("end", onEnd);
    check();
  });
}

/** Starts servers in one temporary directory, and kills whatever is left of them at the end. */
export class ServerHarness {
  readonly #prefix: string;
  readonly #startTimeoutMs: number;
  readonly #runTimeoutMs: number;
  readonly #children = new Set<ChildProcess>();
  #dir: string | undefined;

  /** `prefix` names the temporary directory (`kms-<suite>-test-`). */
  constructor(prefix: string, options: ServerHarnessOptions = {}) {
    this.#prefix = prefix;
    this.#startTimeoutMs = options.startTimeoutMs ?? 20_000;
    this.#runTimeoutMs = options.runTimeoutMs ?? 10_000;
  }

  /** The temporary directory: the servers' working directory and HOME, for the test's files too. */
  get dir(): string {
    if (this.#dir === undefined) throw new Error("ServerHarness: call setUp() first (in beforeAll)");
    return this.#dir;
  }

  /** Checks that the server is built and makes the temporary directory; returns it. */
  setUp(): string {
    if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: build first (pnpm turbo run build --filter=@kms/server...)`);
    this.#dir = mkdtempSync(join(tmpdir(), this.#prefix));
    return this.#dir;
  }

  /** Kills (SIGKILL) every server still running, waits for them, and removes the temporary directory. */
  async tearDown(): Promise<void> {
    const running = [...this.#children];
    for (const child of running) child.kill("SIGKILL");
    await Promise.all(running.map(exited));
    if (this.#dir !== undefined) rmSync(this.#dir, { recursive: true, force: true });
  }

  /** Starts a server and resolves once it logged `listening on http://…` (and `options.ready` holds). */
  start(env: Record<string, string>, options: StartOptions = {}): Promise<ServerProcess> {
    const server = this.#spawn(env);
    const { child } = server;
    const stdout = child.stdout!;
    return new Promise((resolvePromise, reject) => {
      const timer = setTimeout(() => finish(new Error(`server did not start:\n${tail(server.output())}`)), this.#startTimeoutMs);
      let url: string | undefined;
      const check = () => {
        url ??= listeningUrl(server.stdout());
        if (url !== undefined && (options.ready?.(server.stdout()) ?? true)) finish(undefined, url);
      };
      const onExit = (code: number | null) => finish(new Error(`server exited (${code}):\n${tail(server.output())}`));
      function finish(error: Error | undefined, listening?: string): void {
        clearTimeout(timer);
        stdout.off("data", check);
        child.off("exit", onExit);
        if (error) reject(error);
        else resolvePromise({ ...server, url: listening! });
      }
      // Registered after #spawn's own listener, so the chunk is already in `server.stdout()`.
      stdout.on("data", check);
      child.on("exit", onExit);
    });
  }

  /** Runs a server expected to stop by itself (killed after the run timeout); its exit code and output. */
  runToExit(env: Record<string, string>): Promise<{ code: number | null; output: string }> {
    const { child, output } = this.#spawn(env);
    return new Promise((resolvePromise) => {
      const timer = setTimeout(() => child.kill("SIGKILL"), this.#runTimeoutMs);
      child.once("exit", (code) => {
        clearTimeout(timer);
        resolvePromise({ code, output: output() });
      });
    });
  }

  #spawn(env: Record<string, string>): Omit<ServerProcess, "url"> {
    const dir = this.dir;
    const child = spawn(process.execPath, [MAIN], {
      cwd: dir,
      // Only what the server needs: nothing inherited from the test runner (KMS_*, NODE_ENV, INIT_CWD).
      env: { PATH: process.env.PATH ?? "", HOME: dir, HOST: "127.0.0.1", PORT: "0", NODE_ENV: "test", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.#children.add(child);
    child.on("exit", () => this.#children.delete(child));
    const out: string[] = [];
    const err: string[] = [];
    const all: string[] = [];
    child.stdout!.setEncoding("utf8").on("data", (d: string) => {
      out.push(d);
      all.push(d);
    });
    child.stderr!.setEncoding("utf8").on("data", (d: string) => {
      err.push(d);
      all.push(d);
    });
    return { child, stdout: () => out.join(""), stderr: () => err.join(""), output: () => all.join("") };
  }
}
