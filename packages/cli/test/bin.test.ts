/**
 * bin.ts's last resort: a failure `main` does not turn into the CLI's lines itself (here stdout's
 * `write` throwing, made so by a `--require` preload in the child) is shown by its name, or for a
 * KmsError by its code and core's public text; never by its message.
 */
import { afterAll, describe, expect, it } from "@jest/globals";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PUBLIC_MESSAGES } from "@kms/core";
import { kms } from "./run";

const SECRET = "a secret the message quotes";
const CORE = join(__dirname, "..", "..", "core", "dist", "index.js");
const dir = mkdtempSync(join(tmpdir(), "kms-cli-bin-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** `kms --version` with stdout's `write` throwing what `thrown` (JavaScript) makes. */
async function versionThrowing(thrown: string) {
  const preload = join(dir, `preload-${Math.random().toString(36).slice(2)}.js`);
  writeFileSync(preload, `process.stdout.write = () => { throw ${thrown}; };\n`);
  return kms(["--version"], { cwd: dir, env: { NODE_OPTIONS: `--require ${preload}` } });
}

describe("an unexpected failure in bin.ts", () => {
  it("names a foreign error without its message (exit 1)", async () => {
    const result = await versionThrowing(`new TypeError(${JSON.stringify(SECRET)})`);
    expect(result).toEqual({ code: 1, stdout: "", stderr: "error: unexpected failure (TypeError)\n" });
  });

  it("shows a KmsError by its name, code and public text (exit 1)", async () => {
    const result = await versionThrowing(`new (require(${JSON.stringify(CORE)}).KmsError)("KMS_PROVIDER_ERROR", ${JSON.stringify(SECRET)})`);
    expect(result).toEqual({ code: 1, stdout: "", stderr: `error: unexpected failure (KmsError KMS_PROVIDER_ERROR: ${PUBLIC_MESSAGES.KMS_PROVIDER_ERROR})\n` });
  });
});
