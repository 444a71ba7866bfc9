import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it, jest } from "@jest/globals";
import { type KmsClient, type KmsProvider, KmsError, createKms, definitionOf, isKmsError, localKmsProvider } from "@kms/core";
import { shredTenantKey } from "../src/shred";
import type { EvidenceEvent, EvidenceLog, EvidenceRecord } from "../src/types";

const dirs: string[] = [];
const clients: KmsClient[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((kms) => kms.close()));
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** Tenants "doomed" and "kept", each with its own key in a fresh local key store. */
function setup() {
  const dir = mkdtempSync(join(tmpdir(), "kms-shred-"));
  dirs.push(dir);
  const provider = localKmsProvider({ path: join(dir, "keys.json") });
  const kms = createKms({
    registry: [definitionOf(provider)],
    config: {
      providers: { local: {} },
      tenants: { keys: { doomed: { provider: "local", keyId: "tenant-doomed" }, kept: { provider: "local", keyId: "tenant-kept" } } },
    },
    env: {},
  });
  clients.push(kms);
  return { provider, kms };
}

function memoryEvidence(): EvidenceLog & { events: EvidenceEvent[] } {
  const events: EvidenceEvent[] = [];
  return {
    events,
    async append(event) {
      events.push(event);
      return { ...event, seq: events.length, time: new Date(0).toISOString(), prevHash: "0".repeat(64), hash: "1".repeat(64) } as EvidenceRecord;
    },
    records: async function* () {},
    close: async () => {},
  };
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  return promise.then(
    () => "resolved",
    (error: unknown) => (isKmsError(error) ? error.code : String(error)),
  );
}

/** A provider whose key disabling is scripted (all shredTenantKey uses), for the modes and results the local one lacks. */
function scriptedProvider(disableKey: KmsProvider["disableKey"], keyDisabling: ("disable" | "schedule-destruction")[]): KmsProvider {
  const capabilities = { encryptionContext: true, rotation: true, generatesDataKeys: true, insecure: false, keyDisabling };
  return { id: "scripted", capabilities, disableKey } as unknown as KmsProvider;
}

