/**
 * The marked code blocks of a Markdown file (the convention is in docs/README.md, "Docs that run"):
 *
 * - ```` ```sh test ```` runs (exit status 0 expected); `exit=N` expects status N; `background` starts
 *   a long-running command and waits until it listens on `port=N`;
 * - ```` ```sh cloud ```` needs a cloud account or a real service: shown, never run;
 * - ```` ```sh manual ```` is deliberately not run (it changes the machine, or it is the test suite itself);
 * - ```` ```text expected ```` right after a run block holds that block's expected output;
 * - `<!-- docs-test: emulator=aws-kms -->` anywhere in a file runs its blocks against a local emulator.
 *
 * Pure functions only: docs.test.ts runs what this finds.
 */

/** Info-string languages that are shell commands: each such block needs a marker. */
export const SHELL_LANGUAGES: ReadonlySet<string> = new Set(["sh", "bash", "shell", "console", "zsh"]);

/** What a block's markers say about it. */
export type BlockMode = "test" | "cloud" | "manual" | "unmarked";

export interface CodeBlock {
  /** 1-based line of the opening fence. */
  readonly line: number;
  /** The info string's first word (`sh`, `text`, `json`…), lower-cased; "" when none. */
  readonly language: string;
  /** The info string's other words. */
  readonly flags: readonly string[];
  /** The block's text, with a final newline when not empty. */
  readonly body: string;
}

export interface RunBlock {
  readonly line: number;
  readonly body: string;
  /** The exit status the block must end with. */
  readonly exit: number;
  /** Started in the background and left running until the file's blocks are done. */
  readonly background: boolean;
  /** For a background block: the TCP port on 127.0.0.1 it must listen on before the next block runs. */
  readonly port: number | undefined;
  /** The block's expected output (stdout and stderr together), from a following `text expected` block. */
  readonly expected: string | undefined;
  /** 1-based line of that `text expected` block. */
  readonly expectedLine: number | undefined;
}

export interface MarkedFile {
  readonly blocks: readonly CodeBlock[];
  readonly runs: readonly RunBlock[];
  /** `<!-- docs-test: emulator=… -->` directives of the file: the emulators its blocks need. */
  readonly emulators: readonly string[];
  /** Marker mistakes: each one fails the file's convention test. */
  readonly problems: readonly string[];
}

/** The emulators a file may ask for. */
export const EMULATORS: ReadonlySet<string> = new Set(["aws-kms", "vault"]);

