/**
 * The docs cannot rot: every marked shell block of docs/**\/*.md and the root README.md runs here, in
 * file order, and every unmarked shell block fails the convention test. The convention is in
 * docs/README.md ("Docs that run"); blocks.ts parses it.
 *
 * Per Markdown file: a fresh temporary directory (the working directory, and $HOME), one bash script
 * that sources the blocks one after the other with `set -euo pipefail` (so files, `cd`, variables and
 * functions of one block carry to the next, as in a terminal), `kms`, `pnpm` and `git clone` stand-ins
 * on PATH, and then one jest test per block: its exit status, and its output when a `text expected`
 * block follows it.
 */
import { spawn, spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "@jest/globals";
import { AwsKmsEmulator, VaultEmulator } from "@kms/testkit/emulators";
import { type RunBlock, markedFile, normaliseOutput, outputMatches } from "./blocks";

const REPO = resolve(__dirname, "../..");
const CLI = join(REPO, "packages/cli/dist/bin.js");
const SERVER = join(REPO, "apps/server/dist/main.js");
/** The port the docs use for the reference server; each file's run gets a free one instead. */
const DOCS_PORT = 8080;
/** A whole file's blocks must finish within this (the suite's budget is about a minute). */
const FILE_TIMEOUT_MS = 45_000;
/** How long a background block may take to listen. */
const LISTEN_TIMEOUT_S = 20;

/** docs/**\/*.md (not node_modules) and the root README.md, relative to the repository. */
function markdownFiles(): string[] {
  const found: string[] = ["README.md"];
  const walk = (dir: string): void => {
    for (const entry of readdirSync(join(REPO, dir), { withFileTypes: true })) {
      if (entry.isDirectory() && entry.name !== "node_modules") walk(join(dir, entry.name));
      else if (entry.isFile() && entry.name.endsWith(".md")) found.push(join(dir, entry.name));
    }
  };
  walk("docs");
  return found.sort();
}

const FILES = markdownFiles().map((file) => ({ file, marked: markedFile(readFileSync(join(REPO, file), "utf8")) }));

// ---------------------------------------------------------------------------------------------
// The stand-ins on PATH

let binDir: string;

function writeExecutable(path: string, text: string): void {
  writeFileSync(path, text);
  chmodSync(path, 0o755);
}

/** `kms`, `pnpm` and `git` for the blocks (docs/README.md says what each does). */
function writeShims(dir: string): void {
  const quoted = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  writeExecutable(
    join(dir, "kms"),
    `#!/bin/sh
# docs test: the kms command of this checkout
[ -f ${quoted(CLI)} ] || { echo "docs test: ${CLI} is missing: build it (pnpm turbo run build --filter=@kms/cli...)" >&2; exit 127; }
exec node ${quoted(CLI)} "$@"
`,
  );
  writeExecutable(
    join(dir, "pnpm"),
    `#!/bin/sh
# docs test: pnpm as a docs block uses it, on this checkout (installed and built before the docs test)
while [ $# -gt 0 ]; do
  case "$1" in
    -C|--dir) shift 2 ;;
    --dir=*|--silent|-s) shift ;;
    *) break ;;
  esac
done
case "\${1:-}" in
  install) [ -d ${quoted(join(REPO, "node_modules"))} ] || { echo "docs test: run pnpm install in ${REPO} first" >&2; exit 1; }
           echo "docs test: dependencies already installed" ;;
  build) echo "docs test: already built by turbo before the docs test" ;;
  start) [ -f ${quoted(SERVER)} ] || { echo "docs test: ${SERVER} is missing: build it" >&2; exit 127; }
         exec node ${quoted(SERVER)} ;;
  *) echo "docs test: 'pnpm $*' is not supported in a docs block (docs/README.md, Docs that run)" >&2; exit 127 ;;
esac
`,
  );
  const git = spawnSync("sh", ["-c", "command -v git"], { encoding: "utf8" }).stdout.trim();
  writeExecutable(
    join(dir, "git"),
    `#!/bin/sh
# docs test: "git clone <this repository> [dir]" makes dir a view of this checkout (a symbolic link per
# top-level entry, so files written in the clone's root stay in the temporary directory)
if [ "\${1:-}" = clone ] && [ $# -ge 2 ]; then
  case "$2" in https://github.com/kms-toolkit/kms*) ;; *) echo "docs test: only the kms repository can be cloned" >&2; exit 128 ;; esac
  dir=\${3:-kms}
  mkdir "$dir" || exit 128
  for entry in ${quoted(REPO)}/* ${quoted(REPO)}/.[!.]*; do
    case "\${entry##*/}" in .git|.kms|'.[!.]*') continue ;; esac
    ln -s "$entry" "$dir/\${entry##*/}"
  done
  echo "Cloning into '$dir'... (docs test: a view of ${REPO})"
  exit 0
fi
${git === "" ? 'echo "docs test: git is not installed" >&2; exit 127' : `exec ${quoted(git)} "$@"`}
`,
  );
}

beforeAll(() => {
  binDir = mkdtempSync(join(tmpdir(), "kms-docs-bin-"));
  writeShims(binDir);
});

afterAll(() => {
  if (binDir !== undefined) rmSync(binDir, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------
// Running one file

interface BlockResult {
  /** Undefined when the block never ran (an earlier one failed, or the file timed out). */
  status: number | undefined;
  output: string;
}

interface FileRun {
  results: BlockResult[];
  /** Why the run as a whole went wrong (a timeout), if it did. */
  failure: string | undefined;
}

function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => (typeof address === "object" && address !== null ? resolvePort(address.port) : reject(new Error("no port"))));
    });
  });
}

