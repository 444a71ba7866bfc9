// The scenarios themselves at a small scale: what they count must be exact. Nothing here is timed.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = "true";

import { afterAll, beforeAll, describe, expect, it } from "@jest/globals";
import { randomBytes } from "node:crypto";
import { RawAesKeyringNode, RawAesWrappingSuiteIdentifier } from "@aws-crypto/client-node";
import { AwsKmsEmulator } from "@kms/testkit/emulators";
import { runCacheOnce } from "../src/cache-sim";
import { inProcessControl } from "../src/emulator-control";
import { packageVersion } from "../src/machine";
import { type EmulatorControl, stampedeOnce } from "../src/stampede";
import { cachingCmm, esdkDecrypt, esdkEncrypt } from "../src/esdk";
import { ZipfSampler, seededRandom } from "../src/stats";
import { runWarm } from "../src/warm";

describe("stampede against the AWS KMS emulator (20 ms latency on every request)", () => {
  const emulator = new AwsKmsEmulator();
  let control: EmulatorControl;

  beforeAll(async () => {
    await emulator.start();
    const { arn } = emulator.createKey({ alias: "alias/bench" });
    emulator.inject("*", { kind: "latency", ms: 20 });
    control = inProcessControl(emulator, arn);
  });
  afterAll(() => emulator.stop());

  it("@kms: 500 concurrent cold encrypts make exactly one KMS call", async () => {
    const { kmsCalls } = await stampedeOnce(control, "kms", "encrypt", 500);
    expect(kmsCalls).toBe(1);
    expect(emulator.counts()).toEqual({ GenerateDataKey: 1 });
  });

  it("@kms: 500 concurrent cold decrypts of one envelope make exactly one KMS call", async () => {
    const { kmsCalls } = await stampedeOnce(control, "kms", "decrypt", 500);
    expect(kmsCalls).toBe(1);
    expect(emulator.counts()).toEqual({ Decrypt: 1 });
  });

  it("the AWS Encryption SDK's caching CMM makes one KMS call per concurrent cold request", async () => {
    const { kmsCalls } = await stampedeOnce(control, "esdk", "encrypt", 20);
    expect(kmsCalls).toBe(20);
    expect(emulator.counts()).toEqual({ GenerateDataKey: 20 });
  });

  it("one cold request is one KMS call on either side", async () => {
    expect((await stampedeOnce(control, "kms", "encrypt", 1)).kmsCalls).toBe(1);
    expect((await stampedeOnce(control, "esdk", "decrypt", 1)).kmsCalls).toBe(1);
  });
});

describe("warm scenario", () => {
  it("counts the ESDK keyring's calls: one per cold materials fetch, none once its cache is warm", async () => {
    const keyring = new RawAesKeyringNode({
      keyName: "k",
      keyNamespace: "test",
      unencryptedMasterKey: randomBytes(32),
      wrappingSuite: RawAesWrappingSuiteIdentifier.AES256_GCM_IV12_TAG16_NO_PADDING,
    });
    const esdk = cachingCmm(keyring);
    const plaintext = randomBytes(64);
    const sealed = await esdkEncrypt(esdk.cmm, plaintext, { tenant: "t" });
    await esdkEncrypt(esdk.cmm, plaintext, { tenant: "t" });
    expect(esdk.keyringCalls).toEqual({ encrypt: 1, decrypt: 0 });
    await esdkEncrypt(esdk.cmm, plaintext, { tenant: "u" }); // another context: another cache entry
    expect((await esdkDecrypt(esdk.cmm, sealed)).equals(plaintext)).toBe(true);
    await esdkDecrypt(esdk.cmm, sealed);
    expect(esdk.keyringCalls).toEqual({ encrypt: 2, decrypt: 1 });
  });

  it("measures cache hits only: no KMS call and no ESDK keyring call while timed", async () => {
    const result = await runWarm({ rounds: 2, sizes: [64, 1024], caseMs: 5 });
    expect(result.cells).toHaveLength(2 * 2 * 3);
    expect(result.kmsProviderCalls).toBe(0);
    expect(result.esdkBackingCalls).toBe(0);
    for (const cell of result.cells) {
      expect(cell.opsPerSec).toBeGreaterThan(0);
      // Every ratio is a ratio of two measured times (not a constant): positive and finite, its median inside its range.
      expect(Number.isFinite(cell.vsRaw) && cell.vsRaw > 0).toBe(true);
      expect(cell.vsRaw).toBeGreaterThanOrEqual(cell.vsRawRange[0]);
      expect(cell.vsRaw).toBeLessThanOrEqual(cell.vsRawRange[1]);
    }
    expect(Object.keys(result.esdkOverKms).sort()).toEqual(["decrypt:1024", "decrypt:64", "encrypt:1024", "encrypt:64"]);
  });
});

describe("cache scenario", () => {
  it("with the clock frozen and every tenant fitting, misses are exactly the distinct tenants drawn", async () => {
    const options = { tenants: 200, operations: 5000, zipfS: 1, capacity: 200, rate: 0, seed: 11, warmupOps: 1000 };
    // Replay the draws: same sampler, same seed.
    const zipf = new ZipfSampler(options.tenants, options.zipfS);
    const random = seededRandom(options.seed);
    const seen = new Set<number>();
    let seenAtWarmup = 0;
    for (let i = 0; i < options.operations; i++) {
      if (i === options.warmupOps) seenAtWarmup = seen.size;
      seen.add(zipf.sample(random));
    }
    const result = await runCacheOnce(options);
    expect(result.misses).toBe(seen.size);
    expect(result.providerCalls).toBe(seen.size);
    expect(result.hits).toBe(options.operations - seen.size);
    expect(result.steadyMisses).toBe(seen.size - seenAtWarmup);
  });

  it("never holds more entries than its capacity", async () => {
    const result = await runCacheOnce({ tenants: 500, operations: 20_000, zipfS: 1, capacity: 50, rate: 1000, seed: 3, warmupOps: 0 });
    expect(result.maxEntries).toBe(50);
    expect(result.misses).toBeGreaterThan(50);
  });

  it("with a moving clock, an entry expires at the max age: one tenant, one request per minute", async () => {
    // 5-minute max age, jitter up to 10 %: 20 minutes of one request a minute is 4 or 5 data keys.
    const result = await runCacheOnce({ tenants: 1, operations: 20, zipfS: 1, capacity: 10, rate: 1 / 60, seed: 5, warmupOps: 0 });
    expect(result.misses).toBeGreaterThanOrEqual(4);
    expect(result.misses).toBeLessThanOrEqual(5);
  });
});

describe("machine", () => {
  it("reads the versions of the packages measured", () => {
    expect(packageVersion("@aws-crypto/client-node")).toBe("5.0.2");
    expect(packageVersion("no-such-package-here")).toBe("not installed");
  });
});
