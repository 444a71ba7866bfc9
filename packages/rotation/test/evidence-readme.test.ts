import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "@jest/globals";
import { ManualClock } from "@kms/core";
import { createEvidenceLog, CSV_COLUMNS, memoryEvidenceStore } from "../src/evidence";

/** The README's "Evidence log" section documents the hashed bytes; the code must produce exactly those. */
describe("README: evidence log", () => {
  const readme = readFileSync(join(__dirname, "../README.md"), "utf8");
  const section = readme.slice(readme.indexOf("## Evidence log"));

  it("documents the canonical bytes of a first record, byte for byte", async () => {
    const [, bytes] = /hashes exactly these bytes:\n\n```\n(.*)\n```/.exec(section) ?? [];
    expect(bytes).toBeDefined();
    const log = createEvidenceLog({ store: memoryEvidenceStore(), clock: new ManualClock(Date.UTC(2026, 0, 1)) });
    const record = await log.append({ type: "config.loaded", actor: "cli", outcome: "success" });
    expect(record.hash).toBe(createHash("sha256").update(bytes!, "utf8").digest("hex"));
    expect(record.hash).toBe("a0497a0076aa919b054f12c23298b5176541ac3f2f7dc717d30b2d14c8602f5b");
  });

  it("documents the CSV header", () => {
    expect(section).toContain(`header \`${CSV_COLUMNS.join(",")}\``);
  });
});
