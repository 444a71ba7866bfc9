/**
 * Scenario 1: warm-cache encrypt and decrypt at several sizes, three implementations on the same
 * plaintexts in the same process:
 *
 * - `raw`: bare node:crypto AES-256-GCM, the floor. It does what any hand-rolled envelope must: an
 *   IV from a pooled CSPRNG block (as @kms does; a randomBytes(12) per message would cost the floor
 *   more than the cipher at 1 KiB), an AAD binding tenant and context, and one output buffer
 *   IV ‖ ciphertext ‖ tag. Synchronous: no promise.
 * - `kms`: this toolkit's `kms.encrypt` / `kms.decrypt` through `createKms` (local provider) with its
 *   data-key caches warm.
 * - `esdk`: `@aws-crypto/client-node` with a raw AES keyring behind its caching materials manager,
 *   warm (see esdk.ts for the suite).
 *
 * Every implementation takes a Buffer plaintext and returns one Buffer; decrypt returns the plaintext.
 * Rounds interleave the implementations (size by size), so a disturbance hits all three alike; each
 * figure is the median over the rounds, each ratio the median of the rounds' own ratios.
 */
import { createCipheriv, createDecipheriv, randomBytes, randomFillSync } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RawAesKeyringNode, RawAesWrappingSuiteIdentifier } from "@aws-crypto/client-node";
import { createKms, localKms } from "@kms/core";
import { cachingCmm, esdkDecrypt, esdkEncrypt } from "./esdk";
import { measure } from "./measure";
import { type TimingSummary, median } from "./stats";
import type { Impl, WarmCell, WarmOp, WarmResult } from "./types";

export const WARM_SIZES = [64, 1024, 64 * 1024, 1024 * 1024] as const;
export const IMPLS: readonly Impl[] = ["raw", "kms", "esdk"];
export const OPS: readonly WarmOp[] = ["encrypt", "decrypt"];

const TENANT = "tenant-a";
const CONTEXT = { purpose: "bench", region: "eu-west-1" };

export interface WarmOptions {
  rounds: number;
  sizes?: readonly number[];
  /** Wall time per case and round, ms. */
  caseMs: number;
}

// --- the floor ---------------------------------------------------------------------------------

let ivPool = Buffer.alloc(0);
let ivOffset = 0;
function writeIv(target: Buffer): void {
  if (ivOffset + 12 > ivPool.length) {
    ivPool = randomFillSync(Buffer.allocUnsafeSlow(12 * 1024));
    ivOffset = 0;
  }
  ivPool.copy(target, 0, ivOffset, ivOffset + 12);
  ivOffset += 12;
}

export function rawAesGcm(key: Buffer, aad: Buffer) {
  return {
    encrypt(plaintext: Buffer): Buffer {
      const out = Buffer.allocUnsafe(12 + plaintext.length + 16);
      writeIv(out);
      const cipher = createCipheriv("aes-256-gcm", key, out.subarray(0, 12));
      cipher.setAAD(aad);
      const ct = cipher.update(plaintext);
      cipher.final();
      ct.copy(out, 12);
      cipher.getAuthTag().copy(out, 12 + plaintext.length);
      return out;
    },
    decrypt(sealed: Buffer): Buffer {
      const decipher = createDecipheriv("aes-256-gcm", key, sealed.subarray(0, 12), { authTagLength: 16 });
      decipher.setAuthTag(sealed.subarray(sealed.length - 16));
      decipher.setAAD(aad);
      const pt = decipher.update(sealed.subarray(12, sealed.length - 16));
      decipher.final();
      return pt;
    },
  };
}

/** Operations per round: enough for a stable p99 at small sizes; the time box decides at 1 MiB. */
function maxOpsFor(size: number): number {
  if (size <= 1024) return 20_000;
  if (size <= 64 * 1024) return 4_000;
  return 400;
}

