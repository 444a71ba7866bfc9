import { afterAll, beforeAll, describe, expect, it } from "@jest/globals";
import { createWriteStream, readFileSync, rmSync, writeFileSync } from "node:fs";
import { once } from "node:events";
import { join } from "node:path";
import { createKms, fromBase64Url, localKms, localKmsProvider, parseEnvelope, type KmsClient } from "@kms/core";
import { localSetup } from "./local";
import { kms, kmsOnTty } from "./run";

const COUNT = 100_000;
const CURRENT = 10;
const CONTEXT = { table: "notes" };
const { dir, store, raw } = localSetup("rewrap");
const input = join(dir, "envelopes.txt");
let client: KmsClient;

/** Writes `count` envelopes for tenant-a to the stream, one per line. */
async function writeEnvelopes(out: NodeJS.WritableStream, count: number, label: string): Promise<void> {
  for (let i = 0; i < count; i++) {
    const line = `${await client.encryptToBase64Url("tenant-a", `${label} ${i}`, CONTEXT)}\n`;
    if (!out.write(line)) await once(out, "drain");
  }
}

beforeAll(async () => {
  client = createKms({ registry: [localKms], config: raw, env: {} });
  const out = createWriteStream(input);
  await writeEnvelopes(out, COUNT, "before");
  // Rotate (version 2), then a few envelopes under the new version, which stay as they are.
  await localKmsProvider({ path: store }).rotateKey("default");
  client.invalidateKey("local", "default");
  await writeEnvelopes(out, CURRENT, "after");
  out.end();
  await once(out, "finish");
}, 60_000);

afterAll(async () => {
  await client.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Every output line decrypts to its message, under version 2, with the payload of its input line. */
async function checkOutput(path: string): Promise<void> {
  const before = readFileSync(input, "utf8").trimEnd().split("\n");
  const after = readFileSync(path, "utf8").trimEnd().split("\n");
  expect(after).toHaveLength(COUNT + CURRENT);
  const versions = new Set<string>();
  for (let i = 0; i < after.length; i++) {
    const envelope = fromBase64Url(after[i]!);
    const parsed = parseEnvelope(envelope);
    versions.add(parsed.keySection.keyVersion);
    const original = parseEnvelope(fromBase64Url(before[i]!));
    if (!Buffer.from(parsed.iv).equals(Buffer.from(original.iv))) throw new Error(`line ${i + 1}: the payload changed`);
    const plaintext = (await client.decrypt("tenant-a", envelope, CONTEXT)).toString();
    if (plaintext !== (i < COUNT ? `before ${i}` : `after ${i - COUNT}`)) throw new Error(`line ${i + 1} decrypts to the wrong message`);
  }
  expect([...versions]).toEqual(["2"]);
  expect(after.slice(COUNT)).toEqual(before.slice(COUNT)); // already current: copied as they were
}

describe("kms rewrap over 100,000 envelopes", () => {
  it("without a terminal: only the summary line; every envelope under the new version", async () => {
    const out = join(dir, "out-pipe.txt");
    const result = await kms(["rewrap", "--tenant", "tenant-a", "--context", "table=notes", "--in", input, "--out", out], { cwd: dir });
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(new RegExp(`^rewrapped ${COUNT} envelopes \\(${CURRENT} already current\\) in \\d+\\.\\d s\\n$`));
    await checkOutput(out);
  });

  it("on a terminal: a progress bar, then the summary", async () => {
    const out = join(dir, "out-tty.txt");
    const { code, output } = await kmsOnTty(["rewrap", "--tenant", "tenant-a", "--context", "table=notes", "--in", input, "--out", out], { cwd: dir }).done;
    expect(code).toBe(0);
    expect(output).toMatch(/\[[#.]{30}\]\s+\d{1,3}% \d+ envelopes/);
    expect(output).toMatch(new RegExp(`rewrapped ${COUNT} envelopes \\(${CURRENT} already current\\) in \\d+\\.\\d s\\r?\\n$`));
    await checkOutput(out);
  });

  it("a wrong context fails every envelope, leaves it as it was, and exits 1", async () => {
    const out = join(dir, "out-wrong.txt");
    const small = join(dir, "small.txt");
    const lines = readFileSync(input, "utf8").split("\n");
    writeFileSync(small, `${lines.slice(0, 3).join("\n")}\n`);
    const result = await kms(["rewrap", "--tenant", "tenant-a", "--in", small, "--out", out], { cwd: dir });
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(
      [1, 2, 3].map((n) => `failed line ${n}: ENVELOPE_AUTH_FAILED: The ciphertext cannot be decrypted with this tenant and context (left as it was)\n`).join(""),
    );
    expect(result.stdout).toMatch(/^rewrapped 0 envelopes \(0 already current, 3 failed\) in \d+\.\d s\n$/);
    expect(readFileSync(out, "utf8")).toBe(readFileSync(small, "utf8"));
  });
});
