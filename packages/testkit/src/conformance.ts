/**
 * The provider conformance suite: one call registers, in the caller's jest file, every test a
 * `KmsProvider` must pass (modelled on keyv's shared adapter suite). Each test gets a fresh provider
 * from the factory and closes it afterwards. Cases that need something the provider cannot offer
 * (a capability it lacks, a fault hook it did not pass) are not registered, never skipped: they are
 * listed, with the reason, in the suite's describe name and in the returned summary.
 */
import { randomBytes } from "node:crypto";
import { describe, expect, it } from "@jest/globals";
import {
  DATA_KEY_BYTES,
  PROVIDER_ID_PATTERN,
  type EncryptionContext,
  type KmsError,
  type KmsErrorCode,
  type KmsProvider,
  createKms,
  definitionOf,
  isKmsError,
  parseEnvelope,
} from "@kms/core";

/** What the factory returns for one test: a new provider and a key id that exists (or is creatable) and is enabled. */
export interface ConformanceSubject<P extends KmsProvider = KmsProvider> {
  provider: P;
  keyId: string;
}

export type ConformanceFactory<P extends KmsProvider = KmsProvider> = () => ConformanceSubject<P> | Promise<ConformanceSubject<P>>;

/** Ends the fault a hook started: afterwards the provider must work again. */
export type RestoreFault = () => void | Promise<void>;

/** Starts a fault for `provider` (an outage, a denial) and returns the function that ends it. */
export type FaultHook<P extends KmsProvider = KmsProvider> = (provider: P) => RestoreFault | Promise<RestoreFault>;

export interface ConformanceOptions<P extends KmsProvider = KmsProvider> {
  /**
   * What the provider claims, known before any provider exists (tests are registered up front).
   * The suite checks that the provider's own `capabilities` say the same.
   */
  capabilities: {
    /** The encryption context is bound to the wrapped key. */
    encryptionContext: boolean;
    /** `rotateKey` creates a new key version. */
    rotation: boolean;
    /** `generateDataKey` is implemented. Default true. */
    generatesDataKeys?: boolean;
  };
  /** Hooks that put a key or the provider in a failure state; an omitted hook leaves its cases unregistered, with the reason recorded. */
  faults?: {
    /** A key id that does not exist (and that the provider will not create). */
    missingKeyId?: (provider: P) => string | Promise<string>;
    /** A key id that exists and is disabled. */
    disabledKeyId?: (provider: P) => string | Promise<string>;
    /**
     * Makes the provider's backend unavailable (a service outage, a failing disk) until the returned
     * function is called: calls fail meanwhile with a retryable `KMS_UNAVAILABLE`.
     */
    makeUnavailable?: FaultHook<P>;
    /**
     * Denies the provider access to the key (a revoked grant, a policy, a file mode) until the returned
     * function is called: calls fail meanwhile with `KMS_ACCESS_DENIED`, not retryable.
     */
    denyAccess?: FaultHook<P>;
  };
  /** Run the `createKms` cases (envelope round trip, tenant and context binding, rotation). Default true. */
  client?: boolean;
  /** Per-test timeout in ms (emulators may need more than jest's default). */
  timeoutMs?: number;
}

export interface ConformanceSummary {
  readonly name: string;
  /** Titles of the registered tests. */
  readonly registered: readonly string[];
  /** Cases not registered, and why. */
  readonly notRun: readonly { readonly case: string; readonly reason: string }[];
}

/** The encryption context core sends: the caller's pairs plus the tenant id under a reserved key. */
const CONTEXT: EncryptionContext = { "kms:tenant": "conformance-tenant", purpose: "conformance" };

/**
 * Registers the conformance suite for one provider. Call it at the top level of a jest test file.
 *
 * ```ts
 * describeProviderConformance("aws-kms", async () => ({ provider: awsKmsProvider({ client }), keyId: "alias/test" }), {
 *   capabilities: { encryptionContext: true, rotation: true },
 *   faults: { missingKeyId: () => "alias/does-not-exist" },
 * });
 * ```
 */
