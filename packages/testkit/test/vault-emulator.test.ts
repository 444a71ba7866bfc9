import { Agent, request as httpRequest } from "node:http";
import { afterAll, afterEach, beforeEach, describe, expect, it } from "@jest/globals";
import vault from "node-vault";
import { VaultEmulator, type VaultEmulatorOptions } from "../src/emulators/vault";

/** One agent without keep-alive, so no pooled socket outlives a test. */
const agent = new Agent({ keepAlive: false });
afterAll(() => agent.destroy());

const T0 = Date.UTC(2024, 0, 1, 0, 0, 0);
const MISSING_CONTEXT =
  "missing 'context' for key derivation; the key was created using a derived key, which means additional, per-request information must be included in order to perform operations with the key";
const DENIED_MULTI = "1 error occurred:\n\t* permission denied\n\n";
const TOO_OLD = "ciphertext or signature version is disallowed by policy (too old)";

let nowMs = T0;
let emulator: VaultEmulator;
let url: string;

/** A fresh emulator (with a clock tests move by hand) listening on an ephemeral port. */
async function start(options: VaultEmulatorOptions = {}): Promise<void> {
  await emulator?.stop();
  emulator = new VaultEmulator({ now: () => new Date(nowMs), ...options });
  url = await emulator.start();
}

beforeEach(async () => {
  nowMs = T0;
  await start();
});

afterEach(async () => {
  await emulator.stop();
});

/** The real node-vault client, every option explicit (no VAULT_* environment fallback). */
function client(token = "root", namespace?: string) {
  return vault({
    apiVersion: "v1",
    endpoint: url,
    token,
    noCustomHTTPVerbs: true,
    ...(namespace === undefined ? {} : { namespace }),
    requestOptions: { timeout: 5000, httpAgent: agent },
  });
}

/** The status and body of node-vault's ApiResponseError (or the network error's code). */
async function failure(promise: Promise<unknown>): Promise<{ status: number; body: unknown } | { code: string }> {
  try {
    await promise;
  } catch (error) {
    const e = error as { response?: { statusCode: number; body: unknown }; code?: string };
    if (e.response) return { status: e.response.statusCode, body: e.response.body };
    return { code: String(e.code) };
  }
  throw new Error("expected the call to fail");
}

const b64 = (text: string) => Buffer.from(text, "utf8").toString("base64");
const CTX = b64("tenant-a");

