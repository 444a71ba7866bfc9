import { constants, createPublicKey, publicEncrypt, randomBytes } from "node:crypto";
import { request as httpsRequest } from "node:https";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "@jest/globals";
import { CryptographyClient, KeyClient, type KeyClientOptions, type KeyVaultKey } from "@azure/keyvault-keys";
import { AZURE_CHALLENGE_OPERATION, AZURE_EMULATOR_IDENTITY, AzureKeyVaultEmulator } from "../src/emulators/azure";
import { givenCertificate } from "./given-certificate";

const START = new Date("2025-01-02T03:04:05.000Z");
const LIMITED = "limited-app";
const emulator = new AzureKeyVaultEmulator({ now: () => START });
let keys: KeyClient;

/** A client with SDK retries off (so counts are exact), trusting the emulator's certificate. */
const keyClient = (options: KeyClientOptions = {}, identity?: string) => new KeyClient(emulator.url, emulator.credential(identity), { ...emulator.clientOptions(), ...options });

/** A CryptographyClient that never GETs the key first (a KeyVaultKey without key material: every operation remote). */
function cryptoClient(name: string, version = "", target = emulator, identity?: string): CryptographyClient {
  const remoteOnly: KeyVaultKey = { name, id: `${target.url}/keys/${name}${version ? `/${version}` : ""}`, properties: { name, vaultUrl: target.url, ...(version ? { version } : {}) } };
  return new CryptographyClient(remoteOnly, target.credential(identity), target.clientOptions());
}

beforeAll(async () => {
  await emulator.start();
  keys = keyClient();
});

afterAll(async () => {
  await emulator.stop();
});

beforeEach(() => {
  emulator.clearFaults();
  emulator.resetLog();
  emulator.setPermissions(AZURE_EMULATOR_IDENTITY, "*");
  emulator.throttleRetryAfterSeconds = 1;
});

interface RawAnswer {
  status: number;
  body: Record<string, unknown> | undefined;
  headers: Record<string, string | string[] | undefined>;
}

/** A request on a fresh connection (trusting the emulator's certificate), for what the SDK never sends. */
function raw(method: string, path: string, headers: Record<string, string> = {}, body = ""): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(`${emulator.url}${path}`, { method, agent: false, ca: emulator.ca, headers: { ...headers, "content-length": Buffer.byteLength(body) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        resolve({ status: res.statusCode ?? 0, body: text === "" ? undefined : (JSON.parse(text) as Record<string, unknown>), headers: res.headers });
      });
    });
    req.on("error", reject);
    req.end(body);
  });
}

const BEARER = { authorization: `Bearer kv-emulator.${AZURE_EMULATOR_IDENTITY}` };

/** The status, Key Vault error code and innererror of an SDK failure. */
async function failure(promise: Promise<unknown>): Promise<{ status: unknown; code: unknown; inner: unknown; message: string }> {
  try {
    await promise;
  } catch (error) {
    const e = error as { statusCode?: unknown; code?: unknown; message: string; details?: { error?: { innerError?: { code?: unknown } } } };
    return { status: e.statusCode, code: e.code, inner: e.details?.error?.innerError?.code, message: e.message };
  }
  throw new Error("expected the call to fail");
}

