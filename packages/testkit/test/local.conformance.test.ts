import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "@jest/globals";
import { localKmsProvider } from "@kms/core";
import { describeProviderConformance } from "../src";

let dir: string;
let n = 0;
/** A new key store path for each provider; the directory is removed after the file's tests. */
const newStorePath = () => join(dir, `store-${++n}`, "keys.json");

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "kms-testkit-local-"));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

// The full suite: keys are provisioned explicitly, so unknown key ids really are unknown.
const strict = describeProviderConformance(
  "local",
  async () => {
    const provider = localKmsProvider({ path: newStorePath(), autoCreateKeys: false });
    await provider.createKey("conformance-key");
    return { provider, keyId: "conformance-key" };
  },
  {
    capabilities: { encryptionContext: true, rotation: true, generatesDataKeys: true },
    faults: {
      missingKeyId: () => "no-such-key",
      disabledKeyId: async (provider) => {
        await provider.createKey("disabled-key");
        await provider.disableKey("disabled-key");
        return "disabled-key";
      },
    },
  },
);

// The development default (auto-created keys): a missing key id cannot be produced, so that case is
// not registered and the summary says why.
const defaults = describeProviderConformance(
  "local (autoCreateKeys)",
  () => ({ provider: localKmsProvider({ path: newStorePath() }), keyId: "conformance-key" }),
  { capabilities: { encryptionContext: true, rotation: true } },
);

describe("the conformance suite itself", () => {
  it("registers every case when every hook is given", () => {
    expect(strict.notRun).toEqual([]);
    expect(strict.registered).toEqual(
      expect.arrayContaining([
        "a key id that does not exist fails with KMS_KEY_NOT_FOUND",
        "a disabled key fails with KMS_KEY_DISABLED and is described as disabled",
        "createKms: envelopes under an old key version still decrypt after rotateKey",
      ]),
    );
    expect(strict.registered.length).toBeGreaterThanOrEqual(20);
  });

  it("records cases it could not run, with the reason, in the summary and the suite name", () => {
    expect(defaults.notRun).toEqual([
      { case: "missing key → KMS_KEY_NOT_FOUND", reason: "no faults.missingKeyId hook" },
      { case: "disabled key → KMS_KEY_DISABLED", reason: "no faults.disabledKeyId hook" },
    ]);
    expect(defaults.name).toContain("not run: missing key → KMS_KEY_NOT_FOUND: no faults.missingKeyId hook");
    expect(defaults.registered).toHaveLength(strict.registered.length - 2);
  });
});
