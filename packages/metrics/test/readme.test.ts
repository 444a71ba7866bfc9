import { readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { inspect } from "node:util";
import * as fs from "node:fs";
import { describe, expect, it } from "@jest/globals";
import { createKms, localKms } from "@kms/core";
import { Registry } from "prom-client";
import { registerKmsMetrics } from "../src";

/** The README's quick-start block, run as written (its import lines are served from the workspace). */
describe("README quick start", () => {
  it("runs and prints what the README says", async () => {
    const readme = readFileSync(join(__dirname, "../README.md"), "utf8");
    const [, block, output] = /## Quick start[\s\S]*?```ts\n([\s\S]*?)```\s*prints\s*```\n([\s\S]*?)```/.exec(readme) ?? [];
    expect(block).toBeDefined();
    const imports = [
      'import { mkdtempSync } from "node:fs";\n',
      'import { tmpdir } from "node:os";\n',
      'import { join } from "node:path";\n',
      'import { createKms, localKms } from "@kms/core";\n',
      'import { registerKmsMetrics } from "@kms/metrics";\n',
      'import { Registry } from "prom-client";\n',
    ];
    for (const line of imports) expect(block).toContain(line);
    const body = imports.reduce((text, line) => text.replace(line, ""), block!);
    const printed: unknown[] = [];
    const AsyncFunction = Object.getPrototypeOf(async () => {}).constructor as new (...args: string[]) => (...a: unknown[]) => Promise<void>;
    const created: string[] = [];
    const mkdtempSync = (prefix: string) => {
      const dir = fs.mkdtempSync(prefix);
      created.push(dir);
      return dir;
    };
    try {
      await new AsyncFunction("mkdtempSync", "tmpdir", "join", "createKms", "localKms", "registerKmsMetrics", "Registry", "console", body)(
        mkdtempSync,
        tmpdir,
        join,
        createKms,
        localKms,
        registerKmsMetrics,
        Registry,
        { log: (...a: unknown[]) => printed.push(...a) },
      );
    } finally {
      for (const dir of created) fs.rmSync(dir, { recursive: true, force: true });
    }
    // console.log formats its argument with util.inspect: the README shows exactly that.
    expect(printed.map((value) => inspect(value))).toEqual([output!.trim()]);
  });
});