describe("transit keys", () => {
  it("creates a key and reads the full payload in Vault's envelope", async () => {
    const v = client();
    const created = await v.write("transit/keys/k1", { type: "aes256-gcm96", derived: true, exportable: false });
    expect(created.data.name).toBe("k1");
    const read = await v.read("transit/keys/k1");
    expect(read).toEqual({
      request_id: expect.any(String),
      lease_id: "",
      renewable: false,
      lease_duration: 0,
      wrap_info: null,
      warnings: null,
      auth: null,
      data: {
        name: "k1",
        type: "aes256-gcm96",
        keys: { "1": T0 / 1000 },
        latest_version: 1,
        min_available_version: 0,
        min_decryption_version: 1,
        min_encryption_version: 0,
        deletion_allowed: false,
        derived: true,
        kdf: "hkdf_sha256",
        convergent_encryption: false,
        exportable: false,
        allow_plaintext_backup: false,
        auto_rotate_period: 0,
        imported_key: false,
        supports_encryption: true,
        supports_decryption: true,
        supports_derivation: true,
        supports_signing: false,
      },
    });
    expect(emulator.counts()).toEqual({ "keys.create": 1, "keys.read": 1 });
  });

  it("accepts derived=true as the CLI sends it (a string), is idempotent, and refuses other key types", async () => {
    const v = client();
    await v.write("transit/keys/cli", { derived: "true" });
    await v.write("transit/keys/cli", { derived: "false" }); // exists: unchanged
    expect((await v.read("transit/keys/cli")).data.derived).toBe(true);
    await v.write("transit/keys/plain", {});
    expect((await v.read("transit/keys/plain")).data.derived).toBe(false);
    expect(await failure(v.write("transit/keys/rsa", { type: "rsa-2048" }))).toEqual({
      status: 400,
      body: { errors: ['unknown key type "rsa-2048" (this emulator supports aes256-gcm96 only)'] },
    });
  });

  it("lists keys with GET ?list=1 (node-vault's list() with noCustomHTTPVerbs), 404 when there are none", async () => {
    const v = client();
    expect(await failure(v.list("transit/keys"))).toEqual({ status: 404, body: { errors: [] } });
    emulator.createKey("b");
    emulator.createKey("a");
    expect((await v.list("transit/keys")).data).toEqual({ keys: ["a", "b"] });
    expect(emulator.requests.map((r) => [r.operation, r.status, r.details?.path])).toEqual([
      ["keys.list", 404, "transit/keys/"],
      ["keys.list", 200, "transit/keys/"],
    ]);
  });

  it("rotates: new versions encrypt, old ciphertexts still decrypt, rewrap moves them to the latest", async () => {
    const v = client();
    emulator.createKey("k");
    const one = await v.write("transit/encrypt/k", { plaintext: b64("secret"), context: CTX });
    expect(one.data).toEqual({ ciphertext: expect.stringMatching(/^vault:v1:[A-Za-z0-9+/]+=*$/), key_version: 1 });
    nowMs += 60_000;
    const rotated = await v.write("transit/keys/k/rotate", {});
    expect(rotated.data.latest_version).toBe(2);
    expect(rotated.data.keys).toEqual({ "1": T0 / 1000, "2": T0 / 1000 + 60 });
    const two = await v.write("transit/encrypt/k", { plaintext: b64("secret"), context: CTX });
    expect(two.data.ciphertext).toMatch(/^vault:v2:/);
    expect(two.data.key_version).toBe(2);
    for (const c of [one.data.ciphertext, two.data.ciphertext]) {
      expect((await v.write("transit/decrypt/k", { ciphertext: c, context: CTX })).data).toEqual({ plaintext: b64("secret") });
    }
    const rewrapped = await v.write("transit/rewrap/k", { ciphertext: one.data.ciphertext, context: CTX });
    expect(rewrapped.data).toEqual({ ciphertext: expect.stringMatching(/^vault:v2:/), key_version: 2 });
    expect((await v.write("transit/decrypt/k", { ciphertext: rewrapped.data.ciphertext, context: CTX })).data.plaintext).toBe(b64("secret"));
    expect(emulator.counts()).toEqual({ encrypt: 2, "keys.rotate": 1, decrypt: 3, rewrap: 1 });
  });

  it("min_decryption_version refuses older ciphertexts; config is checked as Vault checks it", async () => {
    const v = client();
    emulator.createKey("k");
    const old = (await v.write("transit/encrypt/k", { plaintext: b64("x"), context: CTX })).data.ciphertext;
    await v.write("transit/keys/k/rotate", {});
    expect(await failure(v.write("transit/keys/k/config", { min_decryption_version: 3 }))).toEqual({
      status: 400,
      body: { errors: ["cannot set min decryption version of 3, latest key version is 2"] },
    });
    const configured = await v.write("transit/keys/k/config", { min_decryption_version: 2, deletion_allowed: true });
    expect(configured.data).toMatchObject({ min_decryption_version: 2, min_encryption_version: 0, deletion_allowed: true });
    expect(await failure(v.write("transit/decrypt/k", { ciphertext: old, context: CTX }))).toEqual({ status: 400, body: { errors: [TOO_OLD] } });
    expect(await failure(v.write("transit/keys/k/config", { min_encryption_version: 1 }))).toEqual({
      status: 400,
      body: { errors: ["min encryption version 1 must be greater than or equal to min decryption version 2"] },
    });
    await v.write("transit/keys/k/config", { min_encryption_version: 2 });
    expect(await failure(v.write("transit/encrypt/k", { plaintext: b64("x"), context: CTX, key_version: 1 }))).toEqual({
      status: 400,
      body: { errors: ["requested version for encryption is less than the minimum encryption key version"] },
    });
    expect((await v.write("transit/encrypt/k", { plaintext: b64("x"), context: CTX })).data.key_version).toBe(2);
  });
});