describe("shredTenantKey", () => {
  it("disables the key: that tenant's envelopes fail with KMS_KEY_DISABLED at once, cached or not; others still work", async () => {
    const { provider, kms } = setup();
    const doomed = await kms.encrypt("doomed", "gone soon");
    const older = await kms.encrypt("doomed", "never decrypted yet", { table: "other" }); // another data key
    const kept = await kms.encrypt("kept", "stays");
    await kms.decrypt("doomed", doomed); // its data key is now cached on both sides
    const evidence = memoryEvidence();

    const result = await shredTenantKey({ provider, kms, evidence, tenantId: "doomed", keyId: "tenant-doomed", mode: "disable", actor: "admin:alice" });

    expect(result).toEqual({ mode: "disable", record: expect.objectContaining({ seq: 1, type: "key.disabled" }) });
    expect(evidence.events).toEqual([
      { type: "key.disabled", tenantId: "doomed", provider: "local", keyId: "tenant-doomed", actor: "admin:alice", outcome: "success" },
    ]);
    expect(await codeOf(kms.decrypt("doomed", doomed))).toBe("KMS_KEY_DISABLED");
    expect(await codeOf(kms.decrypt("doomed", older, { table: "other" }))).toBe("KMS_KEY_DISABLED");
    expect(await codeOf(kms.encrypt("doomed", "more"))).toBe("KMS_KEY_DISABLED");
    expect(await codeOf(kms.rewrap("doomed", doomed))).toBe("KMS_KEY_DISABLED");
    expect((await kms.decrypt("kept", kept)).toString()).toBe("stays");
    expect((await kms.decrypt("kept", await kms.encrypt("kept", "new"))).toString()).toBe("new");
    expect(await provider.describeKey("tenant-doomed")).toMatchObject({ enabled: false });
  });

  it("without the client, its cached data key would still decrypt: the purge is what closes that", async () => {
    const { provider, kms } = setup();
    const cached = await kms.encrypt("doomed", "cached");
    await kms.decrypt("doomed", cached);
    const uncached = await kms.encrypt("doomed", "uncached", { table: "other" }); // another data key, never unwrapped
    await shredTenantKey({ provider, tenantId: "doomed", keyId: "tenant-doomed", mode: "disable", actor: "cli" });
    expect((await kms.decrypt("doomed", cached)).toString()).toBe("cached");
    expect(await codeOf(kms.decrypt("doomed", uncached, { table: "other" }))).toBe("KMS_KEY_DISABLED");
    kms.invalidateKey("local", "tenant-doomed");
    expect(await codeOf(kms.decrypt("doomed", cached))).toBe("KMS_KEY_DISABLED");
  });

  it("purges every client given", async () => {
    const { provider, kms } = setup();
    await provider.createKey("tenant-doomed");
    const other = { invalidateKey: jest.fn<KmsClient["invalidateKey"]>() };
    await shredTenantKey({ provider, kms: [kms, other], tenantId: "doomed", keyId: "tenant-doomed", mode: "disable", actor: "cli" });
    expect(other.invalidateKey.mock.calls).toEqual([["local", "tenant-doomed"]]);
  });

  it("refuses a mode the provider cannot do with KMS_PROVIDER_ERROR, changing and recording nothing", async () => {
    const { provider, kms } = setup();
    const envelope = await kms.encrypt("doomed", "x");
    const evidence = memoryEvidence();
    const error = (await shredTenantKey({ provider, kms, evidence, tenantId: "doomed", keyId: "tenant-doomed", mode: "schedule-destruction", actor: "cli" }).catch(
      (e: unknown) => e,
    )) as KmsError;
    expect(error).toMatchObject({ code: "KMS_PROVIDER_ERROR", retryable: false, provider: "local" });
    expect(error.message).toContain('provider "local" can only disable');
    const withoutMethod = { ...provider, id: "local", capabilities: provider.capabilities, disableKey: undefined } as KmsProvider;
    expect(await codeOf(shredTenantKey({ provider: withoutMethod, tenantId: "doomed", keyId: "k", mode: "disable", actor: "cli" }))).toBe("KMS_PROVIDER_ERROR");
    expect(evidence.events).toEqual([]);
    expect((await kms.decrypt("doomed", envelope)).toString()).toBe("x");
  });

  it("schedules destruction and records the provider's request id", async () => {
    const disableKey = jest.fn<NonNullable<KmsProvider["disableKey"]>>(async () => ({ requestId: "req-123" }));
    const provider = scriptedProvider(disableKey, ["disable", "schedule-destruction"]);
    const evidence = memoryEvidence();
    const result = await shredTenantKey({ provider, evidence, tenantId: "t", keyId: "key-t", mode: "schedule-destruction", actor: "admin:bob" });
    expect(result).toMatchObject({ mode: "schedule-destruction", requestId: "req-123" });
    expect(disableKey.mock.calls).toEqual([["key-t", { mode: "schedule-destruction", signal: undefined }]]);
    expect(evidence.events).toEqual([
      { type: "key.destruction-scheduled", tenantId: "t", provider: "scripted", keyId: "key-t", actor: "admin:bob", outcome: "success", requestId: "req-123" },
    ]);
  });

  it("records a provider failure with its code and request id, rethrows it, and purges nothing", async () => {
    const refused = new KmsError("KMS_ACCESS_DENIED", "no kms:DisableKey", { provider: "scripted", requestId: "req-9" });
    const provider = scriptedProvider(async () => Promise.reject(refused), ["disable"]);
    const kms = { invalidateKey: jest.fn<KmsClient["invalidateKey"]>() };
    const evidence = memoryEvidence();
    await expect(shredTenantKey({ provider, kms, evidence, tenantId: "t", keyId: "key-t", mode: "disable", actor: "cli" })).rejects.toBe(refused);
    expect(kms.invalidateKey).not.toHaveBeenCalled();
    expect(evidence.events).toEqual([
      { type: "key.disabled", tenantId: "t", provider: "scripted", keyId: "key-t", actor: "cli", outcome: "failure", errorCode: "KMS_ACCESS_DENIED", requestId: "req-9" },
    ]);
  });

  it("refuses bad input with INPUT_INVALID before any call", async () => {
    const disableKey = jest.fn<NonNullable<KmsProvider["disableKey"]>>(async () => ({}));
    const provider = scriptedProvider(disableKey, ["disable"]);
    const base = { provider, tenantId: "t", keyId: "k", mode: "disable" as const, actor: "cli" };
    for (const bad of [{ tenantId: "" }, { keyId: 7 }, { actor: "" }, { mode: "delete" }, { provider: undefined }]) {
      expect(await codeOf(shredTenantKey({ ...base, ...(bad as object) }))).toBe("INPUT_INVALID");
    }
    expect(disableKey).not.toHaveBeenCalled();
  });
});