export function describeProviderConformance<P extends KmsProvider>(
  name: string,
  factory: ConformanceFactory<P>,
  options: ConformanceOptions<P>,
): ConformanceSummary {
  const caps = { generatesDataKeys: true, ...options.capabilities };
  const faults = options.faults ?? {};
  const runClient = options.client ?? true;
  const registered: string[] = [];
  const notRun: { case: string; reason: string }[] = [];
  const cases: [string, (subject: ConformanceSubject<P>) => Promise<void>][] = [];
  const add = (title: string, fn: (subject: ConformanceSubject<P>) => Promise<void>) => {
    cases.push([title, fn]);
    registered.push(title);
  };
  const skip = (title: string, reason: string) => notRun.push({ case: title, reason });

  /** Runs `fn` while the fault `hook` starts is in force; ends the fault whatever happens. */
  const during = async <T>(hookName: string, hook: FaultHook<P>, provider: P, fn: () => Promise<T>): Promise<T> => {
    const restore = await hook(provider);
    if (typeof restore !== "function") throw new Error(`faults.${hookName} must return a function that ends the fault`);
    try {
      return await fn();
    } finally {
      await restore();
    }
  };

  /**
   * While a fault is in force, every data-key call and describeKey fails with `code` and
   * `retryable`; no error carries the data key. `dk` was wrapped before the fault.
   */
  const expectEveryCallFails = async (
    { provider, keyId }: ConformanceSubject<P>,
    dk: { plaintextKey: Buffer; wrappedKey: Uint8Array; keyVersion: string },
    code: KmsErrorCode,
    retryable: boolean,
  ) => {
    const key = randomBytes(DATA_KEY_BYTES);
    const calls: [string, () => Promise<unknown>][] = [
      ["wrapDataKey", () => provider.wrapDataKey({ keyId, plaintextKey: key, context: CONTEXT })],
      ["unwrapDataKey", () => provider.unwrapDataKey({ keyId, keyVersion: dk.keyVersion, wrappedKey: dk.wrappedKey, context: CONTEXT })],
      ["describeKey", () => provider.describeKey(keyId)],
    ];
    if (caps.generatesDataKeys) calls.unshift(["generateDataKey", () => provider.generateDataKey!({ keyId, context: CONTEXT })]);
    for (const [method, call] of calls) {
      const error = await expectKmsError(call, code);
      expect({ method, retryable: error.retryable }).toEqual({ method, retryable });
      const text = everythingIn(error);
      for (const encoded of [...encodingsOf(key), ...encodingsOf(dk.plaintextKey)]) expect(text.includes(encoded)).toBe(false);
    }
  };

  /** After a fault has ended: the key wrapped before it unwraps, and the key is described. */
  const expectRecovered = async ({ provider, keyId }: ConformanceSubject<P>, dk: { plaintextKey: Buffer; wrappedKey: Uint8Array; keyVersion: string }) => {
    const unwrapped = await provider.unwrapDataKey({ keyId, keyVersion: dk.keyVersion, wrappedKey: dk.wrappedKey, context: CONTEXT });
    expect(Buffer.from(unwrapped).equals(dk.plaintextKey)).toBe(true);
    expect((await provider.describeKey(keyId)).enabled).toBe(true);
  };

  /** A fresh data key for `subject`, via generateDataKey when the provider has it. */
  const newDataKey = async ({ provider, keyId }: ConformanceSubject<P>, context: EncryptionContext = CONTEXT) => {
    if (caps.generatesDataKeys) {
      const dk = await provider.generateDataKey!({ keyId, context });
      return { plaintextKey: Buffer.from(dk.plaintextKey), wrappedKey: dk.wrappedKey, keyVersion: dk.keyVersion };
    }
    const plaintextKey = randomBytes(DATA_KEY_BYTES);
    return { plaintextKey, ...(await provider.wrapDataKey({ keyId, plaintextKey, context })) };
  };

  // --- the contract -------------------------------------------------------------------------

  add("declares a valid id and the capabilities it was tested for", async ({ provider }) => {
    expect(provider.id).toMatch(PROVIDER_ID_PATTERN);
    expect(provider.capabilities.encryptionContext).toBe(caps.encryptionContext);
    expect(provider.capabilities.rotation).toBe(caps.rotation);
    expect(provider.capabilities.generatesDataKeys).toBe(caps.generatesDataKeys);
    expect(typeof provider.capabilities.insecure).toBe("boolean");
    expect(typeof provider.generateDataKey === "function").toBe(caps.generatesDataKeys);
  });

  if (caps.generatesDataKeys) {
    add("generateDataKey returns a fresh 32-byte key, a non-empty wrapped key and a key version", async ({ provider, keyId }) => {
      const a = await provider.generateDataKey!({ keyId, context: CONTEXT });
      const b = await provider.generateDataKey!({ keyId, context: CONTEXT });
      for (const dk of [a, b]) {
        expect(dk.plaintextKey).toBeInstanceOf(Uint8Array);
        expect(dk.plaintextKey).toHaveLength(DATA_KEY_BYTES);
        expect(dk.wrappedKey).toBeInstanceOf(Uint8Array);
        expect(dk.wrappedKey.length).toBeGreaterThan(0);
        expect(typeof dk.keyVersion).toBe("string");
        expect(Buffer.from(dk.wrappedKey).includes(Buffer.from(dk.plaintextKey))).toBe(false);
      }
      expect(Buffer.from(a.plaintextKey).equals(Buffer.from(b.plaintextKey))).toBe(false);
      const unwrapped = await provider.unwrapDataKey({ keyId, keyVersion: a.keyVersion, wrappedKey: a.wrappedKey, context: CONTEXT });
      expect(Buffer.from(unwrapped).equals(Buffer.from(a.plaintextKey))).toBe(true);
    });
  } else {
    skip("generateDataKey", "capabilities.generatesDataKeys is false (core draws keys and calls wrapDataKey)");
  }

  add("wrapDataKey / unwrapDataKey round-trips a 32-byte key", async ({ provider, keyId }) => {
    const key = randomBytes(DATA_KEY_BYTES);
    const wrapped = await provider.wrapDataKey({ keyId, plaintextKey: key, context: CONTEXT });
    expect(wrapped.wrappedKey.length).toBeGreaterThan(0);
    expect(typeof wrapped.keyVersion).toBe("string");
    expect(Buffer.from(wrapped.wrappedKey).includes(key)).toBe(false);
    const unwrapped = await provider.unwrapDataKey({ keyId, keyVersion: wrapped.keyVersion, wrappedKey: wrapped.wrappedKey, context: CONTEXT });
    expect(Buffer.from(unwrapped).equals(key)).toBe(true);
  });

  add("wrapDataKey rejects a key that is not 32 bytes with INPUT_INVALID", async ({ provider, keyId }) => {
    const key = randomBytes(DATA_KEY_BYTES + 1);
    for (const plaintextKey of [key.subarray(0, DATA_KEY_BYTES - 1), key, new Uint8Array(0)]) {
      await expectKmsError(() => provider.wrapDataKey({ keyId, plaintextKey, context: CONTEXT }), "INPUT_INVALID");
    }
  });

  if (caps.encryptionContext) {
    add("unwrap with a different encryption context fails with ENVELOPE_AUTH_FAILED", async (subject) => {
      const { provider, keyId } = subject;
      const dk = await newDataKey(subject);
      const others: EncryptionContext[] = [
        {},
        { ...CONTEXT, "kms:tenant": "another-tenant" },
        { ...CONTEXT, purpose: "other" },
        { ...CONTEXT, extra: "pair" },
        { "kms:tenant": CONTEXT["kms:tenant"]! },
      ];
      for (const context of others) {
        await expectKmsError(
          () => provider.unwrapDataKey({ keyId, keyVersion: dk.keyVersion, wrappedKey: dk.wrappedKey, context }),
          "ENVELOPE_AUTH_FAILED",
        );
      }
    });

    add("the encryption context is order-independent", async (subject) => {
      const context = { b: "2", a: "1", "kms:tenant": "t" };
      const dk = await newDataKey(subject, context);
      const reordered = { "kms:tenant": "t", a: "1", b: "2" };
      const unwrapped = await subject.provider.unwrapDataKey({ keyId: subject.keyId, keyVersion: dk.keyVersion, wrappedKey: dk.wrappedKey, context: reordered });
      expect(Buffer.from(unwrapped).equals(dk.plaintextKey)).toBe(true);
    });
  } else {
    skip("encryption context binding", "capabilities.encryptionContext is false (the envelope's own AAD still binds it)");
  }

  add("unwrap of a tampered or truncated wrapped key fails with ENVELOPE_AUTH_FAILED", async (subject) => {
    const { provider, keyId } = subject;
    const dk = await newDataKey(subject);
    const w = dk.wrappedKey;
    const variants: Uint8Array[] = [];
    for (const i of new Set([0, Math.floor(w.length / 2), w.length - 1])) {
      const t = Buffer.from(w);
      t[i] = t[i]! ^ 0x01;
      variants.push(t);
    }
    variants.push(w.subarray(0, w.length - 1));
    for (const wrappedKey of variants) {
      await expectKmsError(() => provider.unwrapDataKey({ keyId, keyVersion: dk.keyVersion, wrappedKey, context: CONTEXT }), "ENVELOPE_AUTH_FAILED");
    }
  });

  if (faults.missingKeyId) {
    const missingKeyId = faults.missingKeyId;
    add("a key id that does not exist fails with KMS_KEY_NOT_FOUND", async (subject) => {
      const { provider } = subject;
      const missing = await missingKeyId(provider);
      const dk = await newDataKey(subject);
      if (caps.generatesDataKeys) await expectKmsError(() => provider.generateDataKey!({ keyId: missing, context: CONTEXT }), "KMS_KEY_NOT_FOUND");
      await expectKmsError(() => provider.wrapDataKey({ keyId: missing, plaintextKey: dk.plaintextKey, context: CONTEXT }), "KMS_KEY_NOT_FOUND");
      await expectKmsError(
        () => provider.unwrapDataKey({ keyId: missing, keyVersion: dk.keyVersion, wrappedKey: dk.wrappedKey, context: CONTEXT }),
        "KMS_KEY_NOT_FOUND",
      );
      await expectKmsError(() => provider.describeKey(missing), "KMS_KEY_NOT_FOUND");
    });
  } else {
    skip("missing key → KMS_KEY_NOT_FOUND", "no faults.missingKeyId hook");
  }

  if (faults.disabledKeyId) {
    const disabledKeyId = faults.disabledKeyId;
    add("a disabled key fails with KMS_KEY_DISABLED and is described as disabled", async ({ provider }) => {
      const disabled = await disabledKeyId(provider);
      if (caps.generatesDataKeys) await expectKmsError(() => provider.generateDataKey!({ keyId: disabled, context: CONTEXT }), "KMS_KEY_DISABLED");
      await expectKmsError(
        () => provider.wrapDataKey({ keyId: disabled, plaintextKey: randomBytes(DATA_KEY_BYTES), context: CONTEXT }),
        "KMS_KEY_DISABLED",
      );
      const description = await provider.describeKey(disabled);
      expect(description.enabled).toBe(false);
    });
  } else {
    skip("disabled key → KMS_KEY_DISABLED", "no faults.disabledKeyId hook");
  }

  if (faults.makeUnavailable) {
    const makeUnavailable = faults.makeUnavailable;
    add("an outage fails every call with a retryable KMS_UNAVAILABLE, and the provider works again once it ends", async (subject) => {
      const dk = await newDataKey(subject);
      await during("makeUnavailable", makeUnavailable, subject.provider, () => expectEveryCallFails(subject, dk, "KMS_UNAVAILABLE", true));
      await expectRecovered(subject, dk);
    });

    add("checkHealth reports healthy: false during an outage, without throwing", async ({ provider, keyId }) => {
      const health = await during("makeUnavailable", makeUnavailable, provider, () =>
        provider.checkHealth([keyId]).catch((error: unknown) => {
          throw new Error(`checkHealth threw during an outage instead of reporting healthy: false: ${String(error)}`);
        }),
      );
      expect(health.healthy).toBe(false);
      expect(health.insecure).toBe(provider.capabilities.insecure);
      if (health.detail !== undefined) {
        expect(typeof health.detail).toBe("string");
        expect(health.detail.length).toBeLessThanOrEqual(200);
      }
      expect((await provider.checkHealth([keyId])).healthy).toBe(true);
    });
  } else {
    skip("outage → KMS_UNAVAILABLE", "no faults.makeUnavailable hook");
    skip("checkHealth during an outage", "no faults.makeUnavailable hook");
  }

  if (faults.denyAccess) {
    const denyAccess = faults.denyAccess;
    add("denied access fails every call with KMS_ACCESS_DENIED, not retryable, and the provider works again once restored", async (subject) => {
      const dk = await newDataKey(subject);
      await during("denyAccess", denyAccess, subject.provider, () => expectEveryCallFails(subject, dk, "KMS_ACCESS_DENIED", false));
      await expectRecovered(subject, dk);
    });

    add("validatePermissions reports denied access as a failing check with a remediation, without throwing", async ({ provider, keyId }) => {
      const checks = await during("denyAccess", denyAccess, provider, () =>
        provider.validatePermissions(keyId).catch((error: unknown) => {
          throw new Error(`validatePermissions threw while access was denied instead of reporting the failing check: ${String(error)}`);
        }),
      );
      const failing = checks.filter((check) => !check.ok);
      expect(failing.map((check) => check.permission)).not.toEqual([]);
      for (const check of checks) {
        if (check.ok) {
          expect({ permission: check.permission, error: check.error }).toEqual({ permission: check.permission, error: undefined });
        } else {
          expect({ permission: check.permission, remediation: typeof check.remediation }).toEqual({ permission: check.permission, remediation: "string" });
          expect(check.remediation!.trim().length).toBeGreaterThan(0);
          if (check.error !== undefined) expect(isKmsError(check.error)).toBe(true);
        }
      }
      const after = await provider.validatePermissions(keyId);
      expect(after.filter((check) => !check.ok).map((check) => check.permission)).toEqual([]);
    });
  } else {
    skip("access denied → KMS_ACCESS_DENIED", "no faults.denyAccess hook");
    skip("validatePermissions with access denied", "no faults.denyAccess hook");
  }

  add("describeKey reports the key, enabled, with its current version", async ({ provider, keyId }) => {
    const description = await provider.describeKey(keyId);
    expect(description.keyId).toBe(keyId);
    expect(description.enabled).toBe(true);
    expect(typeof description.currentVersion).toBe("string");
    if (description.createdAt !== undefined) expect(Number.isNaN(description.createdAt.getTime())).toBe(false);
    if (description.rotatedAt !== undefined) expect(Number.isNaN(description.rotatedAt.getTime())).toBe(false);
  });

  if (caps.rotation) {
    add("rotateKey: new wraps carry the new version, old wrapped keys still unwrap", async (subject) => {
      const { provider, keyId } = subject;
      const before = await newDataKey(subject);
      const current = (await provider.describeKey(keyId)).currentVersion;
      expect(before.keyVersion).toBe(current);
      const rotation = await provider.rotateKey(keyId);
      expect(rotation.keyId).toBe(keyId);
      expect(rotation.previousVersion).toBe(current);
      expect(rotation.currentVersion).not.toBe(current);
      expect((await provider.describeKey(keyId)).currentVersion).toBe(rotation.currentVersion);
      const after = await newDataKey(subject);
      expect(after.keyVersion).toBe(rotation.currentVersion);
      const old = await provider.unwrapDataKey({ keyId, keyVersion: before.keyVersion, wrappedKey: before.wrappedKey, context: CONTEXT });
      expect(Buffer.from(old).equals(before.plaintextKey)).toBe(true);
      const fresh = await provider.unwrapDataKey({ keyId, keyVersion: after.keyVersion, wrappedKey: after.wrappedKey, context: CONTEXT });
      expect(Buffer.from(fresh).equals(after.plaintextKey)).toBe(true);
    });
  } else {
    skip("rotation", "capabilities.rotation is false");
  }

  add("checkHealth is healthy for a good key, with a short detail", async ({ provider, keyId }) => {
    const health = await provider.checkHealth([keyId]);
    expect(health.healthy).toBe(true);
    expect(health.insecure).toBe(provider.capabilities.insecure);
    if (health.detail !== undefined) {
      expect(typeof health.detail).toBe("string");
      expect(health.detail.length).toBeLessThanOrEqual(200);
    }
  });

  add("validatePermissions is all ok for a good key", async ({ provider, keyId }) => {
    const checks = await provider.validatePermissions(keyId);
    expect(checks.length).toBeGreaterThan(0);
    for (const check of checks) {
      expect(typeof check.permission).toBe("string");
      expect(check.permission.length).toBeGreaterThan(0);
      expect({ permission: check.permission, ok: check.ok, error: check.error?.code }).toEqual({ permission: check.permission, ok: true, error: undefined });
    }
  });

  add("concurrent calls each get their own data key", async (subject) => {
    const keys = await Promise.all(Array.from({ length: 16 }, () => newDataKey(subject)));
    expect(new Set(keys.map((k) => k.plaintextKey.toString("hex"))).size).toBe(keys.length);
  });

  add("no error carries the plaintext key (hex, base64, base64url) in its message, JSON or cause", async (subject) => {
    const { provider, keyId } = subject;
    const dk = await newDataKey(subject);
    const key = dk.plaintextKey;
    const attempts: (() => Promise<unknown>)[] = [
      () => provider.wrapDataKey({ keyId, plaintextKey: Buffer.concat([key, Buffer.alloc(1)]), context: CONTEXT }),
      () => provider.wrapDataKey({ keyId, plaintextKey: key.subarray(1), context: CONTEXT }),
      () => provider.unwrapDataKey({ keyId, keyVersion: dk.keyVersion, wrappedKey: dk.wrappedKey.subarray(1), context: CONTEXT }),
      () => provider.unwrapDataKey({ keyId, keyVersion: dk.keyVersion, wrappedKey: flipLast(dk.wrappedKey), context: CONTEXT }),
    ];
    if (caps.encryptionContext) {
      attempts.push(() => provider.unwrapDataKey({ keyId, keyVersion: dk.keyVersion, wrappedKey: dk.wrappedKey, context: {} }));
    }
    const { missingKeyId, disabledKeyId } = faults;
    if (missingKeyId) {
      attempts.push(async () => provider.wrapDataKey({ keyId: await missingKeyId(provider), plaintextKey: key, context: CONTEXT }));
    }
    if (disabledKeyId) {
      attempts.push(async () => provider.wrapDataKey({ keyId: await disabledKeyId(provider), plaintextKey: key, context: CONTEXT }));
    }
    for (const attempt of attempts) {
      const error = await expectKmsError(attempt);
      const text = everythingIn(error);
      for (const encoded of encodingsOf(key)) expect(text.includes(encoded)).toBe(false);
    }
  });

  add("close() is idempotent and later calls fail with KMS_CLOSED", async ({ provider, keyId }) => {
    await provider.close();
    await provider.close();
    await expectKmsError(() => provider.wrapDataKey({ keyId, plaintextKey: randomBytes(DATA_KEY_BYTES), context: CONTEXT }), "KMS_CLOSED");
    await expectKmsError(() => provider.describeKey(keyId), "KMS_CLOSED");
  });

  // --- through the client -------------------------------------------------------------------

  if (runClient) {
    /** A client over this one provider, with `keyId` as every tenant's key. */
    const clientFor = ({ provider, keyId }: ConformanceSubject<P>) =>
      createKms({
        registry: [definitionOf(provider)],
        config: { providers: { [provider.id]: {} }, tenants: { defaultKey: { provider: provider.id, keyId } } },
        env: {}, // not production: the suite tests the provider, not the deployment policy
      });

    add("createKms: envelope round trip", async (subject) => {
      const kms = clientFor(subject);
      try {
        const plaintext = randomBytes(1000);
        const envelope = await kms.encrypt("tenant-a", plaintext, { order: "42" });
        expect(envelope.includes(plaintext)).toBe(false);
        expect(parseEnvelope(envelope).keySection.providerId).toBe(subject.provider.id);
        expect((await kms.decrypt("tenant-a", envelope, { order: "42" })).equals(plaintext)).toBe(true);
        const text = await kms.encrypt("tenant-a", "hello");
        expect((await kms.decrypt("tenant-a", text)).toString("utf8")).toBe("hello");
        const empty = await kms.encrypt("tenant-a", new Uint8Array(0));
        expect(await kms.decrypt("tenant-a", empty)).toHaveLength(0);
      } finally {
        await kms.close();
      }
    });

    add("createKms: tenant A's envelope decrypted as tenant B fails with ENVELOPE_AUTH_FAILED", async (subject) => {
      const kms = clientFor(subject);
      try {
        const envelope = await kms.encrypt("tenant-a", "for tenant a only", { doc: "1" });
        await expectKmsError(() => kms.decrypt("tenant-b", envelope, { doc: "1" }), "ENVELOPE_AUTH_FAILED");
        // And after tenant A has decrypted it (a warm decrypt cache must not leak across tenants).
        expect((await kms.decrypt("tenant-a", envelope, { doc: "1" })).toString("utf8")).toBe("for tenant a only");
        await expectKmsError(() => kms.decrypt("tenant-b", envelope, { doc: "1" }), "ENVELOPE_AUTH_FAILED");
      } finally {
        await kms.close();
      }
    });

    add("createKms: a different encryption context fails with ENVELOPE_AUTH_FAILED", async (subject) => {
      const kms = clientFor(subject);
      try {
        const envelope = await kms.encrypt("tenant-a", "bound", { doc: "1", field: "ssn" });
        const others: (EncryptionContext | undefined)[] = [{ doc: "2", field: "ssn" }, { doc: "1" }, { doc: "1", field: "ssn", extra: "x" }, undefined];
        for (const context of others) {
          await expectKmsError(() => kms.decrypt("tenant-a", envelope, context), "ENVELOPE_AUTH_FAILED");
        }
        expect((await kms.decrypt("tenant-a", envelope, { field: "ssn", doc: "1" })).toString("utf8")).toBe("bound");
      } finally {
        await kms.close();
      }
    });

    if (caps.rotation) {
      add("createKms: envelopes under an old key version still decrypt after rotateKey", async (subject) => {
        const { provider, keyId } = subject;
        const kms = clientFor(subject);
        try {
          const old = await kms.encrypt("tenant-a", "written before rotation");
          const oldVersion = parseEnvelope(old).keySection.keyVersion;
          const rotation = await provider.rotateKey(keyId);
          kms.invalidateTenant("tenant-a"); // drop cached data keys: the next encrypt asks the provider
          const fresh = await kms.encrypt("tenant-a", "written after rotation");
          expect(parseEnvelope(fresh).keySection.keyVersion).toBe(rotation.currentVersion);
          expect(rotation.currentVersion).not.toBe(oldVersion);
          expect((await kms.decrypt("tenant-a", old)).toString("utf8")).toBe("written before rotation");
          expect((await kms.decrypt("tenant-a", fresh)).toString("utf8")).toBe("written after rotation");
        } finally {
          await kms.close();
        }
      });
    } else {
      skip("createKms: decrypt after rotation", "capabilities.rotation is false");
    }
  } else {
    skip("createKms cases", "options.client is false");
  }

  const suffix = notRun.length === 0 ? "" : ` (not run: ${notRun.map((n) => `${n.case}: ${n.reason}`).join("; ")})`;
  const suiteName = `KmsProvider conformance: ${name}${suffix}`;
  describe(suiteName, () => {
    for (const [title, fn] of cases) {
      it(
        title,
        async () => {
          const subject = await factory();
          try {
            await fn(subject);
          } finally {
            await subject.provider.close();
          }
        },
        options.timeoutMs,
      );
    }
  });
  return { name: suiteName, registered, notRun };
}

