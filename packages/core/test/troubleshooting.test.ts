import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "@jest/globals";
import { ERROR_CODES, KmsError, docsUrlFor } from "../src/errors";

const guide = readFileSync(join(__dirname, "../../../docs/setup/KMS_TROUBLESHOOTING.md"), "utf8");
const sections = new Map(
  guide
    .split(/^## /m)
    .slice(1)
    .map((s) => [s.slice(0, s.indexOf("\n")).trim(), s] as const),
);

describe("docs/setup/KMS_TROUBLESHOOTING.md", () => {
  it.each(Object.keys(ERROR_CODES))("has a complete section for %s", (code) => {
    const section = sections.get(code);
    expect(section).toBeDefined();
    expect(section).toMatch(/\*\*What it means\.\*\*/);
    expect(section).toMatch(/\*\*Usual causes\.\*\*/);
    expect(section).toMatch(/\*\*Fix\.\*\*/);
  });

  it("documents no code that does not exist", () => {
    expect([...sections.keys()].sort()).toEqual(Object.keys(ERROR_CODES).sort());
  });

  it("links each error to its own section's anchor", () => {
    const error = new KmsError("KMS_KEY_DISABLED", "key disabled");
    expect(error.docsUrl).toBe(docsUrlFor("KMS_KEY_DISABLED"));
    expect(error.docsUrl.endsWith("KMS_TROUBLESHOOTING.md#kms_key_disabled")).toBe(true);
    expect(error.message).toContain(error.docsUrl);
    expect(error.retryable).toBe(false);
  });
});
