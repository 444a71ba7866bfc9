/**
 * Static bearer tokens. Only SHA-256 digests of the tokens are kept in memory. A presented token is
 * hashed and its digest looked up in a map, one lookup whatever the number of tenants: the map's
 * timing depends only on the digest of what the caller sent, which says nothing about any stored
 * token (learning one would take a SHA-256 preimage); the match is then confirmed with
 * `timingSafeEqual`. Neither timing nor a memory dump reveals a token.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { HttpError } from "./errors";

/** RFC 6750 `b64token`: the characters a bearer token may use. */
export const TOKEN_PATTERN = /^[A-Za-z0-9\-._~+/]+=*$/;
const BEARER = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i;
const ADMIN = Symbol("admin");

export type Principal = { kind: "tenant"; tenantId: string } | { kind: "admin" };

export interface Authenticator {
  /**
   * Checks that the `Authorization` header holds `tenantId`'s token. Throws `HttpError`: 401
   * `UNAUTHENTICATED` when the header is missing, malformed or holds no known token; 403
   * `TENANT_MISMATCH` for another tenant's token; 403 `FORBIDDEN` for the admin token (admins
   * manage keys, they do not read tenants' data).
   */
  authorizeTenant(authorization: string | undefined, tenantId: string): void;
  /**
   * Checks that the header holds the admin token (401 / 403 `FORBIDDEN` otherwise). `expiresAt`:
   * when the credential stops being valid on its own (a JWT's verified `exp`, in ms); a static token
   * has none.
   */
  authorizeAdmin(authorization: string | undefined): { expiresAt?: number };
  /** Tenants that have a token (their ids only). */
  readonly tenants: readonly string[];
  readonly hasAdmin: boolean;
}

export interface TokenSet {
  /** Tenant id → token. */
  tenants: Readonly<Record<string, string>>;
  admin?: string | undefined;
}

/** What the server keeps of its static tokens: their SHA-256 digests (32 bytes each). */
export interface TokenDigests {
  /** Tenant id → digest. */
  tenants: Readonly<Record<string, Buffer>>;
  admin?: Buffer | undefined;
}

/** A token's SHA-256 digest: what `KMS_TENANT_TOKEN_HASHES` / `KMS_ADMIN_TOKEN_HASH` hold, in hex. */
export function tokenDigest(token: string): Buffer {
  return createHash("sha256").update(token, "utf8").digest();
}

export function digestsOf(tokens: TokenSet): TokenDigests {
  const tenants: Record<string, Buffer> = {};
  for (const [tenantId, token] of Object.entries(tokens.tenants)) tenants[tenantId] = tokenDigest(token);
  return { tenants, admin: tokens.admin === undefined ? undefined : tokenDigest(tokens.admin) };
}

/** Builds an authenticator from the tokens' digests (`digestsOf` for plaintext tokens). */
export function createTokenAuth(digests: TokenDigests): Authenticator {
  /** Digest (hex) → its owner. Configuration guarantees every token is unique. */
  const owners = new Map<string, { owner: string | typeof ADMIN; digest: Buffer }>();
  for (const [tenantId, digest] of Object.entries(digests.tenants)) owners.set(digest.toString("hex"), { owner: tenantId, digest });
  if (digests.admin !== undefined) owners.set(digests.admin.toString("hex"), { owner: ADMIN, digest: digests.admin });
  const tenants = Object.keys(digests.tenants);

  /** The owner of the presented token, or undefined. */
  function identify(authorization: string | undefined): string | typeof ADMIN | undefined {
    if (authorization === undefined) {
      throw new HttpError(401, "UNAUTHENTICATED", "Missing Authorization header: send `Authorization: Bearer <token>`");
    }
    const match = BEARER.exec(authorization);
    if (match === null) {
      throw new HttpError(401, "UNAUTHENTICATED", "Malformed Authorization header: send `Authorization: Bearer <token>`");
    }
    const presented = tokenDigest(match[1]!);
    const entry = owners.get(presented.toString("hex"));
    return entry !== undefined && timingSafeEqual(presented, entry.digest) ? entry.owner : undefined;
  }

  return {
    tenants,
    hasAdmin: digests.admin !== undefined,
    authorizeTenant(authorization, tenantId) {
      const owner = identify(authorization);
      if (owner === tenantId) return;
      if (owner === undefined) throw new HttpError(401, "UNAUTHENTICATED", "The bearer token is not valid");
      if (owner === ADMIN) throw new HttpError(403, "FORBIDDEN", "The admin token cannot call tenant endpoints");
      throw new HttpError(403, "TENANT_MISMATCH", "The bearer token belongs to another tenant");
    },
    authorizeAdmin(authorization) {
      const owner = identify(authorization);
      if (owner === ADMIN) return {};
      if (owner === undefined) throw new HttpError(401, "UNAUTHENTICATED", "The bearer token is not valid");
      throw new HttpError(403, "FORBIDDEN", "This endpoint needs the admin token");
    },
  };
}

/** A fresh random token (256 bits, base64url) for development. */
export function generateToken(): string {
  return randomBytes(32).toString("base64url");
}
