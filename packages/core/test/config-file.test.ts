/** `readConfigFile`: JSON and strict YAML, a size cap before parsing, messages that never quote the file. */
import { afterAll, beforeAll, describe, expect, it } from "@jest/globals";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MAX_CONFIG_FILE_BYTES, readConfigFile } from "../src/config-file";

let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "kms-config-file-"));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

function textFile(name: string, content: string): string {
  const path = join(dir, name);
  writeFileSync(path, content);
  return path;
}

describe("readConfigFile", () => {
  const expected = {
    providers: { local: { path: "keys.json" } },
    tenants: { defaultKey: { provider: "local", keyId: "default" }, keys: { "tenant-b": { provider: "local", keyId: "tenant-b" } } },
    cache: { encrypt: { maxAgeMs: 300000 } },
    allowLocalInProduction: false,
  };
  const yaml = [
    "# the same configuration as JSON",
    "providers:",
    "  local:",
    "    path: keys.json",
    "tenants:",
    "  defaultKey: { provider: local, keyId: default }",
    "  keys:",
    "    tenant-b:",
    "      provider: local",
    "      keyId: tenant-b",
    "cache:",
    "  encrypt:",
    "    maxAgeMs: 300000",
    "allowLocalInProduction: false",
    "",
  ].join("\n");

  it.each(["config.yaml", "config.yml", "CONFIG.YAML"])("%s reads like its JSON equivalent", (name) => {
    const read = { ...expected, providers: { local: { path: join(dir, "keys.json") } } };
    expect(readConfigFile(textFile(name, yaml))).toEqual({ ok: true, config: read });
    expect(readConfigFile(textFile("config.json", JSON.stringify(expected)))).toEqual({ ok: true, config: read });
  });

  it("invalid JSON: the position, not the content", () => {
    const path = textFile("bad.json", '{"providers": {"token": "s3cr3t-value-never-echoed",}}');
    const read = readConfigFile(path);
    expect(read.ok ? undefined : read.issue.message).toMatch(new RegExp(`^configuration file ${path} is not valid JSON \\(at position \\d+`));
    expect(JSON.stringify(read)).not.toContain("s3cr3t");
  });

  it("a JSON array, or a missing file", () => {
    const array = textFile("array.json", "[]");
    expect(readConfigFile(array)).toEqual({ ok: false, issue: expect.objectContaining({ message: `configuration file ${array} must hold a JSON object` }) });
    const missing = join(dir, "missing.json");
    expect(readConfigFile(missing)).toEqual({ ok: false, issue: expect.objectContaining({ message: `cannot read configuration file ${missing} (ENOENT)` }) });
  });

  const SECRET_VALUE = "s3cr3t-value-never-echoed";
  const laughs = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'];
  for (let i = 1; i < 9; i++) laughs.push(`${String.fromCharCode(97 + i)}: &${String.fromCharCode(97 + i)} [${Array(9).fill(`*${String.fromCharCode(96 + i)}`).join(",")}]`);

  const bad: [string, string, string][] = [
    ["a duplicate key", `providers: {local: {}}\nproviders: {local: {token: ${SECRET_VALUE}}}\n`, "not valid YAML: a duplicate key (at line 2 column 1)"],
    ["a custom tag", `providers: !secret ${SECRET_VALUE}\n`, "not valid YAML: an unknown tag"],
    ["a YAML 1.1 tag (!!binary)", `providers: {local: {path: !!binary aGk=}}\n`, "not accepted: explicit tags (!tag, !!type) are not allowed (at line 1"],
    ["a standard tag (!!str)", `providers: {local: {path: !!str keys}}\n`, "not accepted: explicit tags"],
    ["an alias", `providers: {local: &l {}}\nextra: *l\n`, "not accepted: aliases (*name) are not allowed (at line 2 column 8)"],
    ["a billion-laughs document", `${laughs.join("\n")}\nproviders: {local: {}}\n`, "not accepted: aliases (*name) are not allowed"],
    ["a merge key", `base: &b {local: {}}\nproviders: {<<: *b}\n`, "not accepted: aliases"],
    ["two documents", `providers: {local: {}}\n---\nproviders: {}\n`, "not valid YAML: more than one document"],
    ["a syntax error", `providers: [local\ntenants: ${SECRET_VALUE}\n`, "not valid YAML: a YAML syntax error"],
    ["a non-string key", `providers: {local: {}}\n? [a, b]\n: 1\n`, "not accepted: keys must be strings (at line 2 column 3)"],
    ["a sequence at the top", `- providers\n- ${SECRET_VALUE}\n`, "must hold a YAML mapping"],
    ["an empty file", "", "must hold a YAML mapping"],
  ];

  it.each(bad)("%s: KMS_CONFIG_INVALID at KMS_CONFIG_FILE, quoting nothing from the file", (_name, content, message) => {
    const path = textFile("bad.yaml", content);
    const read = readConfigFile(path);
    expect(read.ok).toBe(false);
    const issue = read.ok ? undefined : read.issue;
    expect([issue?.path, issue?.code]).toEqual(["KMS_CONFIG_FILE", "KMS_CONFIG_INVALID"]);
    expect(issue?.message).toContain(`configuration file ${path} `);
    expect(issue?.message).toContain(message);
    expect(issue?.message).not.toContain(SECRET_VALUE);
  });

  it.each(["big.yaml", "big.json"])("%s over the size limit is refused before parsing", (name) => {
    const path = textFile(name, `# ${"x".repeat(MAX_CONFIG_FILE_BYTES)}\n`);
    const read = readConfigFile(path);
    expect(read.ok ? undefined : read.issue.message).toBe(
      `configuration file ${path} is ${MAX_CONFIG_FILE_BYTES + 3} bytes, the limit is ${MAX_CONFIG_FILE_BYTES}`,
    );
  });
});


describe("readConfigFile and the local key store path", () => {
  it("makes a relative providers.local.path absolute against the file's directory; leaves an absolute one", () => {
    const nested = join(dir, "conf");
    mkdirSync(nested, { recursive: true });
    const relative = readConfigFile(textFile("conf/relative.json", JSON.stringify({ providers: { local: { path: "keys/store.json" }, "aws-kms": {} } })));
    expect(relative).toEqual({ ok: true, config: { providers: { local: { path: join(nested, "keys/store.json") }, "aws-kms": {} } } });
    const absolute = readConfigFile(textFile("conf/absolute.yaml", "providers:\n  local: { path: /var/lib/kms/keys.json }\n"));
    expect(absolute).toEqual({ ok: true, config: { providers: { local: { path: "/var/lib/kms/keys.json" } } } });
  });
});