describe("HTTPS with a per-client trusted certificate", () => {
  it("serves https with a certificate generated at start(); a client that does not trust it is refused", async () => {
    expect(emulator.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(emulator.ca).toMatch(/^-----BEGIN CERTIFICATE-----/);
    const untrusting = new KeyClient(emulator.url, emulator.credential(), { retryOptions: { maxRetries: 0 }, disableChallengeResourceVerification: true });
    expect(await failure(untrusting.getKey("any"))).toEqual({ status: undefined, code: "DEPTH_ZERO_SELF_SIGNED_CERT", inner: undefined, message: "self-signed certificate" });
    expect(emulator.count()).toBe(0);
    // Trust is per client: nothing was switched off for the process.
    expect(process.env.NODE_TLS_REJECT_UNAUTHORIZED).toBeUndefined();
  });

  it("uses a certificate it is given, as is", async () => {
    const given = await givenCertificate();
    const own = new AzureKeyVaultEmulator({ tls: given });
    await own.start();
    try {
      expect(own.ca).toBe(given.cert);
      await own.createKey("k");
      const client = new KeyClient(own.url, own.credential(), own.clientOptions());
      expect((await client.getKey("k")).name).toBe("k");
    } finally {
      await own.stop();
    }
  });
});

describe("challenge-based authentication", () => {
  it("answers a token-less request 401 with Key Vault's challenge, logged as Challenge, before any fault", async () => {
    emulator.inject("*", { kind: "serverError" });
    const answer = await raw("GET", "/keys/anything/?api-version=7.5");
    expect(answer.status).toBe(401);
    expect(answer.headers["www-authenticate"]).toBe(`Bearer authorization="https://login.microsoftonline.com/${emulator.tenantId}", resource="https://vault.azure.net"`);
    expect(emulator.requests).toEqual([{ operation: AZURE_CHALLENGE_OPERATION, keyId: "anything", status: 401 }]);
  });

  it("the SDK answers the challenge with a token naming its identity: one Challenge per client, then the requests", async () => {
    await emulator.createKey("auth");
    const client = keyClient();
    await client.getKey("auth");
    await client.getKey("auth");
    expect(emulator.requests.map((r) => `${r.operation} ${r.status} ${r.identity ?? "-"}`)).toEqual([
      "Challenge 401 -",
      `GetKey 200 ${AZURE_EMULATOR_IDENTITY}`,
      `GetKey 200 ${AZURE_EMULATOR_IDENTITY}`,
    ]);
  });

  it("a token it did not issue is 401", async () => {
    const answer = await raw("GET", "/keys/auth/?api-version=7.5", { authorization: "Bearer someone-elses-token" });
    expect({ status: answer.status, body: answer.body }).toEqual({ status: 401, body: { error: { code: "Unauthorized", message: "AKV10032: Invalid issuer or token." } } });
  });

  it("a Managed HSM challenges for https://managedhsm.azure.net", async () => {
    const hsm = new AzureKeyVaultEmulator({ managedHsm: true });
    await hsm.start();
    try {
      const answer = await new Promise<string | undefined>((resolve, reject) => {
        httpsRequest(`${hsm.url}/keys/k/?api-version=7.5`, { ca: hsm.ca, agent: false }, (res) => {
          res.resume();
          resolve(res.headers["www-authenticate"] as string | undefined);
        })
          .on("error", reject)
          .end();
      });
      expect(answer).toBe(`Bearer authorization="https://login.microsoftonline.com/${hsm.tenantId}", resource="https://managedhsm.azure.net"`);
    } finally {
      await hsm.stop();
    }
  });
});

describe("keys and versions", () => {
  it("CreateKey / GetKey: RSA with versioned kids on the emulator's URL; GetKey shows public parts only", async () => {
    const created = await keys.createRsaKey("rsa-one", { keySize: 3072 });
    expect(created.id).toMatch(new RegExp(`^${emulator.url}/keys/rsa-one/[0-9a-f]{32}$`));
    expect({ kty: created.keyType, enabled: created.properties.enabled, createdOn: created.properties.createdOn }).toEqual({ kty: "RSA", enabled: true, createdOn: START });
    expect(created.key?.n).toHaveLength(384);
    const answer = await raw("GET", `/keys/rsa-one/?api-version=7.5`, BEARER);
    const jwk = answer.body!.key as Record<string, unknown>;
    expect(Object.keys(jwk).sort()).toEqual(["e", "key_ops", "kid", "kty", "n"]);
    expect(answer.headers["x-ms-request-id"]).toMatch(/^[0-9a-f-]{36}$/);
    expect(emulator.requests.map((r) => r.operation)).toEqual(["Challenge", "CreateKey", "GetKey"]);
  });

  it("RotateKey adds a current version; GetKey by version; an unknown key or version is 404 KeyNotFound", async () => {
    const v1 = await emulator.createKey("rotating");
    const rotated = await keys.rotateKey("rotating");
    expect(rotated.id).not.toBe(v1);
    expect(emulator.versions("rotating").map((v) => v.kid)).toEqual([v1, rotated.id]);
    expect((await keys.getKey("rotating")).id).toBe(rotated.id);
    expect((await keys.getKey("rotating", { version: v1.split("/").pop()! })).id).toBe(v1);
    expect(await failure(keys.getKey("nope"))).toMatchObject({ status: 404, code: "KeyNotFound" });
    expect(await failure(keys.getKey("rotating", { version: "0".repeat(32) }))).toMatchObject({ status: 404, code: "KeyNotFound" });
  });

  it("oct-HSM keys only on a Managed HSM; their GetKey never shows k", async () => {
    expect(await failure(keys.createKey("aes", "oct-HSM", { keySize: 256 }))).toMatchObject({ status: 400, code: "BadParameter" });
    const hsm = new AzureKeyVaultEmulator({ managedHsm: true });
    await hsm.start();
    try {
      const client = new KeyClient(hsm.url, hsm.credential(), hsm.clientOptions());
      const created = await client.createKey("aes", "oct-HSM", { keySize: 256 });
      expect({ kty: created.keyType, k: created.key?.k }).toEqual({ kty: "oct-HSM", k: undefined });
      const crypto = cryptoClient("aes", "", hsm);
      const key = randomBytes(32);
      const wrapped = await crypto.wrapKey("A256KW", key);
      expect(wrapped.result).toHaveLength(40);
      expect(Buffer.from((await crypto.unwrapKey("A256KW", wrapped.result)).result).equals(key)).toBe(true);
      const tampered = Buffer.from(wrapped.result);
      tampered[0] = tampered[0]! ^ 1;
      expect(await failure(crypto.unwrapKey("A256KW", tampered))).toMatchObject({ status: 400, code: "BadParameter" });
      expect(await failure(crypto.wrapKey("RSA-OAEP-256", key))).toMatchObject({ status: 400, code: "BadParameter" });
    } finally {
      await hsm.stop();
    }
  });
});

describe("WrapKey / UnwrapKey", () => {
  it("RSA-OAEP-256 for real: what Node wraps with the public JWK, the emulator unwraps; without a version the current one answers and its kid says so", async () => {
    const kid = await emulator.createKey("wrapping");
    const { key } = await keys.getKey("wrapping");
    const publicKey = createPublicKey({ key: { kty: "RSA", n: Buffer.from(key!.n!).toString("base64url"), e: Buffer.from(key!.e!).toString("base64url") }, format: "jwk" });
    const secret = randomBytes(32);
    const wrappedLocally = publicEncrypt({ key: publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha256" }, secret);
    const version = kid.split("/").pop()!;
    const crypto = cryptoClient("wrapping", version);
    expect(Buffer.from((await crypto.unwrapKey("RSA-OAEP-256", wrappedLocally)).result).equals(secret)).toBe(true);
    let answeredKid: unknown;
    const current = cryptoClient("wrapping");
    const wrapped = await current.wrapKey("RSA-OAEP", secret, { onResponse: (r) => (answeredKid = (r.parsedBody as { kid?: unknown } | undefined)?.kid) });
    expect(answeredKid).toBe(kid);
    expect(Buffer.from((await crypto.unwrapKey("RSA-OAEP", wrapped.result)).result).equals(secret)).toBe(true);
    expect(await failure(crypto.unwrapKey("RSA-OAEP-256", wrapped.result))).toMatchObject({ status: 400, code: "BadParameter" });
    expect(emulator.requests.filter((r) => r.operation !== "Challenge").map((r) => `${r.operation} ${r.details?.version ?? "current"} ${r.status}`)).toEqual([
      "GetKey current 200",
      `UnwrapKey ${version} 200`,
      "WrapKey current 200",
      `UnwrapKey ${version} 200`,
      `UnwrapKey ${version} 400`,
    ]);
  });

  it("a disabled version refuses crypto with 403 KeyDisabled while GetKey still answers; other versions keep working", async () => {
    const v1 = (await emulator.createKey("disabling")).split("/").pop()!;
    const secret = randomBytes(32);
    const old = await cryptoClient("disabling", v1).wrapKey("RSA-OAEP-256", secret);
    await emulator.rotateKey("disabling");
    emulator.disableKey("disabling", v1);
    expect(await failure(cryptoClient("disabling", v1).unwrapKey("RSA-OAEP-256", old.result))).toMatchObject({ status: 403, code: "Forbidden", inner: "KeyDisabled" });
    expect((await keys.getKey("disabling", { version: v1 })).properties.enabled).toBe(false);
    expect((await cryptoClient("disabling").wrapKey("RSA-OAEP-256", secret)).result).toHaveLength(256);
    emulator.enableKey("disabling", v1);
    expect(Buffer.from((await cryptoClient("disabling", v1).unwrapKey("RSA-OAEP-256", old.result)).result).equals(secret)).toBe(true);
  });
});

describe("ListKeyVersions, UpdateKey and DeleteKey", () => {
  it("lists every version with its attributes, following nextLink page by page", async () => {
    await emulator.createKey("listed");
    for (let i = 0; i < 26; i++) await emulator.rotateKey("listed"); // 27 versions: two pages of 25
    emulator.resetLog();
    const listed: { version?: string; enabled?: boolean }[] = [];
    for await (const properties of keys.listPropertiesOfKeyVersions("listed")) listed.push({ version: properties.version, enabled: properties.enabled });
    expect(listed).toEqual(emulator.versions("listed").map((v) => ({ version: v.version, enabled: true })));
    expect(emulator.counts()).toEqual({ ListKeyVersions: 2 });
    expect(await failure(keys.listPropertiesOfKeyVersions("nothing-here").next())).toMatchObject({ status: 404, code: "KeyNotFound" });
  }, 180_000); // 27 RSA key generations: seconds each when CI loads both cores

  it("updateKeyProperties sets enabled on one version, or on the current one when none is named", async () => {
    const v1 = (await emulator.createKey("toggled")).split("/").pop()!;
    const v2 = (await emulator.rotateKey("toggled")).split("/").pop()!;
    const updated = await keys.updateKeyProperties("toggled", v1, { enabled: false });
    expect([updated.properties.version, updated.properties.enabled]).toEqual([v1, false]);
    expect(emulator.versions("toggled").map((v) => v.enabled)).toEqual([false, true]);
    expect(await failure(cryptoClient("toggled", v1).wrapKey("RSA-OAEP-256", randomBytes(32)))).toMatchObject({ status: 403, inner: "KeyDisabled" });
    expect((await keys.updateKeyProperties("toggled", { enabled: false })).properties.version).toBe(v2); // PATCH /keys/toggled/
    expect(emulator.versions("toggled").map((v) => v.enabled)).toEqual([false, false]);
    await keys.updateKeyProperties("toggled", v1, { enabled: true });
    expect(emulator.versions("toggled").map((v) => v.enabled)).toEqual([true, false]);
    expect(await failure(keys.updateKeyProperties("toggled", "0".repeat(32), { enabled: false }))).toMatchObject({ status: 404, code: "KeyNotFound" });
    expect(emulator.requests.filter((r) => r.operation === "UpdateKey").map((r) => [r.status, r.details?.version])).toEqual([
      [200, v1],
      [200, undefined],
      [200, v1],
      [404, "0".repeat(32)],
    ]);
  });

  it("beginDeleteKey soft-deletes every version: the name is then 404, GetDeletedKey answers with the purge date", async () => {
    await emulator.createKey("doomed");
    await emulator.rotateKey("doomed");
    emulator.resetLog();
    const poller = await keys.beginDeleteKey("doomed");
    const deleted = poller.getResult()!;
    expect(deleted.properties.recoveryId).toBe(`${emulator.url}/deletedkeys/doomed`);
    expect(deleted.properties.deletedOn).toEqual(START);
    expect(deleted.properties.scheduledPurgeDate).toEqual(new Date(START.getTime() + 90 * 86_400_000));
    expect(emulator.counts()).toEqual({ DeleteKey: 1, GetDeletedKey: 1 }); // the SDK's poller looks at once
    expect(emulator.deletedKey("doomed")?.versions).toHaveLength(2);
    expect(() => emulator.versions("doomed")).toThrow(RangeError);
    expect(await failure(keys.getKey("doomed"))).toMatchObject({ status: 404, code: "KeyNotFound" });
    expect(await failure(cryptoClient("doomed").unwrapKey("RSA-OAEP-256", randomBytes(256)))).toMatchObject({ status: 404, code: "KeyNotFound" });
    expect(await failure(keys.beginDeleteKey("doomed"))).toMatchObject({ status: 404, code: "KeyNotFound" });
    expect(await failure(keys.getDeletedKey("never-there"))).toMatchObject({ status: 404, code: "KeyNotFound" });
  });

  it("each needs its own permission: list, update, delete (data actions keys/read, keys/update/action, keys/delete)", async () => {
    await emulator.createKey("guarded");
    emulator.setPermissions(LIMITED, ["get", "wrapKey", "unwrapKey"]);
    const limited = keyClient({}, LIMITED);
    const denied = [
      await failure(limited.updateKeyProperties("guarded", { enabled: false })),
      await failure(limited.beginDeleteKey("guarded")),
    ];
    expect(denied.map((d) => [d.status, d.inner, /Action: '([^']+)'/.exec(d.message)?.[1]])).toEqual([
      [403, "ForbiddenByRbac", "Microsoft.KeyVault/vaults/keys/update/action"],
      [403, "ForbiddenByRbac", "Microsoft.KeyVault/vaults/keys/delete"],
    ]);
    // The SDK's pager keeps only the status and code of a failed page; the body is Key Vault's denial all the same.
    expect(await failure(limited.listPropertiesOfKeyVersions("guarded").next())).toMatchObject({ status: 403, code: "Forbidden" });
    const listed = await raw("GET", "/keys/guarded/versions?api-version=7.5", { authorization: `Bearer kv-emulator.${LIMITED}` });
    expect(listed.status).toBe(403);
    expect(JSON.stringify(listed.body)).toContain("Action: 'Microsoft.KeyVault/vaults/keys/read'");
    expect(emulator.requests.filter((r) => r.status === 403).map((r) => r.operation)).toEqual(["UpdateKey", "DeleteKey", "ListKeyVersions", "ListKeyVersions"]);
    expect(emulator.versions("guarded").map((v) => v.enabled)).toEqual([true]);
  });

  it("a Managed HSM names its own data action for updates", async () => {
    const hsm = new AzureKeyVaultEmulator({ managedHsm: true, retentionDays: 7 });
    await hsm.start();
    try {
      await hsm.createKey("hsm-key", { kty: "oct-HSM" });
      hsm.setPermissions(LIMITED, ["get"]);
      const client = new KeyClient(hsm.url, hsm.credential(LIMITED), hsm.clientOptions());
      expect((await failure(client.updateKeyProperties("hsm-key", { enabled: false }))).message).toContain("Action: 'Microsoft.KeyVault/managedHsm/keys/write/action'");
      hsm.setPermissions(LIMITED, "*");
      expect((await (await client.beginDeleteKey("hsm-key")).getResult()!).properties.recoverableDays).toBe(7);
    } finally {
      await hsm.stop();
    }
    expect(() => new AzureKeyVaultEmulator({ retentionDays: 3 })).toThrow(RangeError);
  });
});

describe("RBAC per identity", () => {
  it("an operation outside the identity's permissions is 403 ForbiddenByRbac naming the caller and the data action", async () => {
    await emulator.createKey("rbac");
    emulator.setPermissions(LIMITED, ["get"]);
    expect((await keyClient({}, LIMITED).getKey("rbac")).name).toBe("rbac");
    const denied = await failure(cryptoClient("rbac", "", emulator, LIMITED).wrapKey("RSA-OAEP-256", randomBytes(32)));
    expect(denied).toMatchObject({ status: 403, code: "Forbidden", inner: "ForbiddenByRbac" });
    const oid = emulator.objectId(LIMITED);
    expect(denied.message).toBe(
      [
        "Caller is not authorized to perform action on resource.",
        "If role assignments, deny assignments or role definitions were changed recently, please observe propagation time.",
        `Caller: appid=${oid};oid=${oid};iss=https://sts.windows.net/${emulator.tenantId}/`,
        "Action: 'Microsoft.KeyVault/vaults/keys/wrap/action'",
        "Resource: '/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/emulator/providers/microsoft.keyvault/vaults/emulator/keys/rbac'",
        "Assignment: (not found)",
        "DecisionReason: 'DeniedWithNoValidRBAC' ",
        "Vault: emulator;location=local",
        "",
      ].join("\r\n"),
    );
    expect(emulator.requests.at(-1)).toMatchObject({ operation: "WrapKey", status: 403, identity: LIMITED });
  });
});

describe("the wire", () => {
  it("api-version is required, and read from api%2Dversion as the SDK sends it", async () => {
    await emulator.createKey("wire");
    expect((await raw("GET", "/keys/wire/", BEARER)).body).toEqual({ error: { code: "BadParameter", message: "The api-version query parameter is missing or not supported." } });
    expect((await raw("GET", "/keys/wire/?api%2Dversion=7.4", BEARER)).status).toBe(200);
    await keyClient({ serviceVersion: "7.5" }).getKey("wire");
    expect(emulator.requests.filter((r) => r.operation === "GetKey").map((r) => r.details?.apiVersion)).toEqual(["7.4", "7.5"]);
  });

  it("paths it does not serve are 400 BadParameter; request bodies are never logged", async () => {
    expect((await raw("GET", "/secrets/x?api-version=7.5", BEARER)).status).toBe(400);
    expect((await raw("POST", "/keys/x/1/2/3?api-version=7.5", BEARER)).status).toBe(400);
    await emulator.createKey("logged");
    await cryptoClient("logged").wrapKey("RSA-OAEP-256", Buffer.alloc(32, 0xab));
    for (const entry of emulator.requests) {
      expect(Object.keys(entry).every((k) => ["operation", "keyId", "status", "fault", "identity", "details"].includes(k))).toBe(true);
      expect(JSON.stringify(entry).includes("q6urq6ur")).toBe(false); // base64url of the 0xab bytes
    }
  });
});

describe("faults render as Key Vault's errors", () => {
  beforeAll(async () => {
    await emulator.createKey("faulty");
  });

  it("throttle → 429 Throttled with Retry-After", async () => {
    emulator.throttleRetryAfterSeconds = 7;
    emulator.inject("GetKey", { kind: "throttle" }, { times: 1 });
    const answer = await raw("GET", "/keys/faulty/?api-version=7.5", BEARER);
    expect({ status: answer.status, retryAfter: answer.headers["retry-after"], code: (answer.body!.error as { code: string }).code }).toEqual({ status: 429, retryAfter: "7", code: "Throttled" });
    expect(emulator.requests).toEqual([{ operation: "GetKey", keyId: "faulty", status: 429, fault: "throttle", identity: AZURE_EMULATOR_IDENTITY, details: { apiVersion: "7.5" } }]);
  });

  it("serverError, accessDenied, keyDisabled, keyNotFound, connectionReset, through the SDK", async () => {
    const crypto = cryptoClient("faulty");
    const wrap = () => crypto.wrapKey("RSA-OAEP-256", randomBytes(32));
    await wrap(); // answers the challenge first
    const cases: [Parameters<typeof emulator.inject>[1], object][] = [
      [{ kind: "serverError" }, { status: 500, code: "InternalServerError" }],
      [{ kind: "serverError", status: 503 }, { status: 503, code: "ServiceUnavailable" }],
      [{ kind: "accessDenied" }, { status: 403, code: "Forbidden", inner: "ForbiddenByRbac" }],
      [{ kind: "keyDisabled" }, { status: 403, code: "Forbidden", inner: "KeyDisabled", message: "Operation wrapKey is not allowed on a disabled key." }],
      [{ kind: "keyNotFound" }, { status: 404, code: "KeyNotFound" }],
    ];
    for (const [fault, expected] of cases) {
      emulator.inject("WrapKey", fault, { times: 1 });
      expect(await failure(wrap())).toMatchObject(expected);
    }
    emulator.inject("WrapKey", { kind: "connectionReset" }, { times: 1 });
    expect(await failure(wrap())).toMatchObject({ status: undefined, code: "ECONNRESET" });
    expect((await wrap()).result).toHaveLength(256);
  });
});
