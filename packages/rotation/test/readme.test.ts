import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "@jest/globals";
import { ManualClock, createKms, localKms, localKmsProvider } from "@kms/core";
import { createEvidenceLog, createRotationScheduler, exportEvidence, openFileEvidenceStore, rewrapEnvelopes, verifyExport } from "../src";

/** The README's quick-start block, run as written (its import lines are served from the workspace). */
describe("README quick start", () => {
  it("rotates the due key, re-wraps the envelope and verifies the evidence export", async () => {
    const readme = readFileSync(join(__dirname, "../README.md"), "utf8");
    const block = /## Quick start[\s\S]*?```ts\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(block).toBeDefined();
    const imports = block!.split("\n").filter((line) => line.startsWith("import "));
    expect(imports).toHaveLength(5);
    const body = block!.split("\n").filter((line) => !line.startsWith("import ")).join("\n");
    const printed: unknown[][] = [];
    const dirs: string[] = [];
    const tracked = (prefix: string) => {
      const dir = mkdtempSync(prefix);
      dirs.push(dir);
      return dir;
    };
    const AsyncFunction = Object.getPrototypeOf(async () => {}).constructor as new (...args: string[]) => (...a: unknown[]) => Promise<void>;
    const names = ["mkdtempSync", "tmpdir", "join", "ManualClock", "createKms", "localKms", "localKmsProvider", "createEvidenceLog", "createRotationScheduler", "exportEvidence", "openFileEvidenceStore", "rewrapEnvelopes", "verifyExport", "console"];
    try {
      await new AsyncFunction(...names, body)(tracked, tmpdir, join, ManualClock, createKms, localKms, localKmsProvider, createEvidenceLog, createRotationScheduler, exportEvidence, openFileEvidenceStore, rewrapEnvelopes, verifyExport, {
        log: (...args: unknown[]) => printed.push(args),
      });
    } finally {
      for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
    }
    // The printed values, as the README's comments say.
    expect(printed).toEqual([[1], ["card 4111"], [true, 3]]);
    const comments = [...body.matchAll(/console\.log\(.*\); \/\/ (.*)$/gm)].map((m) => m[1]);
    expect(comments).toEqual(["1", "card 4111", "true 3"]);
  });
});