/** Every fenced code block of a Markdown file, in order. */
export function codeBlocks(text: string): CodeBlock[] {
  const blocks: CodeBlock[] = [];
  const lines = text.split("\n");
  let open: { line: number; fence: string; indent: number; info: string; body: string[] } | undefined;
  lines.forEach((raw, i) => {
    const fence = /^( {0,3})(`{3,}|~{3,})(.*)$/.exec(raw);
    if (open !== undefined) {
      if (fence !== null && fence[2]![0] === open.fence[0] && fence[2]!.length >= open.fence.length && fence[3]!.trim() === "") {
        const [language = "", ...flags] = open.info.trim().split(/\s+/).filter((w) => w !== "");
        const body = open.body.join("\n");
        blocks.push({ line: open.line, language: language.toLowerCase(), flags, body: body === "" ? "" : `${body}\n` });
        open = undefined;
      } else {
        // Content lines lose up to the fence's own indentation, as CommonMark says.
        open.body.push(raw.replace(new RegExp(`^ {0,${open.indent}}`), ""));
      }
      return;
    }
    if (fence !== null && !(fence[2]![0] === "`" && fence[3]!.includes("`"))) {
      open = { line: i + 1, fence: fence[2]!, indent: fence[1]!.length, info: fence[3]!, body: [] };
    }
  });
  return blocks;
}

/** The mode a shell block's markers give it. */
export function modeOf(block: CodeBlock): BlockMode {
  const modes = block.flags.filter((f) => f === "test" || f === "cloud" || f === "manual");
  return modes.length === 1 ? (modes[0] as BlockMode) : "unmarked";
}

const RUN_FLAG = /^(test|background|exit=\d{1,3}|port=\d{1,5})$/;

/** Parses a file's markers: what runs, what does not, and every mistake in the markers. */
export function markedFile(text: string): MarkedFile {
  const blocks = codeBlocks(text);
  const runs: RunBlock[] = [];
  const problems: string[] = [];
  const emulators: string[] = [];

  for (const m of text.matchAll(/<!--\s*docs-test:\s*([^>]*?)\s*-->/g)) {
    for (const word of m[1]!.split(/\s+/).filter((w) => w !== "")) {
      const emulator = /^emulator=([a-z-]+)$/.exec(word)?.[1];
      if (emulator !== undefined && EMULATORS.has(emulator)) emulators.push(emulator);
      else problems.push(`unknown docs-test directive "${word}" (known: ${[...EMULATORS].map((e) => `emulator=${e}`).join(", ")})`);
    }
  }

  blocks.forEach((block, i) => {
    const next = blocks[i + 1];
    const previous = blocks[i - 1];
    if (block.language === "text" && block.flags.includes("expected")) {
      if (previous === undefined || !SHELL_LANGUAGES.has(previous.language) || modeOf(previous) !== "test") {
        problems.push(`line ${block.line}: a \`text expected\` block must directly follow a \`sh test\` block`);
      } else if (previous.flags.includes("background")) {
        problems.push(`line ${block.line}: a background block's output is not compared`);
      }
      return;
    }
    if (!SHELL_LANGUAGES.has(block.language)) return;
    const mode = modeOf(block);
    if (mode === "unmarked") {
      problems.push(
        `line ${block.line}: \`\`\`${[block.language, ...block.flags].join(" ")} has no marker: add exactly one of test, cloud or manual (docs/README.md, "Docs that run")`,
      );
      return;
    }
    if (mode !== "test") {
      const stray = block.flags.filter((f) => f !== mode);
      if (stray.length > 0) problems.push(`line ${block.line}: ${stray.join(", ")} only apply to \`test\` blocks`);
      return;
    }
    const unknown = block.flags.filter((f) => !RUN_FLAG.test(f));
    if (unknown.length > 0) problems.push(`line ${block.line}: unknown marker(s) ${unknown.join(", ")}`);
    const exit = Number(/^exit=(\d+)$/.exec(block.flags.find((f) => f.startsWith("exit=")) ?? "")?.[1] ?? 0);
    const background = block.flags.includes("background");
    const portFlag = block.flags.find((f) => f.startsWith("port="));
    const port = portFlag === undefined ? undefined : Number(portFlag.slice("port=".length));
    if (background && port === undefined) problems.push(`line ${block.line}: a background block needs port=N (where it listens)`);
    if (!background && port !== undefined) problems.push(`line ${block.line}: port=N only applies to background blocks`);
    if (background && exit !== 0) problems.push(`line ${block.line}: a background block cannot expect an exit status`);
    if (block.body.trim() === "") problems.push(`line ${block.line}: an empty block`);
    const expected = next !== undefined && next.language === "text" && next.flags.includes("expected") ? next : undefined;
    runs.push({ line: block.line, body: block.body, exit, background, port, expected: expected?.body, expectedLine: expected?.line });
  });
  return { blocks, runs, emulators, problems };
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/**
 * Output as compared: no carriage returns, no trailing blanks on a line, no trailing empty lines, and
 * none of Node's process warnings (`(node:PID) Warning: …` down to its `--trace-warnings` hint, or
 * its first line when there is no hint): they depend on the Node version, not on the docs (the AWS SDK
 * warns on Node 20 that later releases will need Node 22).
 */
export function normaliseOutput(text: string): string {
  return text
    .replace(/\r\n?/g, "\n")
    .replace(/^\(node:\d+\) \[?[A-Za-z0-9_]*\]? ?[A-Za-z]*Warning: [\s\S]*?\n\(Use `node --trace-[a-z-]+ \.\.\.` to show where the warning was created\)\n/gm, "")
    .replace(/^\(node:\d+\) [^\n]*Warning: [^\n]*\n/gm, "")
    .split("\n")
    .map((l) => l.trimEnd())
    .join("\n")
    .replace(/\n+$/, "");
}

/**
 * The pattern an expected output stands for: the text exactly (after `normaliseOutput`), except that
 * `…` (or `...`) within a line matches anything on that line, and a line that is only `…` matches any
 * number of lines, none included.
 */
export function expectedPattern(expected: string): RegExp {
  const lines = normaliseOutput(expected).split("\n");
  let source = "";
  lines.forEach((line, i) => {
    const last = i === lines.length - 1;
    if (line.trim() === "…" || line.trim() === "...") {
      source += last ? "[\\s\\S]*" : "(?:[^\\n]*\\n)*?";
      return;
    }
    source += line.split(/…|\.\.\./).map(escapeRegExp).join("[^\\n]*") + (last ? "" : "\\n");
  });
  return new RegExp(`^${source}$`);
}

/** Whether `output` matches `expected` (see `expectedPattern`). */
export function outputMatches(output: string, expected: string): boolean {
  return expectedPattern(expected).test(normaliseOutput(output));
}
