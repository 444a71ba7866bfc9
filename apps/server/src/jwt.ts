/**
 * JWT bearer credentials (RFC 7519), an alternative to static tokens chosen by configuration:
 * HS256 (a shared secret of at least 32 bytes) or RS256 (an RSA public key: PEM or a JWKS file),
 * verified with `node:crypto` only.
 *
 * Strict by design: exactly three non-empty, canonical base64url parts and a size limit; `alg` must
 * be exactly the configured algorithm (so never `none`, and an RS256 server never treats its public
 * key as an HMAC secret); no `crit` extensions; `exp` required; `nbf` and `iat` honoured with a
 * small clock skew; optional `iss` and `aud`; the tenant claim must name the route's tenant. The
 * signature is checked before any claim is read, in constant time (`crypto.verify`, or
 * `timingSafeEqual` over HMACs). Every failure is one of a few fixed messages: no token, claim or
 * parser text is ever repeated or logged.
 */
import { createHmac, createPublicKey, timingSafeEqual, verify, type KeyObject } from "node:crypto";
import type { Authenticator } from "./auth";
import { HttpError } from "./errors";

export type JwtAlgorithm = "HS256" | "RS256";

/** A token longer than this is refused before it is decoded. */
export const MAX_JWT_LENGTH = 8192;
export const MIN_HS256_SECRET_BYTES = 32;
export const MIN_RSA_BITS = 2048;
export const DEFAULT_CLOCK_SKEW_SECONDS = 60;
export const DEFAULT_TENANT_CLAIM = "tenant";
export const DEFAULT_ADMIN_CLAIM = "role";
export const DEFAULT_ADMIN_VALUE = "kms-admin";

export interface JwtSettings {
  algorithm: JwtAlgorithm;
  /** HS256: the shared secret. */
  secret?: Buffer | undefined;
  /** RS256: the public keys, by `kid` (`undefined`: a key without `kid`, e.g. from a PEM file). */
  publicKeys?: readonly { kid: string | undefined; key: KeyObject }[] | undefined;
  issuer?: string | undefined;
  audience?: string | undefined;
  /** Default `tenant`. */
  tenantClaim?: string | undefined;
  /** The claim that marks an admin (a string, or an array of strings, holding `adminValue`). Default `role`. */
  adminClaim?: string | undefined;
  /** Default `kms-admin`. */
  adminValue?: string | undefined;
  /** Default 60. */
  clockSkewSeconds?: number | undefined;
  /** The clock, in milliseconds (tests). Default `Date.now`. */
  now?: () => number;
}

const PART = /^[A-Za-z0-9_-]+$/;
/** Accepted `typ` values (any case): plain JWTs and OAuth access tokens (RFC 9068). */
const TYPES: ReadonlySet<string> = new Set(["jwt", "application/jwt", "at+jwt", "application/at+jwt"]);
const BEARER = /^Bearer +(\S+) *$/i;

const INVALID = "The bearer token is not valid";
const EXPIRED = "The bearer token has expired";
const NOT_YET_VALID = "The bearer token is not valid yet";
const WRONG_AUDIENCE = "The bearer token was not issued for this server";

function unauthenticated(message: string): HttpError {
  return new HttpError(401, "UNAUTHENTICATED", message);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Strict base64url: the alphabet only, no padding, and canonical (no stray bits in the last character). */
function decodePart(part: string): Buffer {
  if (!PART.test(part)) throw unauthenticated(INVALID);
  const bytes = Buffer.from(part, "base64url");
  if (bytes.toString("base64url") !== part) throw unauthenticated(INVALID);
  return bytes;
}

function decodeJsonObject(part: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(decodePart(part).toString("utf8"));
  } catch (error) {
    if (error instanceof HttpError) throw error;
    throw unauthenticated(INVALID);
  }
  if (!isPlainObject(parsed)) throw unauthenticated(INVALID);
  return parsed;
}

function isNumericDate(value: unknown): value is number {
  return typeof value === "number" && Number.isFinite(value);
}

/** Checks an RS256 key: an RSA public key of at least 2048 bits. Returns a problem, or undefined. */
export function rsaKeyProblem(key: KeyObject): string | undefined {
  if (key.type !== "public" || key.asymmetricKeyType !== "rsa") return "must be an RSA public key";
  const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
  if (bits < MIN_RSA_BITS) return `must be an RSA key of at least ${MIN_RSA_BITS} bits, got ${bits}`;
  return undefined;
}

