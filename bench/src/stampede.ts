/**
 * Scenario 2: the cold path and the stampede. N concurrent first requests for one tenant against the
 * AWS KMS emulator (real SDK, real wire protocol, SigV4 checked) with injected latency on every
 * request; the emulator's request log counts the KMS calls. For each N and each run, a new client
 * (cold caches) on each side:
 *
 * - `kms`: `createKms` with the `awsKms` provider definition, settings from the emulator;
 * - `esdk`: `@aws-crypto/client-node` with a `KmsKeyringNode` (a `KMSClient` pointed at the
 *   emulator) behind its caching materials manager.
 *
 * Encrypt: N concurrent encrypts of 1 KiB. Decrypt: N concurrent decrypts of one envelope written
 * beforehand by another client (so the decrypt side starts cold).
 */
import { randomBytes } from "node:crypto";
import { KmsKeyringNode } from "@aws-crypto/client-node";
import { KMS } from "@aws-sdk/client-kms";
import { awsKms } from "@kms/aws";
import { createKms } from "@kms/core";
import { cachingCmm, esdkDecrypt, esdkEncrypt } from "./esdk";
import { median } from "./stats";
import type { StampedeResult, StampedeRow, WarmOp } from "./types";

/** What the scenario needs from an emulator, wherever it runs (this process or another). */
export interface EmulatorControl {
  clientConfig: { region: string; endpoint: string; credentials: { accessKeyId: string; secretAccessKey: string } };
  /** The key's ARN (the ESDK's keyrings want an ARN or alias; ours takes either). */
  keyArn: string;
  /** Empties the request log. */
  resetLog(): Promise<void>;
  /** Requests in the log, all operations. */
  count(): Promise<number>;
}

export interface StampedeOptions {
  concurrency: readonly number[];
  /** Decrypt's levels, when not the same (the ESDK's 10,000 cold decrypts take half a minute a run). */
  decryptConcurrency?: readonly number[];
  runs: number;
  latencyMs: number;
}

const TENANT = "tenant-a";
const CONTEXT = { purpose: "bench" };

interface Side {
  encrypt(plaintext: Buffer): Promise<Buffer>;
  decrypt(envelope: Buffer): Promise<Buffer>;
  close(): Promise<void>;
}

function kmsSide(control: EmulatorControl): Side {
  const kms = createKms({
    registry: [awsKms],
    config: {
      providers: { "aws-kms": structuredClone(control.clientConfig) },
      tenants: { defaultKey: { provider: "aws-kms", keyId: control.keyArn } },
    },
    env: { NODE_ENV: "development" },
  });
  return {
    encrypt: (plaintext) => kms.encrypt(TENANT, plaintext, CONTEXT),
    decrypt: (envelope) => kms.decrypt(TENANT, envelope, CONTEXT),
    close: () => kms.close(),
  };
}

function esdkSide(control: EmulatorControl): Side {
  // The SDK's defaults otherwise (retries, HTTP agent), as an app would construct it.
  // A copy: the SDK writes into the credentials object it is given.
  const client = new KMS(structuredClone(control.clientConfig));
  const keyring = new KmsKeyringNode({ generatorKeyId: control.keyArn, clientProvider: () => client });
  // A new CMM has a new, empty cache of its own: the side starts cold.
  const { cmm } = cachingCmm(keyring);
  const encryptionContext = { tenant: TENANT, ...CONTEXT };
  return {
    encrypt: (plaintext) => esdkEncrypt(cmm, plaintext, encryptionContext),
    decrypt: (envelope) => esdkDecrypt(cmm, envelope),
    close: async () => client.destroy(),
  };
}

const SIDES = { kms: kmsSide, esdk: esdkSide };

/** One stampede: a cold client, N concurrent requests; resolves with calls made and time taken. */
export async function stampedeOnce(control: EmulatorControl, impl: "kms" | "esdk", op: WarmOp, concurrency: number): Promise<{ kmsCalls: number; timeMs: number }> {
  const plaintext = randomBytes(1024);
  let envelope: Buffer | undefined;
  if (op === "decrypt") {
    const writer = SIDES[impl](control);
    try {
      envelope = await writer.encrypt(plaintext);
    } finally {
      await writer.close();
    }
  }
  const side = SIDES[impl](control);
  try {
    await control.resetLog();
    const t0 = process.hrtime.bigint();
    const results = await Promise.all(
      Array.from({ length: concurrency }, () => (op === "encrypt" ? side.encrypt(plaintext) : side.decrypt(envelope!))),
    );
    const timeMs = Number(process.hrtime.bigint() - t0) / 1e6;
    const kmsCalls = await control.count();
    if (op === "decrypt" && !results.every((r) => r.equals(plaintext))) throw new Error(`${impl}: a decrypt returned the wrong plaintext`);
    return { kmsCalls, timeMs };
  } finally {
    await side.close();
  }
}

export async function runStampede(control: EmulatorControl, options: StampedeOptions): Promise<StampedeResult> {
  const rows: StampedeRow[] = [];
  for (const op of ["encrypt", "decrypt"] as const) {
    for (const concurrency of op === "decrypt" ? (options.decryptConcurrency ?? options.concurrency) : options.concurrency) {
      for (const impl of ["kms", "esdk"] as const) {
        const runs: { kmsCalls: number; timeMs: number }[] = [];
        for (let run = 0; run < options.runs; run++) runs.push(await stampedeOnce(control, impl, op, concurrency));
        const calls = runs.map((r) => r.kmsCalls);
        const times = runs.map((r) => r.timeMs);
        rows.push({
          concurrency,
          op,
          impl,
          kmsCalls: median(calls),
          kmsCallsRange: [Math.min(...calls), Math.max(...calls)],
          timeMs: median(times),
          timeMsRange: [Math.min(...times), Math.max(...times)],
        });
      }
    }
  }
  return { runs: options.runs, latencyMs: options.latencyMs, rows };
}
