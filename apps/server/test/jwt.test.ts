/**
 * JWT credentials in-process (`createJwtAuth`): valid HS256 and RS256 tokens for a tenant and for the
 * admin, and every rejection with its status, code and fixed message. The black-box tests in
 * server.test.ts run the same tokens through the built server.
 */
import { describe, expect, it } from "@jest/globals";
import { createHmac, generateKeyPairSync, sign, type KeyObject } from "node:crypto";
import type { Authenticator } from "../src/auth";
import { HttpError } from "../src/errors";
import { createJwtAuth, MAX_JWT_LENGTH, publicKeysFromJwks, type JwtSettings } from "../src/jwt";

const SECRET = Buffer.from("an-hs256-test-secret-of-at-least-32-bytes!", "utf8");
const NOW = 1_800_000_000; // seconds
const { publicKey, privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
const other = generateKeyPairSync("rsa", { modulusLength: 2048 });

const part = (value: unknown) => Buffer.from(JSON.stringify(value), "utf8").toString("base64url");

/** Signs `header.payload` with HS256 (a secret) or RS256 (a private key), whatever `header.alg` says. */
function jwt(header: Record<string, unknown>, payload: Record<string, unknown>, key: Buffer | KeyObject): string {
  const input = `${part(header)}.${part(payload)}`;
  const signature = Buffer.isBuffer(key) ? createHmac("sha256", key).update(input).digest() : sign("sha256", Buffer.from(input), key);
  return `${input}.${signature.toString("base64url")}`;
}

const claims = (extra: Record<string, unknown> = {}) => ({ tenant: "tenant-a", exp: NOW + 300, iat: NOW - 10, ...extra });
const hs = (payload: Record<string, unknown> = claims(), header: Record<string, unknown> = { alg: "HS256", typ: "JWT" }) => jwt(header, payload, SECRET);
const rs = (payload: Record<string, unknown> = claims(), header: Record<string, unknown> = { alg: "RS256", typ: "JWT" }) => jwt(header, payload, privateKey);

function auth(settings: Partial<JwtSettings> & Pick<JwtSettings, "algorithm">): Authenticator {
  return createJwtAuth({ now: () => NOW * 1000, ...settings });
}
const hsAuth = auth({ algorithm: "HS256", secret: SECRET, issuer: "https://issuer.example", audience: "kms" });
const rsAuth = auth({ algorithm: "RS256", publicKeys: [{ kid: undefined, key: publicKey }] });
const iss = { iss: "https://issuer.example", aud: "kms" };

/** The HttpError `fn` throws, as status, code and message. */
function rejection(fn: () => void): { status: number; code: string; message: string } {
  try {
    fn();
  } catch (error) {
    if (!(error instanceof HttpError)) throw error;
    return { status: error.statusCode, code: error.code, message: error.message };
  }
  throw new Error("expected a rejection");
}

const INVALID = { status: 401, code: "UNAUTHENTICATED", message: "The bearer token is not valid" };

describe("valid tokens", () => {
  it("HS256: the tenant's token on its own routes; with an aud array; typ JWT, at+jwt or none", () => {
    expect(() => hsAuth.authorizeTenant(`Bearer ${hs(claims(iss))}`, "tenant-a")).not.toThrow();
    expect(() => hsAuth.authorizeTenant(`Bearer ${hs(claims({ ...iss, aud: ["other", "kms"] }))}`, "tenant-a")).not.toThrow();
    // RFC 9068 access tokens, and no typ at all.
    expect(() => hsAuth.authorizeTenant(`Bearer ${hs(claims(iss), { alg: "HS256", typ: "at+JWT" })}`, "tenant-a")).not.toThrow();
    expect(() => hsAuth.authorizeTenant(`Bearer ${hs(claims(iss), { alg: "HS256" })}`, "tenant-a")).not.toThrow();
  });

  it("RS256 (PEM key): the tenant's token, and an admin token on the admin API", () => {
    expect(() => rsAuth.authorizeTenant(`Bearer ${rs()}`, "tenant-a")).not.toThrow();
    expect(() => rsAuth.authorizeAdmin(`Bearer ${rs(claims({ tenant: undefined, role: "kms-admin" }))}`)).not.toThrow();
    expect(() => rsAuth.authorizeAdmin(`Bearer ${rs(claims({ role: ["reader", "kms-admin"] }))}`)).not.toThrow();
  });

  it("RS256 (JWKS): the key is chosen by kid", () => {
    const jwks = JSON.stringify({
      keys: [
        { ...other.publicKey.export({ format: "jwk" }), kid: "old", use: "sig", alg: "RS256" },
        { ...publicKey.export({ format: "jwk" }), kid: "current", use: "sig", alg: "RS256" },
      ],
    });
    const jwksAuth = auth({ algorithm: "RS256", publicKeys: publicKeysFromJwks(jwks) });
    expect(() => jwksAuth.authorizeTenant(`Bearer ${rs(claims(), { alg: "RS256", kid: "current" })}`, "tenant-a")).not.toThrow();
    // The other key's kid, or none with two keys: no key to verify with.
    expect(rejection(() => jwksAuth.authorizeTenant(`Bearer ${rs(claims(), { alg: "RS256", kid: "old" })}`, "tenant-a"))).toEqual(INVALID);
    expect(rejection(() => jwksAuth.authorizeTenant(`Bearer ${rs(claims(), { alg: "RS256" })}`, "tenant-a"))).toEqual(INVALID);
  });

  it("nbf and iat within the clock skew (60 s by default) are accepted", () => {
    expect(() => rsAuth.authorizeTenant(`Bearer ${rs(claims({ nbf: NOW + 59, iat: NOW + 59 }))}`, "tenant-a")).not.toThrow();
    expect(() => rsAuth.authorizeTenant(`Bearer ${rs(claims({ exp: NOW - 59 }))}`, "tenant-a")).not.toThrow();
  });
});

describe("rejections", () => {
  const cases: [string, () => string, { status: number; code: string; message: string }][] = [
    ["a bad signature", () => hs(claims(iss)).slice(0, -4) + "AAAA", INVALID],
    ["a token signed with another secret", () => jwt({ alg: "HS256" }, claims(iss), Buffer.alloc(32, 1)), INVALID],
    ["alg: none (empty signature)", () => `${part({ alg: "none" })}.${part(claims(iss))}.`, INVALID],
    ["alg: none (with a signature)", () => `${part({ alg: "none" })}.${part(claims(iss))}.${hs(claims(iss)).split(".")[2]}`, INVALID],
    ["alg: RS256 on an HS256 server", () => rs(claims(iss)), INVALID],
    ["alg: hs256 (not exactly the configured name)", () => hs(claims(iss), { alg: "hs256" }), INVALID],
    ["a crit header", () => hs(claims(iss), { alg: "HS256", crit: ["exp"] }), INVALID],
    ["typ other than JWT or at+jwt", () => hs(claims(iss), { alg: "HS256", typ: "JWE" }), INVALID],
    ["a typ that is not a string", () => hs(claims(iss), { alg: "HS256", typ: 1 }), INVALID],
    ["expired (beyond the skew)", () => hs(claims({ ...iss, exp: NOW - 60 })), { ...INVALID, message: "The bearer token has expired" }],
    ["no exp", () => hs(claims({ ...iss, exp: undefined })), INVALID],
    ["exp not a number", () => hs(claims({ ...iss, exp: String(NOW + 300) })), INVALID],
    ["not yet valid (nbf beyond the skew)", () => hs(claims({ ...iss, nbf: NOW + 61 })), { ...INVALID, message: "The bearer token is not valid yet" }],
    ["issued in the future (iat beyond the skew)", () => hs(claims({ ...iss, iat: NOW + 61 })), { ...INVALID, message: "The bearer token is not valid yet" }],
    ["the wrong audience", () => hs(claims({ ...iss, aud: "other" })), { ...INVALID, message: "The bearer token was not issued for this server" }],
    ["no audience", () => hs(claims({ iss: iss.iss })), { ...INVALID, message: "The bearer token was not issued for this server" }],
    ["the wrong issuer", () => hs(claims({ ...iss, iss: "https://evil.example" })), { ...INVALID, message: "The bearer token was not issued for this server" }],
    ["two parts", () => hs(claims(iss)).split(".").slice(0, 2).join("."), INVALID],
    ["four parts", () => `${hs(claims(iss))}.AAAA`, INVALID],
    ["padded base64url", () => hs(claims(iss)).replace(/^([^.]+)/, "$1=="), INVALID],
    ["non-canonical base64url (stray bits)", () => `${part({ alg: "HS256" }).slice(0, -1)}_.${part(claims(iss))}.AAAA`, INVALID],
    ["a header that is not JSON", () => `${Buffer.from("{alg").toString("base64url")}.${part(claims(iss))}.AAAA`, INVALID],
    ["a header that is a JSON array", () => `${part(["HS256"])}.${part(claims(iss))}.AAAA`, INVALID],
    ["a payload that is not an object", () => jwt({ alg: "HS256" }, 42 as never, SECRET), INVALID],
    ["oversize", () => hs(claims({ ...iss, pad: "x".repeat(MAX_JWT_LENGTH) })), INVALID],
  ];

  it.each(cases)("%s: 401", (_name, token, expected) => {
    expect(rejection(() => hsAuth.authorizeTenant(`Bearer ${token()}`, "tenant-a"))).toEqual(expected);
  });

  it("alg confusion: an RS256 server refuses an HS256 token signed with its public key as the secret", () => {
    const pem = Buffer.from(publicKey.export({ format: "pem", type: "spki" }) as string, "utf8");
    const der = publicKey.export({ format: "der", type: "spki" });
    for (const secret of [pem, der]) {
      expect(rejection(() => rsAuth.authorizeTenant(`Bearer ${jwt({ alg: "HS256" }, claims(), secret)}`, "tenant-a"))).toEqual(INVALID);
    }
  });

  it("an RS256 token signed by another key: 401", () => {
    const token = jwt({ alg: "RS256" }, claims(), other.privateKey);
    expect(rejection(() => rsAuth.authorizeTenant(`Bearer ${token}`, "tenant-a"))).toEqual(INVALID);
  });

  it("no header or not `Bearer`: 401 with the static tokens' messages", () => {
    expect(rejection(() => rsAuth.authorizeTenant(undefined, "tenant-a")).code).toBe("UNAUTHENTICATED");
    expect(rejection(() => rsAuth.authorizeTenant(`Basic ${rs()}`, "tenant-a")).code).toBe("UNAUTHENTICATED");
  });

  it("another tenant's token, or none in the claim: 403 TENANT_MISMATCH", () => {
    const mismatch = { status: 403, code: "TENANT_MISMATCH", message: "The bearer token belongs to another tenant" };
    expect(rejection(() => rsAuth.authorizeTenant(`Bearer ${rs()}`, "tenant-b"))).toEqual(mismatch);
    expect(rejection(() => rsAuth.authorizeTenant(`Bearer ${rs(claims({ tenant: undefined }))}`, "tenant-a"))).toEqual(mismatch);
    expect(rejection(() => rsAuth.authorizeTenant(`Bearer ${rs(claims({ tenant: ["tenant-a"] }))}`, "tenant-a"))).toEqual(mismatch);
  });

  it("a tenant token on the admin API, an admin token on a tenant route: 403 FORBIDDEN", () => {
    expect(rejection(() => rsAuth.authorizeAdmin(`Bearer ${rs()}`))).toMatchObject({ status: 403, code: "FORBIDDEN" });
    expect(rejection(() => rsAuth.authorizeAdmin(`Bearer ${rs(claims({ role: "kms-admins" }))}`))).toMatchObject({ status: 403, code: "FORBIDDEN" });
    const admin = rs(claims({ role: "kms-admin" }));
    expect(rejection(() => rsAuth.authorizeTenant(`Bearer ${admin}`, "tenant-a"))).toMatchObject({ status: 403, code: "FORBIDDEN" });
  });

  it("configurable claim names and skew", () => {
    const custom = auth({ algorithm: "HS256", secret: SECRET, tenantClaim: "org", adminClaim: "scope", adminValue: "kms:admin", clockSkewSeconds: 0 });
    expect(() => custom.authorizeTenant(`Bearer ${hs({ org: "tenant-a", exp: NOW + 1 })}`, "tenant-a")).not.toThrow();
    expect(() => custom.authorizeAdmin(`Bearer ${hs({ scope: "kms:admin", exp: NOW + 1 })}`)).not.toThrow();
    expect(rejection(() => custom.authorizeTenant(`Bearer ${hs({ org: "tenant-a", exp: NOW })}`, "tenant-a")).message).toBe("The bearer token has expired");
    expect(rejection(() => custom.authorizeTenant(`Bearer ${hs()}`, "tenant-a")).code).toBe("TENANT_MISMATCH");
  });

  it("refuses to build with a short HS256 secret or no RS256 key", () => {
    expect(() => createJwtAuth({ algorithm: "HS256", secret: Buffer.alloc(31) })).toThrow("at least 32 bytes");
    expect(() => createJwtAuth({ algorithm: "RS256", publicKeys: [] })).toThrow("public key");
  });
});

describe("publicKeysFromJwks", () => {
  it("refuses private keys, small keys, duplicate kids and sets without an RSA signing key", () => {
    const jwk = publicKey.export({ format: "jwk" });
    expect(() => publicKeysFromJwks(JSON.stringify({ keys: [privateKey.export({ format: "jwk" })] }))).toThrow("private key");
    const small = generateKeyPairSync("rsa", { modulusLength: 1024 }).publicKey.export({ format: "jwk" });
    expect(() => publicKeysFromJwks(JSON.stringify({ keys: [small] }))).toThrow("at least 2048 bits");
    expect(() => publicKeysFromJwks(JSON.stringify({ keys: [{ ...jwk, kid: "a" }, { ...jwk, kid: "a" }] }))).toThrow("same kid");
    expect(() => publicKeysFromJwks(JSON.stringify({ keys: [{ ...jwk, use: "enc" }] }))).toThrow("no RSA signing key");
    expect(() => publicKeysFromJwks("[]")).toThrow("JWKS");
  });
});