/** Reads a PEM public key. Throws `Error` with a message naming no key material. */
export function publicKeyFromPem(pem: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey({ key: pem, format: "pem" });
  } catch {
    throw new Error("is not a PEM public key");
  }
  const problem = rsaKeyProblem(key);
  if (problem !== undefined) throw new Error(problem);
  return key;
}

/**
 * Reads the RSA signing keys of a JWKS (`{"keys": [...]}`): keys with `kty: "RSA"`, `use` absent or
 * `sig`, `alg` absent or `RS256`; others are skipped. Throws `Error` (no key material in messages).
 */
export function publicKeysFromJwks(json: string): { kid: string | undefined; key: KeyObject }[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch {
    throw new Error("is not valid JSON");
  }
  if (!isPlainObject(parsed) || !Array.isArray(parsed.keys)) throw new Error('must be a JWKS: {"keys": [...]}');
  const keys: { kid: string | undefined; key: KeyObject }[] = [];
  const kids = new Set<string | undefined>();
  for (const [i, jwk] of (parsed.keys as unknown[]).entries()) {
    if (!isPlainObject(jwk) || jwk.kty !== "RSA") continue;
    if (jwk.use !== undefined && jwk.use !== "sig") continue;
    if (jwk.alg !== undefined && jwk.alg !== "RS256") continue;
    if (jwk.kid !== undefined && typeof jwk.kid !== "string") throw new Error(`keys[${i}].kid must be a string`);
    if (jwk.d !== undefined) throw new Error(`keys[${i}] is a private key: publish only the public key`);
    let key: KeyObject;
    try {
      key = createPublicKey({ key: { kty: "RSA", n: jwk.n, e: jwk.e } as never, format: "jwk" });
    } catch {
      throw new Error(`keys[${i}] is not a valid RSA public key`);
    }
    const problem = rsaKeyProblem(key);
    if (problem !== undefined) throw new Error(`keys[${i}] ${problem}`);
    const kid = jwk.kid as string | undefined;
    if (kids.has(kid)) throw new Error(`keys[${i}]: two keys have the same kid`);
    kids.add(kid);
    keys.push({ kid, key });
  }
  if (keys.length === 0) throw new Error("holds no RSA signing key (kty RSA, use sig, alg RS256)");
  return keys;
}

