/**
 * `kms init --provider gcp-kms` for an emulator, the built CLI run as a child process against the
 * Cloud KMS emulator: `--endpoint https://localhost:PORT --ca-cert FILE` writes emulator mode (TLS
 * trusting that certificate only, no credentials), and its validate passes. Cloud KMS is never
 * reached in plaintext: an http endpoint is refused.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "@jest/globals";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GCP_RUNTIME_PERMISSIONS } from "@kms/gcp";
import { GcpKmsEmulator } from "@kms/testkit/emulators";
import { kms } from "./run";

let dir: string;
let emulator: GcpKmsEmulator;
let keyName: string;
let ca: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "kms-cli-gcp-"));
  emulator = new GcpKmsEmulator();
  await emulator.start();
  keyName = emulator.createKey("app");
  ca = join(dir, "emulator-ca.pem");
  writeFileSync(ca, emulator.ca);
});

afterAll(async () => {
  await emulator.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("kms init --provider gcp-kms against the Cloud KMS emulator", () => {
  const written = () => join(dir, "init.json");
  const init = (extra: readonly string[]) => kms(["init", "--yes", "--force", "--config", written(), "--provider", "gcp-kms", "--key", keyName, ...extra], { cwd: dir });

  beforeEach(() => {
    rmSync(written(), { force: true });
    emulator.resetLog();
  });

  // `localhost`, not 127.0.0.1: grpc-js sends the host as the TLS server name, and Node warns (DEP0123) for an IP there.
  it("--endpoint https://localhost:PORT --ca-cert FILE writes emulator: { caCert } (the PEM), and its validate passes over TLS", async () => {
    const result = await init(["--endpoint", `https://localhost:${emulator.port}`, "--ca-cert", ca]);
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    expect(result.stdout.split("\n")).toEqual([
      `wrote ${written()}`,
      ...GCP_RUNTIME_PERMISSIONS.map((p) => `PASS gcp-kms ${keyName} ${p}`),
      `${GCP_RUNTIME_PERMISSIONS.length} checks: ${GCP_RUNTIME_PERMISSIONS.length} passed, 0 failed`,
      "",
    ]);
    expect(JSON.parse(readFileSync(written(), "utf8"))).toEqual({
      providers: { "gcp-kms": { apiEndpoint: "localhost", port: emulator.port, emulator: { caCert: emulator.ca } } },
      tenants: { defaultKey: { provider: "gcp-kms", keyId: keyName } },
      rotation: { cryptoperiodDays: 90 },
    });
    expect(emulator.counts()).toEqual({ TestIamPermissions: 1 });
  });

  it("refuses a plaintext http endpoint, a file that is no certificate, a non-loopback emulator; exit 2, nothing written", async () => {
    const notPem = join(dir, "not-a-cert.pem");
    writeFileSync(notPem, "not a certificate\n");
    const cases: [readonly string[], string][] = [
      [
        ["--endpoint", `http://127.0.0.1:${emulator.port}`],
        "kms init: --endpoint: must be an https URL such as https://cloudkms.googleapis.com, or https://localhost:8085 for an emulator (with --ca-cert)",
      ],
      [["--endpoint", `https://localhost:${emulator.port}`, "--ca-cert", notPem], "kms init: --ca-cert: emulator.caCert: must be PEM text of a certificate (-----BEGIN CERTIFICATE----- …)"],
      [["--endpoint", `https://localhost:${emulator.port}`, "--ca-cert", join(dir, "missing.pem")], `kms init: --ca-cert: cannot read ${join(dir, "missing.pem")} (ENOENT)`],
      [
        ["--endpoint", "https://kms.example.com:8443", "--ca-cert", ca],
        "kms init: --ca-cert: apiEndpoint: with emulator, must be a loopback address (127.0.0.1, localhost or ::1)",
      ],
      [
        ["--ca-cert", ca],
        "kms init: --ca-cert: apiEndpoint: with emulator, must be a loopback address (127.0.0.1, localhost or ::1); port: with emulator, the emulator's port is required",
      ],
    ];
    for (const [extra, message] of cases) {
      const result = await init(extra);
      expect([result.code, result.stdout, result.stderr.split("\n")[0]]).toEqual([2, "", message]);
      expect(existsSync(written())).toBe(false);
    }
    const other = await kms(["init", "--yes", "--config", written(), "--provider", "local", "--ca-cert", ca], { cwd: dir });
    expect([other.code, other.stderr.split("\n")[0]]).toEqual([2, "kms init: --ca-cert does not apply to --provider local"]);
    expect(existsSync(written())).toBe(false);
    expect(emulator.count()).toBe(0);
  });
});
