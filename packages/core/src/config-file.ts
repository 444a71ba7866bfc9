/**
 * Reading a configuration file, JSON or YAML, defensively: a size cap before parsing, strict YAML
 * (no tags, aliases, merge keys or duplicate keys) and messages that name a rule and a position but
 * never quote the file, which can hold credentials. The object read is then for `validateConfig`.
 */
import { readFileSync, statSync } from "node:fs";
import { dirname, isAbsolute, resolve } from "node:path";
import { isNode, isScalar, LineCounter, parseDocument, visit, type DocumentOptions, type ParseOptions, type SchemaOptions } from "yaml";
import { type ConfigIssue, configIssue } from "./errors";

/** The object in the file, or the first problem (path `KMS_CONFIG_FILE`, code `KMS_CONFIG_INVALID`). */
export type ConfigFileResult = { ok: true; config: Record<string, unknown> } | { ok: false; issue: ConfigIssue };

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Largest configuration file accepted (JSON or YAML), checked before parsing. */
export const MAX_CONFIG_FILE_BYTES = 256 * 1024;

/**
 * The `yaml` options: YAML 1.2 core schema (no `!!binary`, `!!set`, ... of YAML 1.1), no `<<`
 * merge keys, duplicate keys an error, no custom tags, and aliases expanded zero times (they are
 * refused below anyway, and `toJS` gets `maxAliasCount: 0`: a billion-laughs document is an error, not a
 * memory spike).
 */
const YAML_OPTIONS: ParseOptions & DocumentOptions & SchemaOptions = {
  schema: "core",
  merge: false,
  uniqueKeys: true,
  customTags: [],
  prettyErrors: false,
  strict: true,
};

/**
 * Reads the object in the file at `path`: `.yaml`/`.yml` as YAML, anything else as JSON. A relative
 * `providers.local.path` (the `local` key store) is made absolute against the file's directory, so
 * a file means the same key store whichever directory a program reading it runs from.
 */
export function readConfigFile(path: string): ConfigFileResult {
  let issue: ConfigIssue | undefined;
  const invalid = (at: string, message: string): void => {
    issue ??= configIssue(at, "KMS_CONFIG_INVALID", message);
  };
  const config = readObject(path, invalid);
  return config !== undefined ? { ok: true, config: withAbsoluteLocalPath(config, dirname(resolve(path))) } : { ok: false, issue: issue! };
}

function withAbsoluteLocalPath(config: Record<string, unknown>, fileDir: string): Record<string, unknown> {
  const providers = config.providers;
  const local = isPlainObject(providers) ? providers.local : undefined;
  if (!isPlainObject(local) || typeof local.path !== "string" || isAbsolute(local.path)) return config;
  return { ...config, providers: { ...(providers as Record<string, unknown>), local: { ...local, path: resolve(fileDir, local.path) } } };
}

function readObject(path: string, invalid: (path: string, message: string) => void): Record<string, unknown> | undefined {
  let bytes: Buffer;
  try {
    // A size check before reading everything: the file must not be a way to exhaust memory.
    const size = statSync(path).size;
    if (size > MAX_CONFIG_FILE_BYTES) {
      invalid("KMS_CONFIG_FILE", `configuration file ${path} is ${size} bytes, the limit is ${MAX_CONFIG_FILE_BYTES}`);
      return undefined;
    }
    bytes = readFileSync(path);
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? "unreadable";
    invalid("KMS_CONFIG_FILE", `cannot read configuration file ${path} (${reason})`);
    return undefined;
  }
  if (bytes.length > MAX_CONFIG_FILE_BYTES) {
    invalid("KMS_CONFIG_FILE", `configuration file ${path} is ${bytes.length} bytes, the limit is ${MAX_CONFIG_FILE_BYTES}`);
    return undefined;
  }
  const text = bytes.toString("utf8");
  const yaml = /\.ya?ml$/i.test(path);
  const parsed = yaml ? parseYamlConfig(text, path, invalid) : parseJsonConfig(text, path, invalid);
  if (parsed === undefined) return undefined;
  if (isPlainObject(parsed)) return parsed;
  invalid("KMS_CONFIG_FILE", `configuration file ${path} must hold ${yaml ? "a YAML mapping" : "a JSON object"}`);
  return undefined;
}

function parseJsonConfig(text: string, path: string, invalid: (path: string, message: string) => void): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    // Only the position: the parser's message may quote the file, which can hold credentials.
    const where = /position \d+(?: \(line \d+ column \d+\))?/.exec((error as Error).message)?.[0];
    invalid("KMS_CONFIG_FILE", `configuration file ${path} is not valid JSON${where ? ` (at ${where})` : ""}`);
    return undefined;
  }
}

/**
 * Strict YAML: one document, no errors or warnings (an unknown tag is only a warning to `yaml`),
 * no aliases, no explicit tags, string keys only. Messages name the rule and a line/column, never
 * the file's content (which can hold credentials).
 */
function parseYamlConfig(text: string, path: string, invalid: (path: string, message: string) => void): unknown {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { ...YAML_OPTIONS, lineCounter });
  const at = (pos: readonly number[] | undefined): string => {
    if (pos === undefined || pos[0] === undefined) return "";
    const { line, col } = lineCounter.linePos(pos[0]);
    return ` (at line ${line} column ${col})`;
  };
  const problem = [...doc.errors, ...doc.warnings][0];
  if (problem !== undefined) {
    const what = YAML_PROBLEMS[problem.code] ?? `a YAML syntax error (${problem.code})`;
    invalid("KMS_CONFIG_FILE", `configuration file ${path} is not valid YAML: ${what}${at(problem.pos)}`);
    return undefined;
  }
  let refused: string | undefined;
  visit(doc, {
    Alias(_key, node) {
      refused = `aliases (*name) are not allowed${at(node.range ?? undefined)}`;
      return visit.BREAK;
    },
    Node(_key, node) {
      if (node.tag !== undefined) {
        refused = `explicit tags (!tag, !!type) are not allowed${at(node.range ?? undefined)}`;
        return visit.BREAK;
      }
      return undefined;
    },
    Pair(_key, pair) {
      if (!isScalar(pair.key) || typeof pair.key.value !== "string") {
        refused = `keys must be strings${at(isNode(pair.key) ? (pair.key.range ?? undefined) : undefined)}`;
        return visit.BREAK;
      }
      return undefined;
    },
  });
  if (refused !== undefined) {
    invalid("KMS_CONFIG_FILE", `configuration file ${path} is not accepted: ${refused}`);
    return undefined;
  }
  try {
    return doc.toJS({ maxAliasCount: 0 }) as unknown;
  } catch {
    invalid("KMS_CONFIG_FILE", `configuration file ${path} could not be read as YAML`);
    return undefined;
  }
}

/** Fixed texts for `yaml`'s error codes (its own messages can quote the source). */
const YAML_PROBLEMS: Readonly<Record<string, string>> = {
  DUPLICATE_KEY: "a duplicate key",
  MULTIPLE_DOCS: "more than one document",
  TAG_RESOLVE_FAILED: "an unknown tag",
  ALIAS_PROPS: "an alias with properties",
  BAD_ALIAS: "a bad alias",
};
