// Envelope benchmark: raw node:crypto AES-256-GCM vs the @kms envelope (seal, parse + open).
//
//   cd packages/core && pnpm build && node bench/envelope.bench.mjs
//
// Every case is timed per operation with process.hrtime.bigint after a warm-up; each section runs
// its cases interleaved for several rounds and keeps each case's best round (least disturbed by
// other processes). "× mean" / "× p50" divide our time by the baseline's: 1.00 = as fast as raw.
// To extend, add a section: cases are { name, fn, ops, baseline? } (sync or async fn; `baseline`
// names another case to get a ratio), handed to `runSection(title, cases)` from ./harness.mjs.
import crypto from "node:crypto";
import { createRequire } from "node:module";
import os from "node:os";
import { runSection } from "./harness.mjs";

const require = createRequire(import.meta.url);
const envelope = require("../dist/envelope.js");
const { writeIv } = require("../dist/iv.js");

// ---------------------------------------------------------------------------------------------
// Envelope module vs raw node:crypto
// ---------------------------------------------------------------------------------------------

const cpu = os.cpus()[0]?.model ?? "unknown cpu";
console.log(`node ${process.version}, OpenSSL ${process.versions.openssl}, ${os.cpus().length} × ${cpu}`);

const material = envelope.deriveMaterial(crypto.randomBytes(32));
// A realistic key section: an AWS KMS key ARN and a CiphertextBlob-sized wrapped DEK.
const keySection = envelope.encodeKeySection({
  providerId: "aws-kms",
  keyId: "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
  keyVersion: "",
  wrappedKey: crypto.randomBytes(184),
});
const tenantContext = envelope.encodeTenantContext("tenant-a", { purpose: "bench", region: "eu-west-1" });
const template = envelope.createEncryptTemplate(material, keySection, tenantContext);
const decryptTemplate = envelope.createDecryptTemplate(material, keySection, tenantContext);
// The raw baseline authenticates an AAD of exactly the same size as ours.
const rawAad = crypto.randomBytes(template.aad.length);
const rawKey = crypto.randomBytes(32);

// Raw AES-256-GCM producing what an envelope is, one buffer (IV ‖ ciphertext ‖ tag), with IVs from
// the same pool as `seal` (a fresh randomBytes(12) per message alone costs ~5 µs, which would flatter
// our ratios).
function rawEncrypt(plaintext) {
  const iv = Buffer.allocUnsafe(12);
  writeIv(iv, 0);
  const cipher = crypto.createCipheriv("aes-256-gcm", rawKey, iv);
  cipher.setAAD(rawAad);
  const ct = cipher.update(plaintext);
  cipher.final();
  return Buffer.concat([iv, ct, cipher.getAuthTag()]);
}

function rawDecrypt(sealed) {
  const iv = sealed.subarray(0, 12);
  const tag = sealed.subarray(sealed.length - 16);
  const decipher = crypto.createDecipheriv("aes-256-gcm", rawKey, iv, { authTagLength: 16 });
  decipher.setAuthTag(tag);
  decipher.setAAD(rawAad);
  const pt = decipher.update(sealed.subarray(12, sealed.length - 16));
  decipher.final();
  return pt;
}

for (const [label, size, ops] of [
  ["1 KiB", 1024, 20_000],
  ["64 KiB", 64 * 1024, 5_000],
]) {
  const plaintext = crypto.randomBytes(size);
  const rawSealed = rawEncrypt(plaintext);
  const ours = envelope.seal(template, plaintext);
  // Sanity: both round-trip before anything is timed.
  if (!rawDecrypt(rawSealed).equals(plaintext)) throw new Error("raw round trip failed");
  if (!envelope.open(envelope.parseEnvelope(ours), material, tenantContext).equals(plaintext)) throw new Error("envelope round trip failed");
  console.log(`(${label}: envelope overhead ${ours.length - size} B vs raw ${rawSealed.length - size} B)`);

  await runSection(`AES-256-GCM, ${label} plaintext`, [
    { name: `raw encrypt ${label}`, fn: () => rawEncrypt(plaintext), ops },
    { name: `seal ${label}`, fn: () => envelope.seal(template, plaintext), ops, baseline: `raw encrypt ${label}` },
    { name: `raw decrypt ${label}`, fn: () => rawDecrypt(rawSealed), ops },
    // What a decrypt-cache hit does: length fields only, then the entry's template.
    {
      name: `locate+openWith ${label}`,
      fn: () => {
        const { buf, keySectionEnd } = envelope.locateKeySection(ours);
        return envelope.openWith(decryptTemplate, buf, keySectionEnd);
      },
      ops,
      baseline: `raw decrypt ${label}`,
    },
  ]);
}