describe("key deletion (DELETE <mount>/keys/:name)", () => {
  it("refuses until deletion_allowed is set, then deletes at once (204): the key, every version, every ciphertext is gone", async () => {
    const v = client();
    emulator.createKey("doomed");
    await v.write("transit/keys/doomed/rotate", {});
    const old = (await v.write("transit/datakey/plaintext/doomed", { context: CTX })).data.ciphertext;
    expect(await failure(v.delete("transit/keys/doomed"))).toEqual({
      status: 400,
      body: { errors: ["error deleting policy doomed: deletion is not allowed for this policy"] },
    });
    const configured = await v.write("transit/keys/doomed/config", { deletion_allowed: true });
    expect(configured).toMatchObject({ request_id: expect.any(String), data: { deletion_allowed: true, latest_version: 2 } });
    await v.delete("transit/keys/doomed");
    expect(await failure(v.read("transit/keys/doomed"))).toEqual({ status: 404, body: { errors: [] } });
    const gone = { status: 400, body: { errors: ["encryption key not found"] } };
    expect(await failure(v.write("transit/decrypt/doomed", { ciphertext: old, context: CTX }))).toEqual(gone);
    expect(await failure(v.write("transit/datakey/plaintext/doomed", { context: CTX }))).toEqual(gone);
    expect(await failure(v.delete("transit/keys/doomed"))).toEqual({ status: 400, body: { errors: ["error deleting policy doomed: could not delete key; not found"] } });
    // A key created again under the same name is a new key: the old ciphertexts stay undecryptable.
    emulator.createKey("doomed");
    expect((await failure(v.write("transit/decrypt/doomed", { ciphertext: old, context: CTX })) as { status: number }).status).toBe(400);
    expect(emulator.requests.map((r) => [r.operation, r.status])).toEqual([
      ["keys.rotate", 200],
      ["datakey", 200],
      ["keys.delete", 400],
      ["keys.config", 200],
      ["keys.delete", 204],
      ["keys.read", 404],
      ["decrypt", 400],
      ["datakey", 400],
      ["keys.delete", 400],
      ["decrypt", 400],
    ]);
  });

  it("needs the delete capability on the key's path (config needs update on keys/:name/config): a read-only rule is 403", async () => {
    await start({
      tokens: {
        root: { name: "root", paths: ["*"] },
        app: { name: "app", paths: [{ path: "transit/keys/+", capabilities: ["read"] }, "transit/datakey/plaintext/+", "transit/decrypt/+"] },
        admin: { name: "admin", paths: [{ path: "transit/keys/+", capabilities: ["read", "delete"] }, { path: "transit/keys/+/config", capabilities: ["update"] }] },
      },
    });
    emulator.createKey("k");
    const denied = { status: 403, body: { errors: [DENIED_MULTI] } };
    const app = client("app");
    await app.read("transit/keys/k");
    expect(await failure(app.write("transit/keys/k/config", { deletion_allowed: true }))).toEqual(denied);
    expect(await failure(app.delete("transit/keys/k"))).toEqual(denied);
    expect(await failure(app.write("transit/keys/k", { derived: true }))).toEqual(denied);
    const caps = await app.write("sys/capabilities-self", { paths: ["transit/keys/k", "transit/keys/k/config"] });
    expect(caps.data).toEqual({ "transit/keys/k": ["read"], "transit/keys/k/config": ["deny"], capabilities: ["deny", "read"] });
    const admin = client("admin");
    await admin.write("transit/keys/k/config", { deletion_allowed: true });
    await admin.delete("transit/keys/k");
    expect(emulator.requests.map((r) => [r.operation, r.status, r.identity])).toEqual([
      ["keys.read", 200, "app"],
      ["keys.config", 403, "app"],
      ["keys.delete", 403, "app"],
      ["keys.create", 403, "app"],
      ["sys/capabilities-self", 200, "app"],
      ["keys.config", 200, "admin"],
      ["keys.delete", 204, "admin"],
    ]);
  });
});

