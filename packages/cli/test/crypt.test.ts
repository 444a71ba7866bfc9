import { afterAll, describe, expect, it } from "@jest/globals";
import { randomBytes } from "node:crypto";
import { rmSync } from "node:fs";
import { docsUrlFor } from "@kms/core";
import { localSetup } from "./local";
import { kms, kmsBytes } from "./run";

const { dir } = localSetup("crypt");
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("kms encrypt | kms decrypt", () => {
  it("round-trips binary stdin with an encryption context", async () => {
    const plaintext = Buffer.concat([randomBytes(4096), Buffer.from([0, 255, 10, 13, 0])]);
    const enc = await kms(["encrypt", "--tenant", "tenant-a", "--context", "purpose=test", "--context", "row=42"], { cwd: dir, input: plaintext });
    expect(enc.stderr).toBe("");
    expect(enc.code).toBe(0);
    expect(enc.stdout).toMatch(/^[A-Za-z0-9_-]+\n$/);
    // Extra trailing whitespace is ignored; the context's order does not matter.
    const dec = await kmsBytes(["decrypt", "--tenant", "tenant-a", "--context", "row=42", "--context", "purpose=test"], { cwd: dir, input: `${enc.stdout}  \n` });
    expect(dec.stderr).toBe("");
    expect(dec.code).toBe(0);
    expect(dec.stdout.equals(plaintext)).toBe(true);
  });

  it("a wrong context or tenant: exit 1, ENVELOPE_AUTH_FAILED, nothing on stdout", async () => {
    const enc = await kms(["encrypt", "--tenant", "tenant-a", "--context", "purpose=test"], { cwd: dir, input: "secret text" });
    const line = `error ENVELOPE_AUTH_FAILED: The ciphertext cannot be decrypted with this tenant and context (${docsUrlFor("ENVELOPE_AUTH_FAILED")})\n`;
    expect(await kms(["decrypt", "--tenant", "tenant-a", "--context", "purpose=other"], { cwd: dir, input: enc.stdout })).toEqual({ code: 1, stdout: "", stderr: line });
    expect(await kms(["decrypt", "--tenant", "tenant-b", "--context", "purpose=test"], { cwd: dir, input: enc.stdout })).toEqual({ code: 1, stdout: "", stderr: line });
  });

  it("bad input: malformed envelope (exit 1), bad context flag and missing tenant (exit 2)", async () => {
    const malformed = await kms(["decrypt", "--tenant", "tenant-a"], { cwd: dir, input: "not an envelope!" });
    expect(malformed).toEqual({ code: 1, stdout: "", stderr: `error ENVELOPE_MALFORMED: The ciphertext is not a well-formed envelope (${docsUrlFor("ENVELOPE_MALFORMED")})\n` });
    const context = await kms(["encrypt", "--tenant", "tenant-a", "--context", "no-equals-sign"], { cwd: dir, input: "x" });
    expect(context.code).toBe(2);
    expect(context.stderr.split("\n")[0]).toBe("kms encrypt: --context #1 must be key=value with a non-empty key");
    const tenant = await kms(["encrypt"], { cwd: dir, input: "x" });
    expect(tenant.code).toBe(2);
    expect(tenant.stderr.split("\n")[0]).toBe("kms encrypt: missing --tenant");
    const reserved = await kms(["encrypt", "--tenant", "tenant-a", "--context", "kms:tenant=x"], { cwd: dir, input: "x" });
    expect(reserved).toEqual({ code: 1, stdout: "", stderr: `error INPUT_INVALID: encryption context keys starting with "kms:" are reserved (${docsUrlFor("INPUT_INVALID")})\n` });
  });
});