/** Awaits `fn`, expecting a KmsError (with `code`, when given); returns it. */
async function expectKmsError(fn: () => Promise<unknown>, code?: KmsErrorCode): Promise<KmsError> {
  let outcome: { error: unknown } | undefined;
  try {
    await fn();
  } catch (error) {
    outcome = { error };
  }
  if (outcome === undefined) throw new Error(`expected a KmsError${code ? ` with code ${code}` : ""}, but the call succeeded`);
  const { error } = outcome;
  if (!isKmsError(error)) {
    throw new Error(`expected a KmsError${code ? ` with code ${code}` : ""}, got ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`);
  }
  if (code !== undefined) expect(error.code).toBe(code);
  return error;
}

function flipLast(bytes: Uint8Array): Uint8Array {
  const copy = Buffer.from(bytes);
  copy[copy.length - 1] = copy[copy.length - 1]! ^ 0x01;
  return copy;
}

function encodingsOf(key: Uint8Array): string[] {
  const b = Buffer.from(key);
  const hex = b.toString("hex");
  return [hex, hex.toUpperCase(), b.toString("base64"), b.toString("base64url")];
}

/** Message, stack, JSON form and the whole cause chain of an error, as one string. */
function everythingIn(error: unknown): string {
  const parts: string[] = [];
  let current: unknown = error;
  for (let depth = 0; current !== undefined && current !== null && depth < 10; depth++) {
    if (current instanceof Error) {
      parts.push(current.message, current.stack ?? "");
      try {
        parts.push(JSON.stringify(current));
      } catch {
        // circular causes: the message and stack are enough
      }
      current = current.cause;
    } else {
      parts.push(typeof current === "string" ? current : safeJson(current));
      break;
    }
  }
  return parts.join("\n");
}

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}
