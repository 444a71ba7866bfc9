/**
 * Property and fuzz tests for the envelope: single-bit flips and truncations never decrypt, and
 * parseEnvelope survives 100,000 hostile inputs with nothing but ENVELOPE_MALFORMED.
 */
import crypto from "node:crypto";
import { describe, expect, it, jest } from "@jest/globals";
import fc from "fast-check";
import {
  type DataKeyMaterial,
  type ParsedEnvelope,
  FIXED_HEADER_BYTES,
  createEncryptTemplate,
  deriveMaterial,
  encodeKeySection,
  encodeTenantContext,
  open,
  parseEnvelope,
  seal,
} from "../src/envelope";
import { isKmsError } from "../src/errors";

interface Sample {
  envelope: Buffer;
  plaintext: Buffer;
  material: DataKeyMaterial;
  tc: Buffer;
  /** Offsets of the key section's length fields: [offset, width in bytes]. */
  lengthFields: [number, 1 | 2][];
}

function makeSample(providerId: string, keyId: string, keyVersion: string, wrappedLen: number, plaintextLen: number): Sample {
  const material = deriveMaterial(crypto.randomBytes(32));
  const ks = encodeKeySection({ providerId, keyId, keyVersion, wrappedKey: crypto.randomBytes(wrappedLen) });
  const tc = encodeTenantContext("tenant-a", { purpose: "fuzz" });
  const plaintext = crypto.randomBytes(plaintextLen);
  const envelope = seal(createEncryptTemplate(material, ks, tc), plaintext);
  const p = FIXED_HEADER_BYTES;
  const k = p + 1 + providerId.length;
  const v = k + 2 + Buffer.byteLength(keyId);
  const w = v + 1 + Buffer.byteLength(keyVersion);
  return { envelope, plaintext, material, tc, lengthFields: [[p, 1], [k, 2], [v, 1], [w, 2]] };
}

/** Parse, then open with the original (correct) material; returns the outcome as a code or "ok". */
function outcome(bytes: Uint8Array, s: Sample): string {
  let parsed: ParsedEnvelope;
  try {
    parsed = parseEnvelope(bytes);
  } catch (error) {
    return isKmsError(error) ? error.code : `non-KmsError: ${String(error)}`;
  }
  try {
    const out = open(parsed, s.material, s.tc);
    return out.equals(s.plaintext) ? "ok" : "ok-but-different";
  } catch (error) {
    return isKmsError(error) ? error.code : `non-KmsError: ${String(error)}`;
  }
}

const REJECTED = ["ENVELOPE_MALFORMED", "ENVELOPE_AUTH_FAILED"];

