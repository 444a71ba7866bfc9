import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "@jest/globals";
import { createKms } from "@kms/core";
import { VaultEmulator } from "@kms/testkit/emulators";
import { vaultKms } from "../src";

/** The README's quick-start block, run as written (its imports are served from the workspace). */
describe("README quick start", () => {
  it("runs against the emulator and prints the decrypted card number and the Vault call counts", async () => {
    const readme = readFileSync(join(__dirname, "../README.md"), "utf8");
    const block = /## Quick start[\s\S]*?```ts\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(block).toBeDefined();
    const imports = ['import { createKms } from "@kms/core";\n', 'import { vaultKms } from "@kms/vault";\n', 'import { VaultEmulator } from "@kms/testkit/emulators";\n'];
    for (const line of imports) expect(block).toContain(line);
    const body = imports.reduce((text, line) => text.replace(line, ""), block!);
    const printed: unknown[] = [];
    const AsyncFunction = Object.getPrototypeOf(async () => {}).constructor as new (...args: string[]) => (...a: unknown[]) => Promise<void>;
    await new AsyncFunction("createKms", "vaultKms", "VaultEmulator", "console", body)(createKms, vaultKms, VaultEmulator, {
      log: (...a: unknown[]) => printed.push(...a),
    });
    expect(printed).toEqual(["4111 1111 1111 1111", { "keys.read": 1, datakey: 1, decrypt: 1 }]);
  });
});