/** The emulators a file asked for, started, and the environment that points the SDKs at them. */
async function startEmulators(names: readonly string[]): Promise<{ env: Record<string, string>; stop: () => Promise<void> }> {
  const env: Record<string, string> = {};
  const stops: (() => Promise<void>)[] = [];
  if (names.includes("aws-kms")) {
    // The region the guides use; the emulator checks that requests are signed for it.
    const aws = new AwsKmsEmulator({ region: "eu-west-1" });
    await aws.start();
    stops.push(() => aws.stop());
    aws.createKey({ alias: "alias/app", description: "docs test" });
    const { credentials } = aws.clientConfig();
    // The AWS SDK reads these itself: the blocks stay exactly what a user types.
    Object.assign(env, {
      AWS_ENDPOINT_URL_KMS: aws.url,
      AWS_ACCESS_KEY_ID: credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey,
      AWS_EC2_METADATA_DISABLED: "true",
    });
  }
  if (names.includes("vault")) {
    const vault = new VaultEmulator({ tokens: { "docs-test-root-token": { name: "root", paths: ["*"] } } });
    await vault.start();
    stops.push(() => vault.stop());
    vault.createKey("app");
    vault.createKey("tenant-a");
    Object.assign(env, { VAULT_ADDR: vault.url.replace(/\/$/, ""), VAULT_TOKEN: "docs-test-root-token" });
  }
  return { env, stop: async () => void (await Promise.all(stops.map((s) => s()))) };
}

/** The script that sources each block in turn (see the file comment). */
function script(runs: readonly RunBlock[], blockDir: string, ports: ReadonlyMap<number, number>): string {
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const lines = [
    "set -uo pipefail",
    `__docs_dir=${q(blockDir)}`,
    "__docs_block=",
    // A block that fails ends the script (set -e); its status is recorded on the way out.
    `trap '__docs_status=$?; if [ -n "$__docs_block" ] && [ ! -e "$__docs_dir/$__docs_block.rc" ]; then echo "$__docs_status" > "$__docs_dir/$__docs_block.rc"; fi' EXIT`,
    `__docs_wait() { local i; for ((i = 0; i < ${LISTEN_TIMEOUT_S * 20}; i++)); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; kill -0 "$2" 2>/dev/null || return 1; sleep 0.05; done; return 1; }`,
  ];
  runs.forEach((run, i) => {
    const file = `"$__docs_dir/${i}`;
    lines.push(`__docs_block=${i}`);
    if (run.background) {
      const port = ports.get(run.port!)!;
      lines.push(
        `( set -e; . ${file}.sh" ) < /dev/null > ${file}.out" 2>&1 &`,
        `if __docs_wait ${port} $!; then echo 0 > ${file}.rc"; else echo "docs test: not listening on 127.0.0.1:${run.port} (run on ${port}) after ${LISTEN_TIMEOUT_S} s" >> ${file}.out"; echo 1 > ${file}.rc"; exit 1; fi`,
      );
    } else if (run.exit !== 0) {
      lines.push(`( set -e; . ${file}.sh" ) < /dev/null > ${file}.out" 2>&1`, `echo $? > ${file}.rc"`, `[ "$(cat ${file}.rc")" = ${run.exit} ] || exit 1`);
    } else {
      lines.push("set -e", `. ${file}.sh" < /dev/null > ${file}.out" 2>&1`, "set +e", `echo 0 > ${file}.rc"`);
    }
  });
  lines.push("__docs_block=", "exit 0");
  return `${lines.join("\n")}\n`;
}

/** The environment a file's blocks start with: this one, less anything that could point the CLI or server elsewhere. */
function baseEnv(home: string, port: number, extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(KMS_|AWS_|VAULT_|GOOGLE_|AZURE_|NODE_ENV$|PORT$|HOST$|INIT_CWD$|npm_|JEST_|XDG_)/.test(k)) continue;
    env[k] = v;
  }
  return { ...env, ...extra, HOME: home, PATH: `${binDir}:${process.env.PATH ?? ""}`, PORT: String(port), HOST: "127.0.0.1", LOG_LEVEL: "warn" };
}