describe("tamper resistance", () => {
  const small = makeSample("local", "k1", "1", 8, 5);

  it("every single-bit flip of a small envelope fails (exhaustive over all bits)", () => {
    const { envelope } = small;
    const seen = new Set<string>();
    for (let bit = 0; bit < envelope.length * 8; bit++) {
      const copy = Buffer.from(envelope);
      copy[bit >> 3]! ^= 1 << (bit & 7);
      const result = outcome(copy, small);
      seen.add(result);
      expect(REJECTED).toContain(result);
    }
    expect(outcome(envelope, small)).toBe("ok");
    // Both kinds of rejection occur: structure (header, lengths) and authentication (C, T, IV, payload).
    expect([...seen].sort()).toEqual([...REJECTED].sort());
  });

  it("every truncation of a small envelope fails", () => {
    const { envelope } = small;
    for (let n = 0; n < envelope.length; n++) expect(REJECTED).toContain(outcome(envelope.subarray(0, n), small));
  });

  it("property: a random bit flip of a random small envelope never decrypts", () => {
    const samples = [
      small,
      makeSample("aws-kms", "arn:aws:kms:eu-west-1:111122223333:key/x", "", 40, 0),
      makeSample("v", "ключ", "версия-2", 1, 33),
      makeSample("gcp-kms", "projects/p/locations/l/keyRings/r/cryptoKeys/k", "7", 64, 100),
    ];
    fc.assert(
      fc.property(fc.nat(samples.length - 1), fc.nat(), (which, bitSeed) => {
        const s = samples[which]!;
        const bit = bitSeed % (s.envelope.length * 8);
        const copy = Buffer.from(s.envelope);
        copy[bit >> 3]! ^= 1 << (bit & 7);
        expect(REJECTED).toContain(outcome(copy, s));
      }),
      { numRuns: 3000, seed: 0x6b6d73 },
    );
  });

  it("property: a truncation at any length never decrypts", () => {
    const s = makeSample("azure-key-vault", "https://v.vault.azure.net/keys/k", "abc123", 256, 200);
    fc.assert(
      fc.property(fc.nat(s.envelope.length - 1), (n) => {
        expect(REJECTED).toContain(outcome(s.envelope.subarray(0, n), s));
      }),
      { numRuns: 1000, seed: 0x6b6d74 },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// 100,000 hostile inputs to the parser
// ---------------------------------------------------------------------------------------------

type Mutation =
  | { kind: "random"; bytes: Uint8Array }
  | { kind: "flips"; base: number; bits: number[] }
  | { kind: "insert"; base: number; at: number; bytes: Uint8Array }
  | { kind: "delete"; base: number; at: number; count: number }
  | { kind: "length"; base: number; field: number; value: "max" | "zero" | "random"; random: number }
  | { kind: "truncate"; base: number; at: number }
  | { kind: "splice"; base: number; at: number; bytes: Uint8Array };

describe("parseEnvelope fuzz", () => {
  const bases = [
    makeSample("local", "k", "", 1, 0),
    makeSample("local", "k1", "1", 8, 5),
    makeSample("aws-kms", "arn:aws:kms:eu-west-1:111122223333:key/abc", "", 184, 40),
    makeSample("vault", "transit/keys/tenant-a", "12", 90, 130),
  ];

  function apply(m: Mutation): Uint8Array {
    if (m.kind === "random") return m.bytes;
    const base = bases[m.base % bases.length]!;
    const env = base.envelope;
    const at = (n: number, max: number) => n % (max + 1);
    switch (m.kind) {
      case "flips": {
        const copy = Buffer.from(env);
        for (const b of m.bits) copy[(b >> 3) % copy.length]! ^= 1 << (b & 7);
        return copy;
      }
      case "insert": {
        const i = at(m.at, env.length);
        return Buffer.concat([env.subarray(0, i), m.bytes, env.subarray(i)]);
      }
      case "delete": {
        const i = at(m.at, env.length - 1);
        return Buffer.concat([env.subarray(0, i), env.subarray(Math.min(env.length, i + m.count))]);
      }
      case "length": {
        const copy = Buffer.from(env);
        const [offset, width] = base.lengthFields[m.field % base.lengthFields.length]!;
        const max = width === 1 ? 0xff : 0xffff;
        const value = m.value === "max" ? max : m.value === "zero" ? 0 : m.random % (max + 1);
        if (width === 1) copy[offset] = value;
        else copy.writeUInt16BE(value, offset);
        return copy;
      }
      case "truncate":
        return env.subarray(0, at(m.at, env.length));
      case "splice": {
        const copy = Buffer.from(env);
        const i = at(m.at, env.length - 1);
        copy.set(m.bytes.subarray(0, env.length - i), i);
        return copy;
      }
    }
  }

  const mutation: fc.Arbitrary<Mutation> = fc.oneof(
    fc.record({ kind: fc.constant("random" as const), bytes: fc.uint8Array({ minLength: 0, maxLength: 300 }) }),
    // Random bytes behind a valid magic/version/suite, so the key-section reader gets exercised too.
    fc.record({ kind: fc.constant("random" as const), bytes: fc.uint8Array({ minLength: 0, maxLength: 300 }).map((b) => Buffer.concat([Buffer.from([0x4b, 0x4d, 0x53, 0x45, 1, 1]), b])) }),
    fc.record({ kind: fc.constant("flips" as const), base: fc.nat(), bits: fc.array(fc.nat(), { minLength: 1, maxLength: 8 }) }),
    fc.record({ kind: fc.constant("insert" as const), base: fc.nat(), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
    fc.record({ kind: fc.constant("delete" as const), base: fc.nat(), at: fc.nat(), count: fc.integer({ min: 1, max: 16 }) }),
    fc.record({
      kind: fc.constant("length" as const),
      base: fc.nat(),
      field: fc.nat(),
      value: fc.constantFrom("max" as const, "zero" as const, "random" as const),
      random: fc.nat(),
    }),
    fc.record({ kind: fc.constant("truncate" as const), base: fc.nat(), at: fc.nat() }),
    fc.record({ kind: fc.constant("splice" as const), base: fc.nat(), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
  );

  it("100,000 random and mutated inputs: no crash, no hang, only ENVELOPE_MALFORMED or a sound parse", () => {
    const RUNS = 100_000;
    const stats = { processed: 0, malformed: 0, parsed: 0, identical: 0 };
    fc.assert(
      fc.property(mutation, (m) => {
        const input = apply(m);
        stats.processed++;
        let parsed: ParsedEnvelope;
        try {
          parsed = parseEnvelope(input);
        } catch (error) {
          if (!isKmsError(error) || error.code !== "ENVELOPE_MALFORMED") throw error;
          stats.malformed++;
          return;
        }
        stats.parsed++;
        // Plain checks here, not expect(): this body runs 100,000 times.
        // A successful parse partitions exactly the input, with views (no copies) into it.
        const parts = [parsed.fixedHeader, parsed.keySectionBytes, parsed.keySectionTag, parsed.iv, parsed.ciphertext, parsed.tag];
        let total = 0;
        for (const b of parts) {
          if (b.buffer !== input.buffer) throw new Error("parse returned a copy, not a view");
          total += b.length;
        }
        if (total !== input.length) throw new Error("parse did not partition the input exactly");
        if (!encodeKeySection(parsed.keySection).equals(parsed.keySectionBytes)) throw new Error("key section does not round-trip");
        // ...and only the untouched original opens; every other parseable mutation fails authentication.
        if (m.kind === "random") return;
        const base = bases[m.base % bases.length]!;
        let code = "ok";
        try {
          open(parsed, base.material, base.tc);
        } catch (error) {
          code = isKmsError(error) ? error.code : "non-KmsError";
        }
        if (base.envelope.equals(input)) {
          stats.identical++;
          if (code !== "ok") throw new Error(`the unmodified envelope failed: ${code}`);
        } else if (code !== "ENVELOPE_AUTH_FAILED") {
          throw new Error(`a modified envelope gave ${code}`);
        }
      }),
      { numRuns: RUNS, seed: 0x6b6d7365, endOnFailure: true },
    );
    expect(stats.processed).toBe(RUNS);
    expect(stats.malformed + stats.parsed).toBe(RUNS);
    // The mix reaches both outcomes in quantity (not just the first checks of the parser).
    expect(stats.malformed).toBeGreaterThan(RUNS / 4);
    expect(stats.parsed).toBeGreaterThan(RUNS / 20);
  }, 60_000); // a hang fails the test at jest's timeout

  it("allocates no buffer while parsing, whatever lengths a hostile input claims", () => {
    const inputs = fc.sample(mutation, { numRuns: 10_000, seed: 0x6b6d7366 }).map(apply);
    // Key-section length fields at their maximum in an input far too short for them.
    const claimsMax = Buffer.from(bases[0]!.envelope);
    for (const [offset, width] of bases[0]!.lengthFields) {
      if (width === 1) claimsMax[offset] = 0xff;
      else claimsMax.writeUInt16BE(0xffff, offset);
    }
    inputs.push(claimsMax);
    const spies = [
      jest.spyOn(Buffer, "alloc"),
      jest.spyOn(Buffer, "allocUnsafe"),
      jest.spyOn(Buffer, "allocUnsafeSlow"),
      jest.spyOn(Buffer, "concat"),
      jest.spyOn(Buffer, "from"),
    ];
    const copies: string[] = [];
    try {
      for (const input of inputs) {
        try {
          parseEnvelope(input);
        } catch (error) {
          if (!isKmsError(error) || error.code !== "ENVELOPE_MALFORMED") throw error;
        }
        for (const spy of spies) {
          for (const args of spy.mock.calls) {
            // Buffer.from(arrayBuffer, offset, length) is a view; anything else is a copy.
            if (!(spy === spies[4] && args[0] instanceof ArrayBuffer)) copies.push(spy.getMockName());
          }
          spy.mockClear();
        }
      }
    } finally {
      for (const spy of spies) spy.mockRestore();
    }
    expect(copies).toEqual([]);
  });
});
