import { promises as fsp } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, jest } from "@jest/globals";
import { type LocalKmsProvider, localKmsProvider } from "@kms/core";
import { type FaultHook, describeProviderConformance } from "../src";

let dir: string;
let n = 0;
/** A new key store path for each provider; the directory is removed after the file's tests. */
const newStorePath = () => join(dir, `store-${++n}`, "keys.json");

beforeAll(async () => {
  dir = await fsp.mkdtemp(join(tmpdir(), "kms-testkit-local-"));
});

afterAll(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

/**
 * An outage of the disk under the store: every file opened in the store's directory (the store, its
 * lock, a write's temporary file) fails with EIO, a transient error. (A real fault such as a store
 * path under a regular file gives ENOTDIR, which the provider rightly reports as permanent, not
 * retryable: a misconfiguration rather than an outage.)
 */
const makeUnavailable: FaultHook<LocalKmsProvider> = (provider) => {
  const storeDir = dirname(provider.path);
  const realOpen = fsp.open;
  const spy = jest.spyOn(fsp, "open").mockImplementation(((path: Parameters<typeof fsp.open>[0], ...rest: never[]) =>
    dirname(String(path)) === storeDir
      ? Promise.reject(Object.assign(new Error(`EIO: i/o error, open '${String(path)}'`), { code: "EIO", syscall: "open", path: String(path) }))
      : realOpen(path, ...rest)) as typeof fsp.open);
  return () => spy.mockRestore();
};

/**
 * The provider refuses a store with any group or other mode bit (its keys may have leaked). A real
 * denial, and one that holds for root too, whom a chmod 000 would not stop.
 */
const denyAccess: FaultHook<LocalKmsProvider> = async (provider) => {
  await fsp.chmod(provider.path, 0o644);
  return () => fsp.chmod(provider.path, 0o600);
};

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
      makeUnavailable,
      denyAccess,
    },
  },
);

// The development default (auto-created keys), without fault hooks: a missing key id cannot be
// produced, so that case is not registered, nor are the hooks' cases, and the summary says why.
const defaults = describeProviderConformance(
  "local (autoCreateKeys)",
  () => ({ provider: localKmsProvider({ path: newStorePath() }), keyId: "conformance-key" }),
  { capabilities: { encryptionContext: true, rotation: true } },
);

/** The cases registered only with a fault hook. */
const HOOK_CASES = [
  "a key id that does not exist fails with KMS_KEY_NOT_FOUND",
  "a disabled key fails with KMS_KEY_DISABLED and is described as disabled",
  "an outage fails every call with a retryable KMS_UNAVAILABLE, and the provider works again once it ends",
  "checkHealth reports healthy: false during an outage, without throwing",
  "denied access fails every call with KMS_ACCESS_DENIED, not retryable, and the provider works again once restored",
  "validatePermissions reports denied access as a failing check with a remediation, without throwing",
];

describe("the conformance suite itself", () => {
  it("registers every case, in order, when every capability and hook is given", () => {
    expect(strict.notRun).toEqual([]);
    expect(strict.name).toBe("KmsProvider conformance: local");
    expect(strict.registered).toEqual([
      "declares a valid id and the capabilities it was tested for",
      "generateDataKey returns a fresh 32-byte key, a non-empty wrapped key and a key version",
      "wrapDataKey / unwrapDataKey round-trips a 32-byte key",
      "wrapDataKey rejects a key that is not 32 bytes with INPUT_INVALID",
      "unwrap with a different encryption context fails with ENVELOPE_AUTH_FAILED",
      "the encryption context is order-independent",
      "unwrap of a tampered or truncated wrapped key fails with ENVELOPE_AUTH_FAILED",
      ...HOOK_CASES,
      "describeKey reports the key, enabled, with its current version",
      "rotateKey: new wraps carry the new version, old wrapped keys still unwrap",
      "checkHealth is healthy for a good key, with a short detail",
      "validatePermissions is all ok for a good key",
      "concurrent calls each get their own data key",
      "no error carries the plaintext key (hex, base64, base64url) in its message, JSON or cause",
      "close() is idempotent and later calls fail with KMS_CLOSED",
      "createKms: envelope round trip",
      "createKms: tenant A's envelope decrypted as tenant B fails with ENVELOPE_AUTH_FAILED",
      "createKms: a different encryption context fails with ENVELOPE_AUTH_FAILED",
      "createKms: envelopes under an old key version still decrypt after rotateKey",
    ]);
  });

  it("records cases it could not run, with the reason, in the summary and the suite name", () => {
    expect(defaults.notRun).toEqual([
      { case: "missing key → KMS_KEY_NOT_FOUND", reason: "no faults.missingKeyId hook" },
      { case: "disabled key → KMS_KEY_DISABLED", reason: "no faults.disabledKeyId hook" },
      { case: "outage → KMS_UNAVAILABLE", reason: "no faults.makeUnavailable hook" },
      { case: "checkHealth during an outage", reason: "no faults.makeUnavailable hook" },
      { case: "access denied → KMS_ACCESS_DENIED", reason: "no faults.denyAccess hook" },
      { case: "validatePermissions with access denied", reason: "no faults.denyAccess hook" },
    ]);
    expect(defaults.name).toBe(
      "KmsProvider conformance: local (autoCreateKeys) (not run: " +
        "missing key → KMS_KEY_NOT_FOUND: no faults.missingKeyId hook; " +
        "disabled key → KMS_KEY_DISABLED: no faults.disabledKeyId hook; " +
        "outage → KMS_UNAVAILABLE: no faults.makeUnavailable hook; " +
        "checkHealth during an outage: no faults.makeUnavailable hook; " +
        "access denied → KMS_ACCESS_DENIED: no faults.denyAccess hook; " +
        "validatePermissions with access denied: no faults.denyAccess hook)",
    );
    expect(defaults.registered).toEqual(strict.registered.filter((title) => !HOOK_CASES.includes(title)));
  });
});
