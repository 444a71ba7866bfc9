import { afterAll, beforeAll, describe, expect, it } from "@jest/globals";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { docsUrlFor } from "@kms/core";
import { AwsKmsEmulator, VaultEmulator } from "@kms/testkit/emulators";
import { kms, kmsOnTty } from "./run";

const AWS_DOCS = expect.stringMatching(/^https:\/\//);
let dir: string;
let emulator: AwsKmsEmulator;
let awsEnv: Record<string, string>;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "kms-cli-init-"));
  emulator = new AwsKmsEmulator();
  await emulator.start();
  emulator.createKey({ alias: "alias/app" });
  const { credentials } = emulator.clientConfig();
  awsEnv = { AWS_ACCESS_KEY_ID: credentials.accessKeyId, AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey };
});

afterAll(async () => {
  await emulator.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("kms init --yes + kms validate against the AWS KMS emulator", () => {
  const config = () => join(dir, "aws.json");
  const PERMISSIONS = ["kms:DescribeKey", "kms:ListKeyRotations", "kms:GenerateDataKey", "kms:Encrypt", "kms:Decrypt"];

  it("writes a config without secrets that validate passes", async () => {
    const { region, endpoint } = emulator.clientConfig();
    const init = await kms(["init", "--yes", "--config", config(), "--provider", "aws-kms", "--key", "alias/app", "--region", region, "--endpoint", endpoint], { cwd: dir, env: awsEnv });
    expect(init.stderr).toBe("");
    expect(init.code).toBe(0);
    expect(init.stdout.split("\n")).toEqual([
      `wrote ${config()}`,
      ...PERMISSIONS.map((p) => `PASS aws-kms alias/app ${p}`),
      "5 checks: 5 passed, 0 failed",
      "",
    ]);
    expect(JSON.parse(readFileSync(config(), "utf8"))).toEqual({
      providers: { "aws-kms": { region, endpoint } },
      tenants: { defaultKey: { provider: "aws-kms", keyId: "alias/app" } },
      rotation: { cryptoperiodDays: 90 },
    });
    expect(statSync(config()).mode & 0o777).toBe(0o600);
    expect(readFileSync(config(), "utf8")).not.toContain(awsEnv.AWS_SECRET_ACCESS_KEY);
  });

  it("doctor reports the emulator reachable and its clock (the HTTP Date of one plain GET)", async () => {
    const result = await kms(["doctor", "--config", config()], { cwd: dir, env: awsEnv });
    expect(result.code).toBe(0);
    const lines = result.stdout.split("\n");
    expect(lines).toContainEqual(expect.stringMatching(/^ok {3}provider aws-kms: reachable, \d+ ms$/));
    // The Date header has one-second resolution: the skew seen from here is 0, or 1 either way.
    expect(lines).toContainEqual(expect.stringMatching(/^ok {3}clock aws-kms: skew (0|-1|\+1) s$/));
  });

  it("names exactly the missing permission and its fix (exit 1), in text and JSON", async () => {
    const { accessKeyId } = emulator.clientConfig().credentials;
    emulator.setAllowedActions(accessKeyId, ["kms:DescribeKey", "kms:ListKeyRotations", "kms:Encrypt", "kms:Decrypt"]);
    try {
      emulator.resetLog();
      const text = await kms(["validate", "--config", config()], { cwd: dir, env: awsEnv });
      expect(text.code).toBe(1);
      const lines = text.stdout.trimEnd().split("\n");
      expect(lines.filter((l) => l.startsWith("PASS"))).toEqual(["PASS aws-kms alias/app kms:DescribeKey", "PASS aws-kms alias/app kms:ListKeyRotations", "PASS aws-kms alias/app kms:Encrypt", "PASS aws-kms alias/app kms:Decrypt"]);
      const fails = lines.filter((l) => l.startsWith("FAIL"));
      expect(fails).toHaveLength(1);
      expect(fails[0]).toMatch(/^FAIL aws-kms alias\/app kms:GenerateDataKey — kms:GenerateDataKey on \S+: .+ \(https:\/\/\S+\)$/);
      expect(lines.at(-1)).toBe("5 checks: 4 passed, 1 failed");
      expect(text.stdout).not.toContain("is not authorized to perform");
      expect(emulator.count("GenerateDataKey")).toBe(1);

      const json = await kms(["validate", "--config", config(), "--json"], { cwd: dir, env: awsEnv });
      expect(json.code).toBe(1);
      const report = JSON.parse(json.stdout);
      expect(report.ok).toBe(false);
      expect(report.keys).toHaveLength(1);
      expect(report.keys[0].checks).toEqual([
        { permission: "kms:DescribeKey", ok: true, docsUrl: AWS_DOCS },
        { permission: "kms:ListKeyRotations", ok: true, docsUrl: AWS_DOCS },
        {
          permission: "kms:GenerateDataKey",
          ok: false,
          remediation: fails[0]!.split(" — ")[1]!.replace(/ \(https:\/\/\S+\)$/, ""),
          docsUrl: AWS_DOCS,
          error: { code: "KMS_ACCESS_DENIED", message: "The key service refused access to the tenant's key" },
        },
        { permission: "kms:Encrypt", ok: true, docsUrl: AWS_DOCS },
        { permission: "kms:Decrypt", ok: true, docsUrl: AWS_DOCS },
      ]);
    } finally {
      emulator.setAllowedActions(accessKeyId, "*");
    }
  });

  it("exits 3 when the KMS cannot be reached", async () => {
    const path = join(dir, "down.json");
    writeFileSync(
      path,
      JSON.stringify({
        providers: { "aws-kms": { region: "us-east-1", endpoint: "http://127.0.0.1:9" } },
        tenants: { defaultKey: { provider: "aws-kms", keyId: "alias/app" } },
        resilience: { retry: { maxAttempts: 1 } },
      }),
    );
    const result = await kms(["validate", "--config", path], { cwd: dir, env: awsEnv });
    expect(result.code).toBe(3);
    expect(result.stdout).toContain("FAIL aws-kms alias/app kms:DescribeKey — ");
  });
});

describe("kms init --provider vault + kms validate against the Vault emulator", () => {
  const TOKEN = "cli-test-vault-token";
  let vault: VaultEmulator;
  let address: string;
  beforeAll(async () => {
    vault = new VaultEmulator({ tokens: { [TOKEN]: { name: "app", paths: ["transit/*"] } } });
    address = (await vault.start()).replace(/\/$/, "");
    vault.createKey("app", { derived: true });
  });
  afterAll(() => vault.stop());

  it("writes auth.tokenFromEnv, never the token; validate reads VAULT_TOKEN through @kms/vault, and without it names the variable (exit 2)", async () => {
    const path = join(dir, "vault.json");
    const init = await kms(["init", "--yes", "--config", path, "--provider", "vault", "--key", "app", "--vault-address", address], { cwd: dir, env: { VAULT_TOKEN: TOKEN } });
    expect(init.stderr).toBe("");
    expect(init.stdout.split("\n")).toEqual([
      `wrote ${path}`,
      "PASS vault app update transit/datakey/plaintext/app",
      "PASS vault app update transit/encrypt/app",
      "PASS vault app update transit/decrypt/app",
      "PASS vault app read transit/keys/app",
      "PASS vault app derived=true transit/keys/app",
      "5 checks: 5 passed, 0 failed",
      "",
    ]);
    expect(init.code).toBe(0);
    expect(JSON.parse(readFileSync(path, "utf8"))).toEqual({
      providers: { vault: { endpoint: address, auth: { tokenFromEnv: "VAULT_TOKEN" } } },
      tenants: { defaultKey: { provider: "vault", keyId: "app" } },
      rotation: { cryptoperiodDays: 90 },
    });
    expect(readFileSync(path, "utf8")).not.toContain(TOKEN);

    const unset = await kms(["validate", "--config", path], { cwd: dir });
    expect(unset).toEqual({
      code: 2,
      stdout: "",
      stderr: `KMS_CONFIG_INVALID providers.vault.auth.tokenFromEnv: the environment variable VAULT_TOKEN is not set, or is empty (${docsUrlFor("KMS_CONFIG_INVALID")})\n`,
    });
    // No special case left in the CLI: a file without auth is a settings issue like any other.
    writeFileSync(path, JSON.stringify({ providers: { vault: { endpoint: address } }, tenants: { defaultKey: { provider: "vault", keyId: "app" } } }));
    const noAuth = await kms(["validate", "--config", path], { cwd: dir, env: { VAULT_TOKEN: TOKEN } });
    expect(noAuth.code).toBe(2);
    expect(noAuth.stderr).toBe(
      `KMS_CONFIG_INVALID providers.vault.auth: must be { token }, { tokenFromEnv } or { appRole: { roleId, secretId or secretIdFromEnv } } (${docsUrlFor("KMS_CONFIG_INVALID")})\n`,
    );
  });
});

describe("configuration and usage errors", () => {
  it("validate: one line per issue with code, path and docs link; exit 2", async () => {
    const path = join(dir, "bad.json");
    writeFileSync(path, JSON.stringify({ providers: { "aws-kms": { region: "nowhere" } }, tenants: { defaultKey: { provider: "aws-kms", keyId: "k" } } }));
    const result = await kms(["validate", "--config", path], { cwd: dir });
    expect(result.code).toBe(2);
    expect(result.stdout).toBe("");
    const url = docsUrlFor("KMS_CONFIG_INVALID");
    expect(result.stderr.split("\n")).toEqual([
      `KMS_CONFIG_INVALID providers.aws-kms.region: must be an AWS region such as us-east-1 (${url})`,
      expect.stringMatching(new RegExp(`^KMS_CONFIG_INVALID tenants\\.defaultKey\\.keyId: aws-kms: AWS KMS key ids are .+ \\(${url.replace(/[.?]/g, "\\$&")}\\)$`)),
      "",
    ]);
  });

  it("a missing file is a configuration error naming it (KMS_CONFIG_FILE env)", async () => {
    const result = await kms(["validate"], { cwd: dir, env: { KMS_CONFIG_FILE: "nope.json" } });
    expect(result.code).toBe(2);
    expect(result.stderr).toBe(`KMS_CONFIG_INVALID KMS_CONFIG_FILE: cannot read configuration file ${join(dir, "nope.json")} (ENOENT) (${docsUrlFor("KMS_CONFIG_INVALID")})\n`);
  });

  it("init refuses to overwrite without --force, and fails naming a missing flag with --yes", async () => {
    const path = join(dir, "exists.json");
    writeFileSync(path, "{}");
    const refused = await kms(["init", "--yes", "--config", path], { cwd: dir });
    expect(refused).toEqual({ code: 2, stdout: "", stderr: `error: ${path} already exists: pass --force to overwrite it\n` });
    expect(readFileSync(path, "utf8")).toBe("{}");
    const missing = await kms(["init", "--yes", "--config", join(dir, "new.json"), "--provider", "aws-kms"], { cwd: dir });
    expect(missing.code).toBe(2);
    expect(missing.stderr.split("\n")[0]).toBe("kms init: missing --key (no default with --provider aws-kms)");
    const wrong = await kms(["init", "--yes", "--config", join(dir, "new.json"), "--region", "us-east-1"], { cwd: dir });
    expect(wrong.stderr.split("\n")[0]).toBe("kms init: --region does not apply to --provider local");
    // Beyond core's cache.hardMaxAgeMs (3600000), which core would refuse: refused as the flag.
    const cache = await kms(["init", "--yes", "--config", join(dir, "new.json"), "--cache-max-age-ms", "7200000"], { cwd: dir });
    expect([cache.code, cache.stderr.split("\n")[0]]).toEqual([2, "kms init: --cache-max-age-ms: must be an integer from 1 to 3600000"]);
    const forced = await kms(["init", "--yes", "--force", "--no-validate", "--config", path], { cwd: dir });
    expect(forced).toEqual({ code: 0, stdout: `wrote ${path}\n`, stderr: "" });
  });

  it("unknown flag or command: usage on stderr, exit 2", async () => {
    const flag = await kms(["validate", "--bogus"], { cwd: dir });
    expect(flag).toEqual({
      code: 2,
      stdout: "",
      stderr: "kms validate: unknown option --bogus\nUsage: kms validate [--config F] [--json] [--evidence F [--hmac-key-env VAR]]\nRun `kms validate --help` for details.\n",
    });
    const command = await kms(["frobnicate"], { cwd: dir });
    expect(command.code).toBe(2);
    expect(command.stderr.split("\n")[0]).toBe('kms: unknown command "frobnicate"');
    expect(command.stderr).toContain("Usage: kms <command> [flags]");
    const version = await kms(["--version"], { cwd: dir });
    expect(version).toEqual({ code: 0, stdout: "0.0.0\n", stderr: "" });
  });
});

describe("the interactive wizard (on a pseudo-terminal)", () => {
  it("asks each question not given by a flag, asks again after a bad answer, and writes YAML", async () => {
    const path = join(dir, "wizard", "kms.yaml");
    const tty = kmsOnTty(["init", "--config", path, "--cache-capacity", "500"], { cwd: dir });
    await tty.waitFor("Provider (local, aws-kms, vault, gcp-kms, azure-key-vault)");
    tty.type("cloud\r");
    await tty.waitFor("must be one of local, aws-kms, vault, gcp-kms, azure-key-vault");
    await tty.waitFor("Provider");
    tty.type("local\r");
    await tty.waitFor("Key id of the default tenant key");
    tty.type("\r");
    await tty.waitFor("Local key store file");
    tty.type("keys/store.json\r");
    await tty.waitFor("Data key cache: max age of an entry, in ms [300000]");
    tty.type("7200000\r");
    await tty.waitFor("must be an integer from 1 to 3600000");
    await tty.waitFor("Data key cache: max age of an entry, in ms [300000]");
    tty.type("60000\r");
    await tty.waitFor("Rotate keys every N days (cryptoperiod) [90]");
    tty.type("0\r");
    await tty.waitFor("must be an integer from 1 to 3650");
    await tty.waitFor("Rotate keys every N days");
    tty.type("30\r");
    const { code, output } = await tty.done;
    expect(code).toBe(0);
    expect(output).toContain(`wrote ${path}`);
    expect(output).toContain("4 checks: 4 passed, 0 failed");
    expect(output).not.toContain("Data key cache: entries"); // given by --cache-capacity
    expect(readFileSync(path, "utf8")).toBe(
      [
        "providers:",
        "  local:",
        '    path: "keys/store.json"',
        "tenants:",
        "  defaultKey:",
        '    provider: "local"',
        '    keyId: "default"',
        "cache:",
        "  encrypt:",
        "    maxAgeMs: 60000",
        "    capacity: 500",
        "  decrypt:",
        "    maxAgeMs: 60000",
        "    capacity: 500",
        "rotation:",
        "  cryptoperiodDays: 30",
        "",
      ].join("\n"),
    );
    // The relative key store path is relative to the file's directory.
    expect(statSync(join(dir, "wizard", "keys", "store.json")).mode & 0o777).toBe(0o600);
  });
});