async function runFile(runs: readonly RunBlock[], emulators: readonly string[]): Promise<FileRun> {
  const root = mkdtempSync(join(tmpdir(), "kms-docs-run-"));
  const work = join(root, "work");
  const home = join(root, "home");
  const blockDir = join(root, "blocks");
  for (const d of [work, home, blockDir]) mkdirSync(d, { recursive: true });
  // Each port the docs listen on (8080, and any other a background block names) moves to a free one,
  // so that a server already running on it changes nothing: in URLs, in PORT=, and as the default PORT.
  const ports = new Map<number, number>();
  for (const docsPort of new Set([DOCS_PORT, ...runs.flatMap((r) => (r.port === undefined ? [] : [r.port]))])) ports.set(docsPort, await freePort());
  const started = await startEmulators(emulators);
  try {
    runs.forEach((run, i) => {
      let body = run.body;
      for (const [docsPort, port] of ports) {
        body = body.replace(new RegExp(`\\b(127\\.0\\.0\\.1|localhost):${docsPort}\\b`, "g"), `$1:${port}`).replace(new RegExp(`\\bPORT=${docsPort}\\b`, "g"), `PORT=${port}`);
      }
      writeFileSync(join(blockDir, `${i}.sh`), body);
    });
    writeFileSync(join(root, "run.sh"), script(runs, blockDir, ports));
    let pid: number | undefined;
    const failure = await new Promise<string | undefined>((done) => {
      const env = baseEnv(home, ports.get(DOCS_PORT)!, started.env);
      const child = spawn("bash", [join(root, "run.sh")], { cwd: work, env, detached: true, stdio: ["ignore", "ignore", "pipe"] });
      pid = child.pid;
      let stderr = "";
      child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
      const timer = setTimeout(() => {
        killGroup(child.pid);
        done(`the file's blocks did not finish within ${FILE_TIMEOUT_MS / 1000} s`);
      }, FILE_TIMEOUT_MS);
      child.on("exit", () => {
        clearTimeout(timer);
        // Background blocks (a server) are still running in the script's process group.
        killGroup(child.pid);
        done(stderr.trim() === "" ? undefined : `the script wrote to stderr: ${stderr.trim()}`);
      });
      child.on("error", (e) => {
        clearTimeout(timer);
        done(`bash could not run: ${e.message}`);
      });
    });
    await reapGroup(pid);
    const results = runs.map((_run, i) => {
      const rc = join(blockDir, `${i}.rc`);
      const out = join(blockDir, `${i}.out`);
      return {
        status: existsSync(rc) ? Number(readFileSync(rc, "utf8").trim()) : undefined,
        output: existsSync(out) ? readFileSync(out, "utf8") : "",
      };
    });
    return { results, failure };
  } finally {
    await started.stop();
    rmSync(root, { recursive: true, force: true });
  }
}

function killGroup(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, "SIGTERM");
  } catch {
    // already gone
  }
}

/** Waits (5 s at most) for the script's process group to end, a server's graceful shutdown included, then kills what is left. */
async function reapGroup(pid: number | undefined): Promise<void> {
  if (pid === undefined) return;
  for (let i = 0; i < 100; i++) {
    try {
      process.kill(-pid, 0);
    } catch {
      return;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  try {
    process.kill(-pid, "SIGKILL");
  } catch {
    // gone meanwhile
  }
}

// ---------------------------------------------------------------------------------------------
// The tests

describe("the marker convention", () => {
  it("finds the guides", () => {
    const files = FILES.map((f) => f.file);
    expect(files).toEqual(expect.arrayContaining(["README.md", "docs/README.md", "docs/setup/KMS_QUICKSTART.md", "docs/setup/AWS_KMS_SETUP.md"]));
    expect(FILES.reduce((n, f) => n + f.marked.runs.length, 0)).toBeGreaterThan(10);
  });

  it.each(FILES.map((f) => [f.file, f.marked.problems] as const))("%s: every shell block is marked test, cloud or manual", (_file, problems) => {
    expect(problems).toEqual([]);
  });
});

for (const { file, marked } of FILES) {
  if (marked.runs.length === 0) continue;
  describe(file, () => {
    let run: FileRun;
    beforeAll(async () => {
      run = await runFile(marked.runs, marked.emulators);
    }, FILE_TIMEOUT_MS + 15_000);

    marked.runs.forEach((block, i) => {
      const what = block.background ? `starts and listens` : block.exit === 0 ? "exits 0" : `exits ${block.exit}`;
      it(`line ${block.line}: ${what}${block.expected === undefined ? "" : `, output as at line ${block.expectedLine}`}`, () => {
        const result = run.results[i]!;
        const where = `${file}:${block.line}`;
        if (result.status === undefined) {
          const failed = marked.runs.findIndex((_b, j) => run.results[j]!.status !== undefined && run.results[j]!.status !== marked.runs[j]!.exit);
          const why = run.failure ?? (failed !== -1 && failed < i ? `the block at line ${marked.runs[failed]!.line} failed` : "the run stopped before it");
          throw new Error(`${where} did not run: ${why}`);
        }
        if (result.status !== block.exit) {
          throw new Error(`${where} exited ${result.status}, expected ${block.exit}; its output:\n${result.output}`);
        }
        if (block.expected !== undefined && !outputMatches(result.output, block.expected)) {
          // The comparison as jest shows it: the expected text (with its … wildcards) against the output.
          expect(`${where}\n${normaliseOutput(result.output)}`).toBe(`${where}\n${normaliseOutput(block.expected)}`);
        }
      });
    });
  });
}

