import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "@jest/globals";
import * as core from "../src/index";

/** The README's quick-start block, run as written (its import line is served from this package). */
describe("README quick start", () => {
  it("runs and prints the decrypted card number", async () => {
    const readme = readFileSync(join(__dirname, "../README.md"), "utf8");
    const block = /## Quick start[\s\S]*?```ts\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(block).toBeDefined();
    const importLine = 'import { createKms, localKms } from "@kms/core";\n';
    expect(block).toContain(importLine);
    const dir = mkdtempSync(join(tmpdir(), "kms-readme-"));
    const printed: unknown[] = [];
    try {
      const body = block!.replace(importLine, "").replace('".kms/local-keys.json"', JSON.stringify(join(dir, "keys.json")));
      const AsyncFunction = Object.getPrototypeOf(async () => {}).constructor as new (...args: string[]) => (...a: unknown[]) => Promise<void>;
      await new AsyncFunction("createKms", "localKms", "console", body)(core.createKms, core.localKms, { log: (...a: unknown[]) => printed.push(...a) });
      expect(printed).toEqual(["4111 1111 1111 1111"]);
      expect(statSync(join(dir, "keys.json")).mode & 0o777).toBe(0o600);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
