import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "@jest/globals";
import { createClient } from "@keyv/redis";
import * as core from "../src/index";

/**
 * Runs the README's first ts block under `heading` as written (its import line is served from this
 * package; the local key store goes to a temporary directory); returns what it printed.
 */
async function runBlock(heading: string, check: (dir: string) => void = () => {}, replace: [string, string][] = []): Promise<unknown[]> {
  const readme = readFileSync(join(__dirname, "../README.md"), "utf8");
  const block = new RegExp(`## ${heading}[\\s\\S]*?\`\`\`ts\\n([\\s\\S]*?)\`\`\``).exec(readme)?.[1];
  expect(block).toBeDefined();
  const importLine = 'import { createKms, localKms } from "@kms/core";\n';
  expect(block).toContain(importLine);
  const dir = mkdtempSync(join(tmpdir(), "kms-readme-"));
  const printed: unknown[] = [];
  try {
    let body = block!.replace(importLine, "").replace('".kms/local-keys.json"', JSON.stringify(join(dir, "keys.json")));
    for (const [from, to] of replace) {
      expect(body).toContain(from);
      body = body.replace(from, to);
    }
    const AsyncFunction = Object.getPrototypeOf(async () => {}).constructor as new (...args: string[]) => (...a: unknown[]) => Promise<void>;
    await new AsyncFunction("createKms", "localKms", "console", body)(core.createKms, core.localKms, { log: (...a: unknown[]) => printed.push(...a) });
    check(dir);
    return printed;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe("README", () => {
  it("quick start: runs and prints the decrypted card number", async () => {
    const printed = await runBlock("Quick start", (dir) => expect(statSync(join(dir, "keys.json")).mode & 0o777).toBe(0o600));
    expect(printed).toEqual(["4111 1111 1111 1111"]);
  });

  it("shared cache tier: runs against the Redis on 127.0.0.1 and prints what it says", async () => {
    // A namespace of this run's own (a run's local key store is new, so an earlier run's entries would not open).
    const prefix = `readme-${process.pid}-${Date.now()}`;
    const redisUrl = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
    const printed = await runBlock("Shared cache tier", undefined, [
      ['keyPrefix: "readme"', `keyPrefix: ${JSON.stringify(prefix)}`],
      ['"redis://127.0.0.1:6379"', JSON.stringify(redisUrl)],
    ]);
    expect(printed).toEqual(["shared between instances", { status: "up" }]);
    const redis = createClient({ url: redisUrl });
    await redis.connect();
    const names = await redis.keys(`${prefix}::*`);
    expect(names.length).toBeGreaterThan(0);
    await redis.del(names);
    redis.destroy();
  });
});