// ---------------------------------------------------------------------------------------------
// The whole client with a warm cache (createKms on the local provider) vs raw node:crypto
// ---------------------------------------------------------------------------------------------

const { mkdtempSync, rmSync } = await import("node:fs");
const { join } = await import("node:path");
const core = require("../dist/index.js");
const { KeyCache } = require("../dist/cache.js");

const dir = mkdtempSync(join(os.tmpdir(), "kms-bench-"));
const kms = core.createKms({
  registry: [core.localKms],
  config: {
    providers: { local: { path: join(dir, "keys.json") } },
    tenants: { defaultKey: { provider: "local", keyId: "bench" } },
  },
});
const context = { purpose: "bench", region: "eu-west-1" };

try {
  for (const [label, size, ops] of [
    ["1 KiB", 1024, 20_000],
    ["64 KiB", 64 * 1024, 5_000],
  ]) {
    const plaintext = crypto.randomBytes(size);
    const rawSealed = rawEncrypt(plaintext);
    const envelopeBytes = await kms.encrypt("tenant-a", plaintext, context);
    if (!(await kms.decrypt("tenant-a", envelopeBytes, context)).equals(plaintext)) throw new Error("client round trip failed");
    await runSection(`kms.encrypt / kms.decrypt (warm cache, local provider), ${label} plaintext`, [
      { name: `raw encrypt ${label}`, fn: () => rawEncrypt(plaintext), ops },
      { name: `kms.encrypt ${label}`, fn: () => kms.encrypt("tenant-a", plaintext, context), ops, baseline: `raw encrypt ${label}` },
      { name: `raw decrypt ${label}`, fn: () => rawDecrypt(rawSealed), ops },
      // The floor for any promise-returning API: the same raw decrypt, awaited.
      { name: `raw decrypt, awaited ${label}`, fn: async () => rawDecrypt(rawSealed), ops, baseline: `raw decrypt ${label}` },
      { name: `kms.decrypt ${label}`, fn: () => kms.decrypt("tenant-a", envelopeBytes, context), ops, baseline: `raw decrypt ${label}` },
    ]);
  }
  const stats = kms.cacheStats();
  console.log(`(KMS calls during the client runs: ${stats.encrypt.misses} data-key generations, ${stats.decrypt.misses} unwraps)`);
} finally {
  await kms.close();
  rmSync(dir, { recursive: true, force: true });
}

// The cache lookup alone: a hit on a warm entry among 10,000.
const clock = core.systemClock;
const events = { active: false, emit() {} };
const cache = new KeyCache("encrypt", { maxAgeMs: 3_600_000, hardMaxAgeMs: 3_600_000, capacity: 20_000, jitter: 0, maxMessages: 2 ** 32, maxBytes: Number.MAX_SAFE_INTEGER }, { clock, events });
const meta = { tenantId: "tenant-a", provider: "local", keyId: "bench", bytes: 1024 };
const keys = Array.from({ length: 10_000 }, (_, i) => `local\0bench\0tenant-${i}`);
for (const key of keys) await cache.withKey(key, meta, async () => ({ value: undefined, material: envelope.deriveMaterial(crypto.randomBytes(32)) }), () => undefined);
let k = 0;
const [lookup] = await runSection("data-key cache lookup (hit, 10,000 entries)", [
  { name: "cache hit", fn: () => cache.withKey(keys[k++ % keys.length], meta, () => { throw new Error("miss"); }, (e) => e), ops: 100_000 },
]);
console.log(`\ncache lookup p99: ${lookup.p99Us.toFixed(2)} µs (target < 20 µs)`);
cache.clear();