export async function runWarm(options: WarmOptions): Promise<WarmResult> {
  const sizes = options.sizes ?? WARM_SIZES;
  const dir = mkdtempSync(join(tmpdir(), "kms-bench-warm-"));
  const kms = createKms({
    registry: [localKms],
    config: {
      providers: { local: { path: join(dir, "keys.json") } },
      tenants: { defaultKey: { provider: "local", keyId: "bench" } },
    },
    env: { NODE_ENV: "development" },
  });
  // Cache misses (each one a KMS call). Read from cacheStats: an event listener would make core
  // time every cache hit for its `lookupMs`, which is not the warm path an app without one gets.
  const kmsMisses = () => {
    const stats = kms.cacheStats();
    return stats.encrypt.misses + stats.decrypt.misses;
  };
  const raw = rawAesGcm(randomBytes(32), Buffer.from(JSON.stringify([TENANT, CONTEXT])));
  const keyring = new RawAesKeyringNode({
    keyName: "bench-key",
    keyNamespace: "bench",
    unencryptedMasterKey: randomBytes(32),
    wrappingSuite: RawAesWrappingSuiteIdentifier.AES256_GCM_IV12_TAG16_NO_PADDING,
  });
  const esdk = cachingCmm(keyring);
  const esdkCalls = () => esdk.keyringCalls.encrypt + esdk.keyringCalls.decrypt;
  const esdkContext = { tenant: TENANT, ...CONTEXT };

  // samples[op:size:impl] = one TimingSummary per round
  const perRound = new Map<string, TimingSummary[]>();
  let kmsCallsBefore = 0;
  let kmsCallsAfter = 0;
  let esdkCallsBefore = 0;
  try {
    const inputs = new Map<number, { plaintext: Buffer; raw: Buffer; kms: Buffer; esdk: Buffer }>();
    for (const size of sizes) {
      const plaintext = randomBytes(size);
      const input = {
        plaintext,
        raw: raw.encrypt(plaintext),
        kms: await kms.encrypt(TENANT, plaintext, CONTEXT),
        esdk: await esdkEncrypt(esdk.cmm, plaintext, esdkContext),
      };
      // Every implementation round-trips before anything is timed (and every cache is warm).
      if (!raw.decrypt(input.raw).equals(plaintext)) throw new Error("raw AES-GCM round trip failed");
      if (!(await kms.decrypt(TENANT, input.kms, CONTEXT)).equals(plaintext)) throw new Error("kms round trip failed");
      if (!(await esdkDecrypt(esdk.cmm, input.esdk)).equals(plaintext)) throw new Error("ESDK round trip failed");
      inputs.set(size, input);
    }
    kmsCallsBefore = kmsMisses();
    esdkCallsBefore = esdkCalls();

    const fns = (size: number): Record<`${WarmOp}:${Impl}`, () => unknown> => {
      const input = inputs.get(size)!;
      return {
        "encrypt:raw": () => raw.encrypt(input.plaintext),
        "encrypt:kms": () => kms.encrypt(TENANT, input.plaintext, CONTEXT),
        "encrypt:esdk": () => esdkEncrypt(esdk.cmm, input.plaintext, esdkContext),
        "decrypt:raw": () => raw.decrypt(input.raw),
        "decrypt:kms": () => kms.decrypt(TENANT, input.kms, CONTEXT),
        "decrypt:esdk": () => esdkDecrypt(esdk.cmm, input.esdk),
      };
    };

    for (const size of sizes) {
      const cases = fns(size);
      const maxOps = maxOpsFor(size);
      for (let round = 0; round < options.rounds; round++) {
        for (const op of OPS) {
          for (const impl of IMPLS) {
            const result = await measure(cases[`${op}:${impl}`], { maxOps, maxMs: options.caseMs, warmup: Math.min(200, maxOps / 10) });
            const key = `${op}:${size}:${impl}`;
            if (!perRound.has(key)) perRound.set(key, []);
            perRound.get(key)!.push(result);
          }
        }
      }
    }
    kmsCallsAfter = kmsMisses();
  } finally {
    await kms.close();
    rmSync(dir, { recursive: true, force: true });
  }

  const cells: WarmCell[] = [];
  const esdkOverKms: Record<string, number> = {};
  const esdkOverKmsRange: Record<string, [number, number]> = {};
  for (const size of sizes) {
    for (const op of OPS) {
      const rawRounds = perRound.get(`${op}:${size}:raw`)!;
      for (const impl of IMPLS) {
        const rounds = perRound.get(`${op}:${size}:${impl}`)!;
        const ratios = rounds.map((r, i) => r.meanUs / rawRounds[i]!.meanUs);
        cells.push({
          size,
          op,
          impl,
          opsPerSec: median(rounds.map((r) => r.opsPerSec)),
          p50Us: median(rounds.map((r) => r.p50Us)),
          p99Us: median(rounds.map((r) => r.p99Us)),
          vsRaw: median(ratios),
          vsRawRange: [Math.min(...ratios), Math.max(...ratios)],
        });
      }
      const kmsRounds = perRound.get(`${op}:${size}:kms`)!;
      const esdkRounds = perRound.get(`${op}:${size}:esdk`)!;
      const ratios = esdkRounds.map((r, i) => r.meanUs / kmsRounds[i]!.meanUs);
      esdkOverKms[`${op}:${size}`] = median(ratios);
      esdkOverKmsRange[`${op}:${size}`] = [Math.min(...ratios), Math.max(...ratios)];
    }
  }
  return {
    rounds: options.rounds,
    cells,
    esdkOverKms,
    esdkOverKmsRange,
    esdkBackingCalls: esdkCalls() - esdkCallsBefore,
    kmsProviderCalls: kmsCallsAfter - kmsCallsBefore,
  };
}
