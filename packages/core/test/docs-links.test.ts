/**
 * Every link in the repository's documentation resolves: relative Markdown links point to files that
 * exist (with the exact case GitHub needs) and, when they carry an `#anchor` into a Markdown file, to
 * a heading of that file; and every docs URL built into the sources
 * (`https://github.com/kms-toolkit/kms/blob/main/<path>#anchor`, as in error `docsUrl`s and
 * permission remediations) points to a file and section that exist.
 */
import { existsSync, mkdtempSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve, sep } from "node:path";
import { afterAll, describe, expect, it, jest } from "@jest/globals";
import { DOCS_BASE_URL, ERROR_CODES, KmsError, type KmsErrorCode, TROUBLESHOOTING_URL, docsUrlFor } from "../src/errors";
import { localKmsProvider } from "../src/local-provider";

const REPO_ROOT = resolve(__dirname, "../../..");
const REPO_URL = "https://github.com/kms-toolkit/kms/blob/main/";
const SKIPPED_DIRS = new Set(["node_modules", "dist"]);

// ---------------------------------------------------------------------------------------------
// Files

/** Files under `dir` (recursively, skipping node_modules and dist) whose name ends with `suffix`. */
function walk(dir: string, suffix: string): string[] {
  if (!existsSync(dir)) return [];
  const found: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) {
      if (!SKIPPED_DIRS.has(entry.name)) found.push(...walk(join(dir, entry.name), suffix));
    } else if (entry.isFile() && entry.name.endsWith(suffix)) {
      found.push(join(dir, entry.name));
    }
  }
  return found;
}

/** `<root>/<group>/*` directories, e.g. every package. */
function subdirs(root: string, group: string): string[] {
  const dir = join(root, group);
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory() && !SKIPPED_DIRS.has(e.name))
    .map((e) => join(dir, e.name));
}

/** README.md, docs/**, runbooks/**, packages/* and apps/* READMEs. */
function markdownFiles(root: string): string[] {
  const files = [
    join(root, "README.md"),
    ...walk(join(root, "docs"), ".md"),
    ...walk(join(root, "runbooks"), ".md"),
    ...[...subdirs(root, "packages"), ...subdirs(root, "apps")].map((d) => join(d, "README.md")),
  ];
  return [...new Set(files.filter((f) => existsSync(f)))].sort();
}

/** packages/*\/src/**\/*.ts and apps/*\/src/**\/*.ts. */
function sourceFiles(root: string): string[] {
  return [...subdirs(root, "packages"), ...subdirs(root, "apps")].flatMap((d) => walk(join(d, "src"), ".ts")).sort();
}

/**
 * Whether `path` (inside `root`) exists with exactly this case in every segment, as GitHub's
 * case-sensitive paths require even on a case-insensitive file system.
 */
function existsExactly(root: string, path: string): boolean {
  const rel = relative(root, path);
  if (rel === "") return true;
  if (rel.startsWith("..") || resolve(root, rel) !== path) return false;
  let dir = root;
  for (const segment of rel.split(sep)) {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      return false;
    }
    if (!names.includes(segment)) return false;
    dir = join(dir, segment);
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Markdown

/** The lines of a Markdown file with fenced code blocks blanked, and inline code spans blanked but kept in length. */
function proseLines(text: string): string[] {
  let fence: string | undefined;
  return text.split("\n").map((line) => {
    const marker = /^ {0,3}(`{3,}|~{3,})/.exec(line)?.[1];
    if (fence !== undefined) {
      if (marker !== undefined && marker[0] === fence[0] && marker.length >= fence.length && line.trim() === marker) fence = undefined;
      return "";
    }
    if (marker !== undefined) {
      fence = marker;
      return "";
    }
    return line.replace(/(`+)([\s\S]*?[^`])\1(?!`)/g, (span) => `\`${" ".repeat(span.length - 2)}\``);
  });
}

/** GitHub's anchor of a heading: lowercase, punctuation but '-' and '_' removed, each space a '-'. */
function githubSlug(heading: string): string {
  const text = heading
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, "$1") // a link's text only
    .replace(/<[^>]+>/g, ""); // inline HTML
  return text
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}\s_-]/gu, "")
    .replace(/\s/g, "-");
}