/** The verified claims of a token, or an `HttpError` 401. */
export function createJwtVerifier(settings: JwtSettings): (token: string) => Record<string, unknown> {
  const { algorithm } = settings;
  const skewMs = (settings.clockSkewSeconds ?? DEFAULT_CLOCK_SKEW_SECONDS) * 1000;
  const now = settings.now ?? Date.now;
  const secret = settings.secret;
  const publicKeys = settings.publicKeys ?? [];
  if (algorithm === "HS256" && (secret === undefined || secret.length < MIN_HS256_SECRET_BYTES)) {
    throw new Error(`HS256 needs a secret of at least ${MIN_HS256_SECRET_BYTES} bytes`);
  }
  if (algorithm === "RS256" && publicKeys.length === 0) throw new Error("RS256 needs a public key");

  const signatureValid = (header: Record<string, unknown>, signingInput: string, signature: Buffer): boolean => {
    if (algorithm === "HS256") {
      const expected = createHmac("sha256", secret!).update(signingInput, "ascii").digest();
      // Equal lengths are public (32 bytes); the comparison itself is constant-time.
      return signature.length === expected.length && timingSafeEqual(signature, expected);
    }
    const kid = header.kid;
    if (kid !== undefined && typeof kid !== "string") return false;
    const candidates = kid === undefined ? (publicKeys.length === 1 ? publicKeys : []) : publicKeys.filter((k) => k.kid === kid);
    if (candidates.length !== 1) return false;
    return verify("sha256", Buffer.from(signingInput, "ascii"), candidates[0]!.key, signature);
  };

  return (token) => {
    if (token.length > MAX_JWT_LENGTH) throw unauthenticated(INVALID);
    const parts = token.split(".");
    if (parts.length !== 3) throw unauthenticated(INVALID);
    const [headerPart, payloadPart, signaturePart] = parts as [string, string, string];
    const header = decodeJsonObject(headerPart);
    // Exactly the configured algorithm: never `none`, never HS256 on an RS256 server (whose public
    // key an attacker could use as the HMAC secret), nor the reverse.
    if (header.alg !== algorithm) throw unauthenticated(INVALID);
    if (header.typ !== undefined && (typeof header.typ !== "string" || !TYPES.has(header.typ.toLowerCase()))) throw unauthenticated(INVALID);
    // RFC 7515 §4.1.11: extensions this verifier does not implement must be refused.
    if (header.crit !== undefined) throw unauthenticated(INVALID);
    const signature = decodePart(signaturePart);
    if (!signatureValid(header, `${headerPart}.${payloadPart}`, signature)) throw unauthenticated(INVALID);

    const claims = decodeJsonObject(payloadPart);
    const t = now();
    const { exp, nbf, iat } = claims;
    if (!isNumericDate(exp)) throw unauthenticated(INVALID);
    if (t >= exp * 1000 + skewMs) throw unauthenticated(EXPIRED);
    if (nbf !== undefined) {
      if (!isNumericDate(nbf)) throw unauthenticated(INVALID);
      if (t + skewMs < nbf * 1000) throw unauthenticated(NOT_YET_VALID);
    }
    if (iat !== undefined) {
      if (!isNumericDate(iat)) throw unauthenticated(INVALID);
      if (t + skewMs < iat * 1000) throw unauthenticated(NOT_YET_VALID);
    }
    if (settings.issuer !== undefined && claims.iss !== settings.issuer) throw unauthenticated(WRONG_AUDIENCE);
    if (settings.audience !== undefined) {
      const aud = claims.aud;
      const ok = typeof aud === "string" ? aud === settings.audience : Array.isArray(aud) && aud.includes(settings.audience);
      if (!ok) throw unauthenticated(WRONG_AUDIENCE);
    }
    return claims;
  };
}

/**
 * An `Authenticator` over JWTs. A token whose admin claim holds the admin value is an admin token:
 * accepted on the admin API, refused on tenant routes (403 `FORBIDDEN`), like the static admin
 * token. Any other valid token may call the tenant routes of the tenant its tenant claim names
 * (another tenant, or no tenant claim: 403 `TENANT_MISMATCH`) and not the admin API (403).
 */
export function createJwtAuth(settings: JwtSettings): Authenticator {
  const verifyToken = createJwtVerifier(settings);
  const tenantClaim = settings.tenantClaim ?? DEFAULT_TENANT_CLAIM;
  const adminClaim = settings.adminClaim ?? DEFAULT_ADMIN_CLAIM;
  const adminValue = settings.adminValue ?? DEFAULT_ADMIN_VALUE;

  const claimsOf = (authorization: string | undefined): Record<string, unknown> => {
    if (authorization === undefined) {
      throw unauthenticated("Missing Authorization header: send `Authorization: Bearer <token>`");
    }
    const match = BEARER.exec(authorization);
    if (match === null) throw unauthenticated("Malformed Authorization header: send `Authorization: Bearer <token>`");
    return verifyToken(match[1]!);
  };
  const isAdmin = (claims: Record<string, unknown>): boolean => {
    const value = claims[adminClaim];
    return value === adminValue || (Array.isArray(value) && value.includes(adminValue));
  };

  return {
    tenants: [],
    hasAdmin: true,
    authorizeTenant(authorization, tenantId) {
      const claims = claimsOf(authorization);
      if (isAdmin(claims)) throw new HttpError(403, "FORBIDDEN", "The admin token cannot call tenant endpoints");
      if (claims[tenantClaim] !== tenantId) throw new HttpError(403, "TENANT_MISMATCH", "The bearer token belongs to another tenant");
    },
    authorizeAdmin(authorization) {
      const claims = claimsOf(authorization);
      if (!isAdmin(claims)) throw new HttpError(403, "FORBIDDEN", "This endpoint needs the admin token");
      // The verifier checked that `exp` is a NumericDate.
      return { expiresAt: (claims.exp as number) * 1000 };
    },
  };
}
