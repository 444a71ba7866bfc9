import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { KmsError, type KmsErrorCode } from "../../src/errors";
import type { EncryptionContext, KmsProvider, PermissionCheck } from "../../src/provider";

type Op = "generateDataKey" | "wrapDataKey" | "unwrapDataKey" | "describeKey" | "rotateKey" | "checkHealth" | "validatePermissions";

/**
 * An in-memory provider for core's own tests: real AES-GCM wrapping (context bound as AAD),
 * versioned keys, exact call counts per operation, and injectable failures.
 */
export class FakeProvider implements KmsProvider {
  readonly id: string;
  readonly capabilities = { encryptionContext: true, rotation: true, generatesDataKeys: true, insecure: false };
  readonly calls: Record<Op, number> = {
    generateDataKey: 0, wrapDataKey: 0, unwrapDataKey: 0, describeKey: 0, rotateKey: 0, checkHealth: 0, validatePermissions: 0,
  };
  /** Every plaintext data key handed out, so tests can search outputs for leaks. */
  readonly issuedKeys: Buffer[] = [];
  readonly #keys = new Map<string, Buffer[]>();
  #failure: { code: KmsErrorCode; remaining: number } | undefined;
  /** Replace to tamper with what the provider returns. */
  dataKeyLength = 32;
  closed = false;
  /** When set, generateDataKey waits for it (to hold a load in flight). */
  gate: Promise<void> | undefined;
  /** When set, unwrapDataKey waits for it. */
  unwrapGate: Promise<void> | undefined;
  /**
   * False models a KMS that ignores the encryption context (as some services and key types do), so
   * that core's own binding is tested without the provider's help.
   */
  bindsContext = true;

  constructor(id = "fake") {
    this.id = id;
  }

  /** Fails every operation with `code` (`times` times, or until `heal()`). */
  fail(code: KmsErrorCode, times = Infinity): void {
    this.#failure = { code, remaining: times };
  }

  heal(): void {
    this.#failure = undefined;
  }

  get kmsCalls(): number {
    return Object.values(this.calls).reduce((a, b) => a + b, 0);
  }

  #enter(op: Op): void {
    this.calls[op]++;
    if (this.#failure && this.#failure.remaining > 0) {
      this.#failure.remaining--;
      throw new KmsError(this.#failure.code, `injected ${this.#failure.code}`, { provider: this.id });
    }
  }

  #versions(keyId: string): Buffer[] {
    let versions = this.#keys.get(keyId);
    if (!versions) {
      versions = [randomBytes(32)];
      this.#keys.set(keyId, versions);
    }
    return versions;
  }

  #wrap(keyId: string, dek: Uint8Array, context: EncryptionContext) {
    const versions = this.#versions(keyId);
    const iv = randomBytes(12);
    const cipher = createCipheriv("aes-256-gcm", versions[versions.length - 1]!, iv);
    cipher.setAAD(aad(keyId, this.bindsContext ? context : {}));
    const wrappedKey = Buffer.concat([iv, cipher.update(dek), cipher.final(), cipher.getAuthTag()]);
    return { wrappedKey, keyVersion: String(versions.length) };
  }

  async generateDataKey(req: { keyId: string; context: EncryptionContext }) {
    this.#enter("generateDataKey");
    await this.gate;
    const plaintextKey = randomBytes(this.dataKeyLength);
    this.issuedKeys.push(Buffer.from(plaintextKey));
    return { ...this.#wrap(req.keyId, plaintextKey, req.context), plaintextKey };
  }

  async wrapDataKey(req: { keyId: string; plaintextKey: Uint8Array; context: EncryptionContext }) {
    this.#enter("wrapDataKey");
    return this.#wrap(req.keyId, req.plaintextKey, req.context);
  }

  async unwrapDataKey(req: { keyId: string; keyVersion: string; wrappedKey: Uint8Array; context: EncryptionContext }) {
    this.#enter("unwrapDataKey");
    await this.unwrapGate;
    const kek = this.#keys.get(req.keyId)?.[Number(req.keyVersion) - 1];
    if (!kek) throw new KmsError("KMS_KEY_NOT_FOUND", "no such key or version", { provider: this.id });
    const w = Buffer.from(req.wrappedKey);
    try {
      const decipher = createDecipheriv("aes-256-gcm", kek, w.subarray(0, 12));
      decipher.setAAD(aad(req.keyId, this.bindsContext ? req.context : {}));
      decipher.setAuthTag(w.subarray(w.length - 16));
      return Buffer.concat([decipher.update(w.subarray(12, w.length - 16)), decipher.final()]);
    } catch {
      throw new KmsError("ENVELOPE_AUTH_FAILED", "unwrap failed", { provider: this.id });
    }
  }

  async describeKey(keyId: string) {
    this.#enter("describeKey");
    return { keyId, enabled: true, currentVersion: String(this.#versions(keyId).length) };
  }

  async rotateKey(keyId: string) {
    this.#enter("rotateKey");
    const versions = this.#versions(keyId);
    versions.push(randomBytes(32));
    return { keyId, previousVersion: String(versions.length - 1), currentVersion: String(versions.length) };
  }

  async checkHealth() {
    this.#enter("checkHealth");
    return { healthy: true, insecure: false };
  }

  async validatePermissions(): Promise<PermissionCheck[]> {
    this.#enter("validatePermissions");
    return [{ permission: "fake:use", ok: true }];
  }

  async close() {
    this.closed = true;
  }
}

function aad(keyId: string, context: EncryptionContext): Buffer {
  return Buffer.from(JSON.stringify([keyId, Object.entries(context).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))]));
}