describe("transit data", () => {
  it("datakey/plaintext returns the key and its ciphertext; wrapped returns only the ciphertext; bits 128/256/512", async () => {
    const v = client();
    emulator.createKey("k");
    const dk = await v.write("transit/datakey/plaintext/k", { context: CTX });
    expect(Object.keys(dk.data).sort()).toEqual(["ciphertext", "key_version", "plaintext"]);
    const key = Buffer.from(dk.data.plaintext, "base64");
    expect(key).toHaveLength(32);
    expect(dk.data.ciphertext).toMatch(/^vault:v1:/);
    expect((await v.write("transit/decrypt/k", { ciphertext: dk.data.ciphertext, context: CTX })).data.plaintext).toBe(dk.data.plaintext);
    for (const [bits, bytes] of [
      [128, 16],
      [512, 64],
      ["256", 32],
    ] as const) {
      expect(Buffer.from((await v.write("transit/datakey/plaintext/k", { bits, context: CTX })).data.plaintext, "base64")).toHaveLength(bytes);
    }
    const wrapped = await v.write("transit/datakey/wrapped/k", { context: CTX });
    expect(wrapped.data).toEqual({ ciphertext: expect.stringMatching(/^vault:v1:/), key_version: 1 });
    expect(await failure(v.write("transit/datakey/plaintext/k", { bits: 384, context: CTX }))).toEqual({ status: 400, body: { errors: ["invalid bits length"] } });
    expect(await failure(v.write("transit/datakey/other/k", { context: CTX }))).toEqual({ status: 400, body: { errors: ["invalid type"] } });
    expect(emulator.count("datakey")).toBe(7);
  });

  it("a derived key requires the context on every operation, and a wrong context fails authentication (HTTP 500)", async () => {
    const v = client();
    emulator.createKey("k");
    const missing = { status: 400, body: { errors: [MISSING_CONTEXT] } };
    expect(await failure(v.write("transit/encrypt/k", { plaintext: b64("x") }))).toEqual(missing);
    expect(await failure(v.write("transit/datakey/plaintext/k", {}))).toEqual(missing);
    const c = (await v.write("transit/encrypt/k", { plaintext: b64("x"), context: CTX })).data.ciphertext;
    expect(await failure(v.write("transit/decrypt/k", { ciphertext: c }))).toEqual(missing);
    expect(await failure(v.write("transit/rewrap/k", { ciphertext: c }))).toEqual(missing);
    const wrong = { status: 500, body: { errors: ["cipher: message authentication failed"] } };
    expect(await failure(v.write("transit/decrypt/k", { ciphertext: c, context: b64("tenant-b") }))).toEqual(wrong);
    expect(await failure(v.write("transit/rewrap/k", { ciphertext: c, context: b64("tenant-b") }))).toEqual(wrong);
    expect(await failure(v.write("transit/decrypt/k", { ciphertext: c, context: "not base64!" }))).toEqual({
      status: 400,
      body: { errors: ["failed to base64-decode context"] },
    });
  });

  it("a non-derived key ignores the context, as Vault does (why @kms/vault refuses such keys)", async () => {
    const v = client();
    emulator.createKey("plain", { derived: false });
    const c = (await v.write("transit/encrypt/plain", { plaintext: b64("x"), context: CTX })).data.ciphertext;
    expect((await v.write("transit/decrypt/plain", { ciphertext: c, context: b64("tenant-b") })).data.plaintext).toBe(b64("x"));
    expect((await v.write("transit/decrypt/plain", { ciphertext: c })).data.plaintext).toBe(b64("x"));
  });

  it("malformed and tampered ciphertexts get Vault's messages and statuses", async () => {
    const v = client();
    emulator.createKey("k");
    const good = (await v.write("transit/encrypt/k", { plaintext: b64("x"), context: CTX })).data.ciphertext as string;
    const body = good.slice("vault:v1:".length);
    const bytes = Buffer.from(body, "base64");
    bytes[20] = bytes[20]! ^ 1;
    const flipped = `vault:v1:${bytes.toString("base64")}`;
    const cases: [unknown, number, string][] = [
      ["abc", 400, "invalid ciphertext: no prefix"],
      ["vault:v1", 400, "invalid ciphertext: wrong number of fields"],
      ["vault:vx:AAAA", 400, "invalid ciphertext: version number could not be decoded"],
      ["vault:v9:AAAA", 400, "invalid ciphertext: version is too new"],
      ["vault:v1:!!!!", 400, "invalid ciphertext: could not decode base64"],
      ["vault:v1:AAAA", 500, "cipher: message authentication failed"],
      [flipped, 500, "cipher: message authentication failed"],
      ["", 400, "missing ciphertext to decrypt"],
      [42, 400, "missing ciphertext to decrypt"],
    ];
    for (const [ciphertext, status, message] of cases) {
      expect(await failure(v.write("transit/decrypt/k", { ciphertext, context: CTX }))).toEqual({ status, body: { errors: [message] } });
    }
    expect(await failure(v.write("transit/encrypt/k", { plaintext: "%%%", context: CTX }))).toEqual({
      status: 400,
      body: { errors: ["failed to base64-decode plaintext"] },
    });
  });

  it("a missing key: 400 'encryption key not found' (404 on read), unless autoCreateKeys upserts on encrypt", async () => {
    const v = client();
    const notFound = { status: 400, body: { errors: ["encryption key not found"] } };
    expect(await failure(v.write("transit/encrypt/nope", { plaintext: b64("x"), context: CTX }))).toEqual(notFound);
    expect(await failure(v.write("transit/decrypt/nope", { ciphertext: "vault:v1:AAAA", context: CTX }))).toEqual(notFound);
    expect(await failure(v.write("transit/datakey/plaintext/nope", { context: CTX }))).toEqual(notFound);
    expect(await failure(v.write("transit/rewrap/nope", { ciphertext: "vault:v1:AAAA", context: CTX }))).toEqual(notFound);
    expect(await failure(v.read("transit/keys/nope"))).toEqual({ status: 404, body: { errors: [] } });
    expect(await failure(v.write("transit/keys/nope/rotate", {}))).toEqual({ status: 400, body: { errors: ["key not found"] } });
    expect(await failure(v.write("transit/keys/nope/config", {}))).toEqual({ status: 400, body: { errors: ["no existing key named nope could be found"] } });

    await start({ autoCreateKeys: true });
    const u = client();
    await u.write("transit/encrypt/upserted", { plaintext: b64("x"), context: CTX });
    await u.write("transit/encrypt/upserted-plain", { plaintext: b64("x") });
    expect((await u.read("transit/keys/upserted")).data.derived).toBe(true);
    expect((await u.read("transit/keys/upserted-plain")).data.derived).toBe(false);
    expect(await failure(u.write("transit/decrypt/never", { ciphertext: "vault:v1:AAAA", context: CTX }))).toEqual(notFound);
  });

  it("serves several transit mounts, each with its own keys", async () => {
    await start({ mounts: ["transit", "kms/transit"] });
    const v = client();
    emulator.createKey("k", { mount: "kms/transit" });
    const c = (await v.write("kms/transit/encrypt/k", { plaintext: b64("x"), context: CTX })).data.ciphertext;
    expect((await v.write("kms/transit/decrypt/k", { ciphertext: c, context: CTX })).data.plaintext).toBe(b64("x"));
    expect(await failure(v.write("transit/decrypt/k", { ciphertext: c, context: CTX }))).toEqual({ status: 400, body: { errors: ["encryption key not found"] } });
    expect(emulator.requests.map((r) => r.details?.path)).toEqual(["kms/transit/encrypt/k", "kms/transit/decrypt/k", "transit/decrypt/k"]);
    expect(() => emulator.createKey("k", { mount: "nowhere" })).toThrow('no transit mount "nowhere"');
  });

  it("unknown routes are 404, a known path with the wrong method 405, a body that is not JSON 400", async () => {
    const v = client();
    emulator.createKey("k");
    expect(await failure(v.read("secret/data/x"))).toEqual({ status: 404, body: { errors: ['no handler for route "secret/data/x". route entry not found.'] } });
    expect(await failure(v.read("transit/encrypt/k"))).toEqual({ status: 405, body: { errors: ["1 error occurred:\n\t* unsupported operation\n\n"] } });
    const raw = await rawPost("/v1/transit/encrypt/k", "{not json");
    expect(raw).toEqual({ status: 400, body: { errors: ["failed to parse JSON input"] } });
    expect(emulator.requests.map((r) => [r.operation, r.status])).toEqual([
      ["unknown", 404],
      ["encrypt", 405],
      ["encrypt", 400],
    ]);
  });
});

