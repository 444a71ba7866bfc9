/**
 * An in-memory KMS provider for scenarios 3 and 5, which run millions of operations: the embedded
 * `local` provider re-reads its key file on every call (so that rotations by another process are
 * seen), which would make each cache miss cost a file read and measure the disk, not the cache.
 * This one wraps data keys with AES-256-GCM under a KEK held in memory, binds the context as AAD,
 * and counts its calls. It goes through `createKms` like any provider (`definitionOf`).
 */
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { type DataKey, type KmsProvider, KmsError, type UnwrapDataKeyRequest, type WrapDataKeyRequest } from "@kms/core";

export interface CountingProvider extends KmsProvider {
  readonly calls: { generateDataKey: number; wrapDataKey: number; unwrapDataKey: number };
}

export function memoryProvider(id = "bench-memory"): CountingProvider {
  const kek = randomBytes(32);
  const calls = { generateDataKey: 0, wrapDataKey: 0, unwrapDataKey: 0 };
  const aadOf = (keyId: string, context: Readonly<Record<string, string>>) =>
    Buffer.from(JSON.stringify([keyId, Object.entries(context).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))]));
  const wrap = (req: WrapDataKeyRequest) => {
    const iv = randomBytes(12);
    const cipher = createCipheriv("aes-256-gcm", kek, iv);
    cipher.setAAD(aadOf(req.keyId, req.context));
    const body = Buffer.concat([cipher.update(req.plaintextKey), cipher.final()]);
    return { wrappedKey: Buffer.concat([iv, body, cipher.getAuthTag()]), keyVersion: "1" };
  };
  return {
    id,
    capabilities: { encryptionContext: true, rotation: false, generatesDataKeys: true, insecure: true },
    calls,
    async generateDataKey(req): Promise<DataKey> {
      calls.generateDataKey++;
      const plaintextKey = randomBytes(32);
      return { ...wrap({ ...req, plaintextKey }), plaintextKey };
    },
    async wrapDataKey(req) {
      calls.wrapDataKey++;
      return wrap(req);
    },
    async unwrapDataKey(req: UnwrapDataKeyRequest) {
      calls.unwrapDataKey++;
      const w = Buffer.from(req.wrappedKey);
      try {
        const decipher = createDecipheriv("aes-256-gcm", kek, w.subarray(0, 12), { authTagLength: 16 });
        decipher.setAAD(aadOf(req.keyId, req.context));
        decipher.setAuthTag(w.subarray(w.length - 16));
        return Buffer.concat([decipher.update(w.subarray(12, w.length - 16)), decipher.final()]);
      } catch (cause) {
        throw new KmsError("ENVELOPE_AUTH_FAILED", "the data key did not unwrap", { provider: id, cause });
      }
    },
    async describeKey(keyId) {
      return { keyId, enabled: true, currentVersion: "1" };
    },
    async rotateKey() {
      throw new KmsError("KMS_PROVIDER_ERROR", "the bench provider does not rotate", { provider: id });
    },
    async checkHealth() {
      return { healthy: true, insecure: true };
    },
    async validatePermissions() {
      return [{ permission: "all", ok: true }];
    },
    async close() {},
  };
}