/** Every anchor a Markdown file defines: its headings (duplicates get -1, -2, … as on GitHub) and HTML ids. */
function anchorsOf(text: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  let fence: string | undefined;
  for (const line of text.split("\n")) {
    const marker = /^ {0,3}(`{3,}|~{3,})/.exec(line)?.[1];
    if (fence !== undefined) {
      if (marker !== undefined && marker[0] === fence[0] && marker.length >= fence.length && line.trim() === marker) fence = undefined;
      continue;
    }
    if (marker !== undefined) {
      fence = marker;
      continue;
    }
    const heading = /^ {0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$/.exec(line)?.[1];
    if (heading !== undefined) {
      const slug = githubSlug(heading);
      const n = seen.get(slug) ?? 0;
      seen.set(slug, n + 1);
      anchors.add(n === 0 ? slug : `${slug}-${n}`);
    }
    for (const m of line.matchAll(/<a\s+(?:[^>]*\s)?(?:id|name)="([^"]+)"/g)) anchors.add(m[1]!);
  }
  return anchors;
}

interface Link {
  line: number;
  text: string;
  target: string;
}

/** Inline links and images `[text](target "title")`, and reference definitions `[label]: target`. */
function linksOf(text: string): Link[] {
  const links: Link[] = [];
  proseLines(text).forEach((line, i) => {
    const inline = /!?\[((?:[^[\]]|\[[^[\]]*\])*)\]\(\s*(?:<([^>]*)>|([^\s()]*(?:\([^\s()]*\)[^\s()]*)*))(?:\s+(?:"[^"]*"|'[^']*'|\([^)]*\)))?\s*\)/g;
    for (const m of line.matchAll(inline)) links.push({ line: i + 1, text: m[0], target: m[2] ?? m[3] ?? "" });
    const definition = /^ {0,3}\[([^\]]+)\]:\s*<?([^\s>]+)>?/.exec(line);
    if (definition) links.push({ line: i + 1, text: definition[0], target: definition[2]! });
  });
  return links;
}

const anchorCache = new Map<string, Set<string>>();
function anchorsOfFile(path: string): Set<string> {
  let anchors = anchorCache.get(path);
  if (!anchors) {
    anchors = anchorsOf(readFileSync(path, "utf8"));
    anchorCache.set(path, anchors);
  }
  return anchors;
}

/** Why `path#anchor` (absolute path) does not resolve, or undefined when it does. */
function targetProblem(root: string, path: string, anchor: string | undefined): string | undefined {
  const rel = relative(root, path);
  if (rel.startsWith("..")) return "it points outside the repository";
  if (!existsExactly(root, path)) return existsSync(path) ? `${rel} exists only with another letter case` : `${rel} does not exist`;
  if (anchor === undefined) return undefined;
  if (!path.endsWith(".md") || !statSync(path).isFile()) return undefined; // anchors are checked in Markdown only
  if (!anchorsOfFile(path).has(anchor)) return `${relative(root, path)} has no heading with the anchor #${anchor}`;
  return undefined;
}

/** Broken relative links of one Markdown file, as `line N: [text](target): why`. */
function brokenLinks(root: string, file: string): string[] {
  const problems: string[] = [];
  for (const link of linksOf(readFileSync(file, "utf8"))) {
    const { target } = link;
    if (/^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith("//")) continue; // absolute URL, mailto:
    const hash = target.indexOf("#");
    const rawPath = (hash === -1 ? target : target.slice(0, hash)).replace(/\?.*$/, "");
    const anchor = hash === -1 ? undefined : target.slice(hash + 1);
    let decoded: string;
    try {
      decoded = decodeURIComponent(rawPath);
    } catch {
      problems.push(`line ${link.line}: ${link.text}: the path is not valid percent-encoding`);
      continue;
    }
    const path = decoded === "" ? file : decoded.startsWith("/") ? join(root, decoded) : resolve(dirname(file), decoded);
    const problem = anchor === "" ? "empty anchor" : targetProblem(root, path, anchor);
    if (problem !== undefined) problems.push(`line ${link.line}: ${link.text}: ${problem}`);
  }
  return problems;
}

/** Why a `https://github.com/kms-toolkit/kms/blob/main/<path>#anchor` URL does not resolve in `root`. */
function repoUrlProblem(root: string, url: string): string | undefined {
  if (!url.startsWith(REPO_URL)) return `not a ${REPO_URL} URL`;
  const rest = url.slice(REPO_URL.length);
  const hash = rest.indexOf("#");
  const path = decodeURIComponent(hash === -1 ? rest : rest.slice(0, hash));
  const anchor = hash === -1 ? undefined : rest.slice(hash + 1);
  if (path === "") return "no path";
  return anchor === "" ? "empty anchor" : targetProblem(root, join(root, path), anchor);
}

/** Repository docs URLs written in a source file; `anchor` is undefined when none or when it is computed (`#${…}`). */
function repoUrlsIn(text: string): { line: number; url: string }[] {
  const urls: { line: number; url: string }[] = [];
  text.split("\n").forEach((line, i) => {
    // `${DOCS_BASE_URL}path` counts as the URL it builds; the constant's own definition is not a docs URL.
    if (/export const DOCS_BASE_URL = /.test(line)) return;
    const expanded = line.replaceAll("${DOCS_BASE_URL}", DOCS_BASE_URL);
    for (const m of expanded.matchAll(/https:\/\/github\.com\/kms-toolkit\/kms\/blob\/main\/[^\s"'`)\]<>]*/g)) {
      let url = m[0].replace(/[.,;:]+$/, "");
      const dynamic = url.indexOf("${");
      if (dynamic !== -1) url = url.slice(0, url.lastIndexOf("#", dynamic) === -1 ? dynamic : url.lastIndexOf("#", dynamic));
      urls.push({ line: i + 1, url });
    }
  });
  return urls;
}

// ---------------------------------------------------------------------------------------------
// The checker checks

describe("the link checker", () => {
  const root = mkdtempSync(join(tmpdir(), "kms-docs-links-"));
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it("computes GitHub's heading anchors", () => {
    expect(githubSlug("KMS_ACCESS_DENIED")).toBe("kms_access_denied");
    expect(githubSlug("Verification order (`open`)")).toBe("verification-order-open");
    expect(githubSlug("canonical(tenant id, context)")).toBe("canonicaltenant-id-context");
    expect(githubSlug("API (module `envelope.ts`)")).toBe("api-module-envelopets");
    expect(githubSlug("Tenant keys: default key, bring your own key")).toBe("tenant-keys-default-key-bring-your-own-key");
    expect(githubSlug("The `local` provider")).toBe("the-local-provider");
    expect(githubSlug("AES-GCM limits per data key")).toBe("aes-gcm-limits-per-data-key");
    expect([...anchorsOf("# A\n## A\n```\n# not a heading\n```\n### A ###\n")]).toEqual(["a", "a-1", "a-2"]);
  });

  it("finds links outside code and ignores those inside", () => {
    const text = 'See [a](x.md#one), ![img](img.png "t") and [`code`](dir).\n`[no](inline.md)`\n```\n[no](fenced.md)\n```\n[ref]: y.md\n';
    expect(linksOf(text).map((l) => l.target)).toEqual(["x.md#one", "img.png", "dir", "y.md"]);
  });

  it("reports a missing file, a missing anchor, a wrong letter case, and accepts good links", () => {
    mkdirSync(join(root, "docs", "sub"), { recursive: true });
    writeFileSync(join(root, "docs", "sub", "GUIDE.md"), "# Guide\n## Some section\n");
    writeFileSync(
      join(root, "docs", "README.md"),
      [
        "[ok](sub/GUIDE.md#some-section) [ok](sub/GUIDE.md) [ok](sub) [ok](#own) [ok](https://example.com/x) [ok](/docs/sub/GUIDE.md)",
        "[missing](sub/NOPE.md) [anchor](sub/GUIDE.md#nope) [case](sub/guide.md) [own](#nope) [out](../../outside.md)",
        "## Own",
      ].join("\n"),
    );
    expect(brokenLinks(root, join(root, "docs", "README.md"))).toEqual([
      "line 2: [missing](sub/NOPE.md): docs/sub/NOPE.md does not exist",
      "line 2: [anchor](sub/GUIDE.md#nope): docs/sub/GUIDE.md has no heading with the anchor #nope",
      expect.stringMatching(/^line 2: \[case\]\(sub\/guide\.md\): /),
      "line 2: [own](#nope): docs/README.md has no heading with the anchor #nope",
      "line 2: [out](../../outside.md): it points outside the repository",
    ]);
    expect(repoUrlProblem(root, `${REPO_URL}docs/sub/GUIDE.md#guide`)).toBeUndefined();
    expect(repoUrlProblem(root, `${REPO_URL}docs/sub/GUIDE.md#other`)).toMatch(/no heading with the anchor #other/);
    expect(repoUrlProblem(root, `${REPO_URL}docs/NOPE.md`)).toMatch(/does not exist/);
  });

  it("extracts source URLs, leaving computed anchors out", () => {
    const source = [
      `const A = "${REPO_URL}docs/A.md";`,
      "const B = `" + REPO_URL + "docs/B.md#${code.toLowerCase()}`;",
      `// see ${REPO_URL}docs/C.md#literal.`,
    ].join("\n");
    expect(repoUrlsIn(source).map((u) => u.url)).toEqual([`${REPO_URL}docs/A.md`, `${REPO_URL}docs/B.md`, `${REPO_URL}docs/C.md#literal`]);
  });
});

// ---------------------------------------------------------------------------------------------
// The repository

const docs = markdownFiles(REPO_ROOT).map((f) => relative(REPO_ROOT, f));
const sources = sourceFiles(REPO_ROOT).map((f) => relative(REPO_ROOT, f));

describe("Markdown links in the repository", () => {
  it("covers the documentation", () => {
    expect(docs).toEqual(expect.arrayContaining(["README.md", "docs/README.md", "docs/setup/KMS_TROUBLESHOOTING.md", "packages/core/README.md"]));
    expect(docs.some((f) => f.split("/").some((s) => SKIPPED_DIRS.has(s)))).toBe(false);
    expect(docs.reduce((n, f) => n + linksOf(readFileSync(join(REPO_ROOT, f), "utf8")).length, 0)).toBeGreaterThan(10);
  });

  it.each(docs)("%s: every relative link resolves", (file) => {
    expect(brokenLinks(REPO_ROOT, join(REPO_ROOT, file))).toEqual([]);
  });
});

describe("docs URLs built into the sources", () => {
  it("finds the sources' docs URLs", () => {
    const all = sources.flatMap((f) => repoUrlsIn(readFileSync(join(REPO_ROOT, f), "utf8")));
    expect(all.length).toBeGreaterThanOrEqual(3);
  });

  it.each(sources)("%s: every written docs URL resolves", (file) => {
    const problems = repoUrlsIn(readFileSync(join(REPO_ROOT, file), "utf8"))
      .map(({ line, url }) => ({ line, url, problem: repoUrlProblem(REPO_ROOT, url) }))
      .filter((p) => p.problem !== undefined)
      .map((p) => `line ${p.line}: ${p.url}: ${p.problem}`);
    expect(problems).toEqual([]);
  });

  /** Docs URL constants whose anchor is computed (`${NAME}#${…}`), each verified at run time below. */
  const COMPUTED = ["TROUBLESHOOTING_URL", "SERVER_DOCS_URL"];

  it("verifies every computed anchor at run time (a new `${URL}#${…}` needs a case here)", () => {
    const used = new Set<string>();
    for (const file of sources) {
      for (const m of readFileSync(join(REPO_ROOT, file), "utf8").matchAll(/\$\{(\w+)\}#\$\{/g)) used.add(m[1]!);
    }
    expect([...used].filter((name) => !COMPUTED.includes(name))).toEqual([]);
  });

  it.each(Object.keys(ERROR_CODES) as KmsErrorCode[])("core error %s links to its troubleshooting section", (code) => {
    expect(docsUrlFor(code).startsWith(TROUBLESHOOTING_URL)).toBe(true);
    expect(repoUrlProblem(REPO_ROOT, docsUrlFor(code))).toBeUndefined();
    expect(repoUrlProblem(REPO_ROOT, new KmsError(code, "x").docsUrl)).toBeUndefined();
  });

  describe("apps/server error codes", () => {
    const errorsPath = join(REPO_ROOT, "apps/server/src/errors.ts");
    const present = existsSync(errorsPath);
    const source = present ? readFileSync(errorsPath, "utf8") : "";
    const union = /export type ServerErrorCode\s*=([^;]*);/.exec(source)?.[1] ?? "";
    const serverCodes = [...union.matchAll(/"([A-Z_]+)"/g)].map((m) => m[1]!);

    it("declares its codes where this test reads them", () => {
      expect(present).toBe(true);
      expect(serverCodes.length).toBeGreaterThan(0);
    });

    it.each([...serverCodes, ...Object.keys(ERROR_CODES)])("%s links to its section", (code) => {
      const { docsUrlOf } = jest.requireActual<{ docsUrlOf: (code: string) => string }>(errorsPath);
      expect(repoUrlProblem(REPO_ROOT, docsUrlOf(code))).toBeUndefined();
    });
  });

  describe("local provider permission checks", () => {
    const dir = mkdtempSync(join(tmpdir(), "kms-docs-links-local-"));
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    /** Every repository URL of a check: its docsUrl, its error's, and any in its remediation. */
    function urlsOf(checks: { docsUrl?: string; remediation?: string; error?: KmsError }[]): string[] {
      return checks.flatMap((c) => [
        ...(c.docsUrl ? [c.docsUrl] : []),
        ...(c.error ? [c.error.docsUrl] : []),
        ...(c.remediation?.match(/https:\/\/\S+/g) ?? []),
      ]);
    }

    it("link to pages and sections that exist, passing or failing", async () => {
      const provider = localKmsProvider({ path: join(dir, "keys.json") });
      try {
        const passing = await provider.validatePermissions("k");
        expect(passing.every((c) => c.ok)).toBe(true);
        await provider.disableKey("k");
        const failing = await provider.validatePermissions("k");
        expect(failing.filter((c) => !c.ok).map((c) => c.error?.code)).toEqual(["KMS_KEY_DISABLED", "KMS_PROVIDER_ERROR"]);
        const urls = urlsOf([...passing, ...failing]);
        expect(urls.length).toBeGreaterThanOrEqual(passing.length + 4);
        expect(urls.map((url) => [url, repoUrlProblem(REPO_ROOT, url.replace(/[.,;:)]+$/, ""))]).filter(([, p]) => p !== undefined)).toEqual([]);
      } finally {
        await provider.close();
      }
    });
  });
});