describe("tokens and policies", () => {
  const appPaths = ["transit/datakey/plaintext/tenant-*", "transit/decrypt/tenant-*", "transit/+/shared"];

  it("a missing or unknown token is 403 'permission denied'; a path off the token's list is Vault's other 403 form", async () => {
    await start({ tokens: { root: { name: "root", paths: ["*"] }, "app-token": { name: "app", paths: appPaths } } });
    emulator.createKey("tenant-a");
    emulator.createKey("shared");
    emulator.createKey("other");
    expect(await failure(client("").write("transit/datakey/plaintext/tenant-a", { context: CTX }))).toEqual({ status: 403, body: { errors: ["permission denied"] } });
    expect(await failure(client("wrong").write("transit/datakey/plaintext/tenant-a", { context: CTX }))).toEqual({ status: 403, body: { errors: ["permission denied"] } });
    const app = client("app-token");
    const dk = await app.write("transit/datakey/plaintext/tenant-a", { context: CTX });
    expect((await app.write("transit/decrypt/tenant-a", { ciphertext: dk.data.ciphertext, context: CTX })).data.plaintext).toBe(dk.data.plaintext);
    const denied = { status: 403, body: { errors: [DENIED_MULTI] } };
    expect(await failure(app.write("transit/encrypt/tenant-a", { plaintext: b64("x"), context: CTX }))).toEqual(denied);
    expect(await failure(app.write("transit/datakey/plaintext/other", { context: CTX }))).toEqual(denied);
    expect(await failure(app.read("transit/keys/tenant-a"))).toEqual(denied);
    // "+" is one segment: transit/encrypt/shared matches, transit/keys/shared/rotate does not.
    await app.write("transit/encrypt/shared", { plaintext: b64("x"), context: CTX });
    expect(await failure(app.write("transit/keys/shared/rotate", {}))).toEqual(denied);
    expect(emulator.requests.map((r) => [r.operation, r.status, r.identity])).toEqual([
      ["datakey", 403, undefined],
      ["datakey", 403, undefined],
      ["datakey", 200, "app"],
      ["decrypt", 200, "app"],
      ["encrypt", 403, "app"],
      ["datakey", 403, "app"],
      ["keys.read", 403, "app"],
      ["encrypt", 200, "app"],
      ["keys.rotate", 403, "app"],
    ]);
  });

  it("setTokenPaths changes a token's paths at once; revokeToken ends it", async () => {
    emulator.createKey("k");
    emulator.setTokenPaths("t", ["transit/keys/k"], "limited");
    const v = client("t");
    await v.read("transit/keys/k");
    emulator.setTokenPaths("t", []);
    expect(await failure(v.read("transit/keys/k"))).toEqual({ status: 403, body: { errors: [DENIED_MULTI] } });
    emulator.setTokenPaths("t", ["transit/keys/*"]);
    await v.read("transit/keys/k");
    expect(emulator.revokeToken("t")).toBe(true);
    expect(emulator.revokeToken("t")).toBe(false);
    expect(await failure(v.read("transit/keys/k"))).toEqual({ status: 403, body: { errors: ["permission denied"] } });
    expect(emulator.requests.map((r) => r.identity)).toEqual(["limited", "limited", "limited", undefined]);
  });

  it("sys/capabilities-self answers per path, in data and at the top level, with the union in capabilities", async () => {
    await start({ tokens: { root: { name: "root", paths: ["*"] }, app: { paths: appPaths } } });
    const paths = ["transit/datakey/plaintext/tenant-a", "transit/encrypt/tenant-a", "transit/encrypt/shared"];
    const answer = await client("app").write("sys/capabilities-self", { paths });
    const expected = {
      "transit/datakey/plaintext/tenant-a": ["create", "delete", "list", "read", "update"],
      "transit/encrypt/tenant-a": ["deny"],
      "transit/encrypt/shared": ["create", "delete", "list", "read", "update"],
      capabilities: ["create", "delete", "deny", "list", "read", "update"],
    };
    expect(answer.data).toEqual(expected);
    expect(answer).toMatchObject(expected);
    expect((await client("root").write("sys/capabilities-self", { paths: ["anything"] })).data).toEqual({ anything: ["root"], capabilities: ["root"] });
    expect(await failure(client("app").write("sys/capabilities-self", {}))).toEqual({ status: 400, body: { errors: ["missing token or path"] } });
    expect(emulator.count("sys/capabilities-self")).toBe(3);
  });

  it("AppRole: login issues a renewable token with the role's paths; it expires on the emulator's clock; renew-self extends it", async () => {
    await start({
      appRoles: { kms: { roleId: "role-1", secretId: "secret-1", paths: ["transit/keys/*"], ttlSeconds: 60, maxTtlSeconds: 150, policies: ["kms"] } },
    });
    emulator.createKey("k");
    const v = client("");
    expect(await failure(v.write("auth/approle/login", { role_id: "role-1", secret_id: "wrong" }))).toEqual({
      status: 400,
      body: { errors: ["invalid role or secret ID"] },
    });
    expect(await failure(v.write("auth/approle/login", { secret_id: "secret-1" }))).toEqual({ status: 400, body: { errors: ["missing role_id"] } });
    const login = await v.approleLogin({ role_id: "role-1", secret_id: "secret-1" });
    expect(login.auth).toMatchObject({ client_token: expect.stringMatching(/^hvs\./), lease_duration: 60, renewable: true, policies: ["default", "kms"] });
    expect(v.token).toBe(login.auth.client_token); // node-vault adopts the token
    await v.read("transit/keys/k");
    expect(await failure(v.write("transit/encrypt/k", { plaintext: b64("x"), context: CTX }))).toEqual({ status: 403, body: { errors: [DENIED_MULTI] } });
    nowMs += 40_000;
    expect((await v.tokenLookupSelf()).data).toMatchObject({ ttl: 20, renewable: true, display_name: "approle:kms", policies: ["default", "kms"] });
    const renewed = await v.tokenRenewSelf();
    expect(renewed.auth).toMatchObject({ client_token: login.auth.client_token, lease_duration: 60, renewable: true });
    nowMs += 59_000; // 99 s after login: alive only thanks to the renewal
    await v.read("transit/keys/k");
    expect((await v.tokenRenewSelf({ increment: 3600 })).auth.lease_duration).toBe(51); // capped by max TTL (150 s)
    nowMs += 51_000;
    expect(await failure(v.read("transit/keys/k"))).toEqual({ status: 403, body: { errors: ["permission denied"] } });
    expect(await failure(client("root").tokenRenewSelf())).toEqual({ status: 400, body: { errors: ["lease is not renewable"] } });
    expect(emulator.counts()).toEqual({ "approle.login": 3, "keys.read": 3, encrypt: 1, "token.lookup-self": 1, "token.renew-self": 3 });
  });

  it("revokeAppRoleTokens ends every token a role was issued", async () => {
    await start({ appRoles: { kms: { roleId: "r", secretId: "s", paths: ["*"] } } });
    const v = client("");
    await v.approleLogin({ role_id: "r", secret_id: "s" });
    await v.tokenLookupSelf();
    expect(emulator.revokeAppRoleTokens("kms")).toBe(1);
    expect(await failure(v.tokenLookupSelf())).toEqual({ status: 403, body: { errors: ["permission denied"] } });
  });

  it("a token revoked while its request is held by latency is refused (403), not a crash", async () => {
    emulator.setTokenPaths("short-lived", ["*"], "short");
    emulator.inject("token.lookup-self", { kind: "latency", ms: 500 }, { times: 1 });
    const pending = failure(client("short-lived").tokenLookupSelf());
    for (let i = 0; i < 500 && emulator.pending === 0; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    emulator.revokeToken("short-lived"); // authenticated already; the handler finds it gone
    expect(await pending).toEqual({ status: 403, body: { errors: ["permission denied"] } });
  });

  it("records the X-Vault-Namespace header of every request, login and renewal included", async () => {
    await start({ appRoles: { kms: { roleId: "r", secretId: "s", paths: ["transit/*"] } } });
    emulator.createKey("k");
    const v = client("", "team-a");
    await v.approleLogin({ role_id: "r", secret_id: "s" });
    await v.tokenRenewSelf();
    await v.write("transit/datakey/plaintext/k", { context: CTX });
    await v.health();
    expect(emulator.requests.map((r) => [r.operation, r.details?.namespace])).toEqual([
      ["approle.login", "team-a"],
      ["token.renew-self", "team-a"],
      ["datakey", "team-a"],
      ["sys/health", "team-a"],
    ]);
    await client().read("transit/keys/k");
    expect(emulator.requests.at(-1)?.details).toEqual({ path: "transit/keys/k" });
  });
});

describe("sys/health and sealing", () => {
  it("reports active, standby (429, or 200 with standbyok) and sealed (503); node-vault's health() never rejects", async () => {
    const v = client();
    expect(await v.health()).toMatchObject({ initialized: true, sealed: false, standby: false, version: "1.15.0", server_time_utc: T0 / 1000 });
    emulator.setStandby(true);
    expect(await v.health()).toMatchObject({ standby: true });
    await v.health({ standbyok: true });
    emulator.setStandby(false);
    emulator.seal();
    expect(await v.health()).toMatchObject({ sealed: true });
    expect(emulator.requests.map((r) => [r.operation, r.status])).toEqual([
      ["sys/health", 200],
      ["sys/health", 429],
      ["sys/health", 200],
      ["sys/health", 503],
    ]);
  });

  it("sealed: every other request, login included, is 503 'Vault is sealed' until unsealed", async () => {
    await start({ appRoles: { kms: { roleId: "r", secretId: "s", paths: ["*"] } } });
    emulator.createKey("k");
    emulator.seal();
    const sealed = { status: 503, body: { errors: ["Vault is sealed"] } };
    expect(await failure(client().read("transit/keys/k"))).toEqual(sealed);
    expect(await failure(client("").approleLogin({ role_id: "r", secret_id: "s" }))).toEqual(sealed);
    expect(await failure(client("nobody").write("transit/encrypt/k", {}))).toEqual(sealed);
    emulator.unseal();
    expect((await client().read("transit/keys/k")).data.name).toBe("k");
  });
});

describe("injected faults", () => {
  beforeEach(() => emulator.createKey("k"));

  it("renders each fault kind as Vault answers it", async () => {
    const v = client();
    const cases: [Parameters<VaultEmulator["inject"]>[1], string, () => Promise<unknown>, number, string[]][] = [
      [{ kind: "throttle" }, "datakey", () => v.write("transit/datakey/plaintext/k", {}), 429, ['request path "transit/datakey/plaintext/k": rate limit quota exceeded']],
      [{ kind: "serverError" }, "encrypt", () => v.write("transit/encrypt/k", {}), 500, ["internal error"]],
      [{ kind: "serverError", status: 502 }, "encrypt", () => v.write("transit/encrypt/k", {}), 502, ["internal error"]],
      [{ kind: "accessDenied" }, "decrypt", () => v.write("transit/decrypt/k", {}), 403, [DENIED_MULTI]],
      [{ kind: "keyDisabled" }, "datakey", () => v.write("transit/datakey/plaintext/k", {}), 400, [TOO_OLD]],
      [{ kind: "keyNotFound" }, "decrypt", () => v.write("transit/decrypt/k", {}), 400, ["encryption key not found"]],
      [{ kind: "keyNotFound" }, "keys.read", () => v.read("transit/keys/k"), 404, []],
      [{ kind: "keyNotFound" }, "keys.rotate", () => v.write("transit/keys/k/rotate", {}), 400, ["key not found"]],
      [{ kind: "keyNotFound" }, "keys.config", () => v.write("transit/keys/k/config", {}), 400, ["no existing key named k could be found"]],
      [{ kind: "keyNotFound" }, "keys.delete", () => v.delete("transit/keys/k"), 400, ["error deleting policy k: could not delete key; not found"]],
    ];
    for (const [fault, operation, call, status, errors] of cases) {
      emulator.inject(operation, fault, { times: 1 });
      expect({ operation, fault, answer: await failure(call()) }).toEqual({ operation, fault, answer: { status, body: { errors } } });
    }
    expect(emulator.requests.map((r) => r.fault)).toEqual(cases.map(([fault]) => fault.kind));
  });

  it("applies a fault N times, to one key if asked, until cleared", async () => {
    emulator.createKey("other");
    const v = client();
    const twice = emulator.inject("keys.read", { kind: "serverError", status: 503 }, { times: 2, keyId: "k" });
    await v.read("transit/keys/other");
    expect(await failure(v.read("transit/keys/k"))).toMatchObject({ status: 503 });
    expect(await failure(v.read("transit/keys/k"))).toMatchObject({ status: 503 });
    await v.read("transit/keys/k");
    expect({ hits: twice.hits, remaining: twice.remaining }).toEqual({ hits: 2, remaining: 0 });
    const always = emulator.inject("*", { kind: "throttle" });
    expect(await failure(v.read("transit/keys/other"))).toMatchObject({ status: 429 });
    // node-vault resolves sys/health whatever the status: the body is all a caller sees.
    expect(await v.health()).toEqual({ errors: ['request path "sys/health": rate limit quota exceeded'] });
    always.clear();
    await v.read("transit/keys/other");
    expect(emulator.requests.map((r) => [r.keyId, r.status])).toEqual([
      ["other", 200],
      ["k", 503],
      ["k", 503],
      ["k", 200],
      ["other", 429],
      [undefined, 429],
      ["other", 200],
    ]);
  });

  it("latency delays a request that then succeeds; connectionReset drops it (socket hang up)", async () => {
    const v = client();
    emulator.inject("keys.read", { kind: "latency", ms: 20 }, { times: 1 });
    expect((await v.read("transit/keys/k")).data.name).toBe("k");
    emulator.inject("keys.read", { kind: "connectionReset" }, { times: 1 });
    expect(await failure(v.read("transit/keys/k"))).toEqual({ code: "ECONNRESET" });
    expect(emulator.requests.map((r) => [r.status, r.fault])).toEqual([
      [200, "latency"],
      [0, "connectionReset"],
    ]);
  });

  it("outage(): connection refused, then the same port serves again", async () => {
    const v = client();
    const restore = await emulator.outage();
    expect(await failure(v.read("transit/keys/k"))).toEqual({ code: "ECONNREFUSED" });
    await restore();
    expect(emulator.url).toBe(url);
    expect((await v.read("transit/keys/k")).data.name).toBe("k");
    expect(emulator.counts()).toEqual({ "keys.read": 1 });
  });
});

describe("the request log", () => {
  it("counts exactly and holds no body, token, plaintext, context or ciphertext", async () => {
    await start({ tokens: { "s.super-secret-token": { name: "app", paths: ["transit/*"] } }, appRoles: { r: { roleId: "role-id-value", secretId: "secret-id-value", paths: ["*"] } } });
    emulator.createKey("k");
    const v = client("s.super-secret-token");
    const plaintext = b64("the plaintext that must not be logged");
    const context = b64("the context that must not be logged");
    const c = (await v.write("transit/encrypt/k", { plaintext, context })).data.ciphertext;
    await v.write("transit/decrypt/k", { ciphertext: c, context });
    const dk = await v.write("transit/datakey/plaintext/k", { context });
    const login = await client("").approleLogin({ role_id: "role-id-value", secret_id: "secret-id-value" });
    expect(emulator.counts()).toEqual({ encrypt: 1, decrypt: 1, datakey: 1, "approle.login": 1 });
    expect(emulator.count()).toBe(4);
    const log = JSON.stringify(emulator.requests);
    for (const secret of [plaintext, context, c, c.slice(9), dk.data.plaintext, dk.data.ciphertext, "super-secret", "role-id-value", "secret-id-value", login.auth.client_token]) {
      expect(log.includes(secret)).toBe(false);
    }
    emulator.resetLog();
    expect(emulator.requests).toEqual([]);
  });
});

/** A POST with a raw body (node-vault only sends JSON). */
function rawPost(path: string, body: string): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${url}${path}`, { method: "POST", agent, headers: { "x-vault-token": "root", "content-type": "application/json" } }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString("utf8")) as unknown }));
    });
    req.on("error", reject);
    req.end(body);
  });
}
