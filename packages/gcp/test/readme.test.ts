import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "@jest/globals";
import { createKms } from "@kms/core";
import { GcpKmsEmulator } from "@kms/testkit/emulators";
import { gcpKms } from "../src";

/** The README's quick-start block, run as written (its import lines are served from the workspace). */
describe("README quick start", () => {
  it("runs against the emulator and prints the card number and the call counts", async () => {
    const readme = readFileSync(join(__dirname, "../README.md"), "utf8");
    const block = /## Quick start[\s\S]*?```ts\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(block).toBeDefined();
    const imports = ['import { createKms } from "@kms/core";\n', 'import { gcpKms } from "@kms/gcp";\n', 'import { GcpKmsEmulator } from "@kms/testkit/emulators";\n'];
    for (const line of imports) expect(block).toContain(line);
    const body = imports.reduce((text, line) => text.replace(line, ""), block!);
    const printed: unknown[] = [];
    const AsyncFunction = Object.getPrototypeOf(async () => {}).constructor as new (...args: string[]) => (...a: unknown[]) => Promise<void>;
    await new AsyncFunction("createKms", "gcpKms", "GcpKmsEmulator", "console", body)(createKms, gcpKms, GcpKmsEmulator, { log: (...a: unknown[]) => printed.push(...a) });
    expect(printed).toEqual(["4111 1111 1111 1111", { Encrypt: 1, Decrypt: 1 }]);
  });
});
