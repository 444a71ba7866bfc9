/**
 * Admin console sessions: signing in with the admin credential gives a random session id (a cookie)
 * and a CSRF token (a synchronizer token kept with the session, sent back by the page in the
 * `x-csrf-token` header on every state-changing call). Sessions live in this process's memory, with
 * an idle and an absolute expiry; signing out deletes one. Only SHA-256 digests of session ids are
 * kept (a memory dump or a timing difference in the map lookup reveals no live cookie), and both
 * secrets are compared with `timingSafeEqual`.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";

/** The session cookie. Not `__Host-`: that prefix needs `Path=/` and `Secure`, and this one is `Path=/admin`. */
export const SESSION_COOKIE = "kms_console_session";
/** The header the page sends the CSRF token in. */
export const CSRF_HEADER = "x-csrf-token";
/** A session unused this long is gone. */
export const DEFAULT_IDLE_TIMEOUT_MS = 15 * 60_000;
/** A session is gone this long after sign-in, used or not. */
export const DEFAULT_ABSOLUTE_TIMEOUT_MS = 8 * 3_600_000;
/** Live sessions kept at most; signing in beyond that ends the oldest. */
export const DEFAULT_MAX_SESSIONS = 1_000;

/** 256 bits, base64url: 43 characters. */
const SECRET = /^[A-Za-z0-9_-]{43}$/;

export interface Session {
  readonly csrfToken: string;
  readonly createdAt: number;
  /** The absolute expiry (sign-in + absolute timeout, or the credential's own expiry when sooner). */
  readonly expiresAt: number;
  lastSeenAt: number;
}

export interface SessionStoreOptions {
  idleTimeoutMs?: number;
  absoluteTimeoutMs?: number;
  maxSessions?: number;
  /** Milliseconds since the epoch; for tests. */
  now?: () => number;
}

export interface SessionStore {
  readonly idleTimeoutMs: number;
  readonly absoluteTimeoutMs: number;
  /** A new session; `credentialExpiresAt` (ms) caps its life (a JWT's `exp`). */
  create(credentialExpiresAt?: number): { id: string; session: Session };
  /** The live session of a cookie value (and marks it used), or undefined. */
  touch(id: string | undefined): Session | undefined;
  /** Whether `presented` is the session's CSRF token. */
  csrfMatches(session: Session, presented: string | undefined): boolean;
  delete(id: string | undefined): void;
  /** The idle-or-absolute expiry of a session as of now. */
  expiryOf(session: Session): number;
  readonly size: number;
}

const digest = (id: string) => createHash("sha256").update(id, "utf8").digest("hex");

export function createSessionStore(options: SessionStoreOptions = {}): SessionStore {
  const idleTimeoutMs = options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
  const absoluteTimeoutMs = options.absoluteTimeoutMs ?? DEFAULT_ABSOLUTE_TIMEOUT_MS;
  const maxSessions = options.maxSessions ?? DEFAULT_MAX_SESSIONS;
  const now = options.now ?? Date.now;
  /** Digest of the session id → session, oldest first (Map keeps insertion order). */
  const sessions = new Map<string, Session>();
  const expired = (s: Session, t: number) => t >= s.expiresAt || t >= s.lastSeenAt + idleTimeoutMs;

  const sweep = (t: number) => {
    for (const [key, s] of sessions) if (expired(s, t)) sessions.delete(key);
  };

  return {
    idleTimeoutMs,
    absoluteTimeoutMs,
    create(credentialExpiresAt) {
      const t = now();
      sweep(t);
      while (sessions.size >= maxSessions) sessions.delete(sessions.keys().next().value!);
      const id = randomBytes(32).toString("base64url");
      const cap = t + absoluteTimeoutMs;
      const session: Session = {
        csrfToken: randomBytes(32).toString("base64url"),
        createdAt: t,
        expiresAt: credentialExpiresAt !== undefined && credentialExpiresAt < cap ? credentialExpiresAt : cap,
        lastSeenAt: t,
      };
      sessions.set(digest(id), session);
      return { id, session };
    },
    touch(id) {
      if (id === undefined || !SECRET.test(id)) return undefined;
      const key = digest(id);
      const session = sessions.get(key);
      if (session === undefined) return undefined;
      const t = now();
      if (expired(session, t)) {
        sessions.delete(key);
        return undefined;
      }
      session.lastSeenAt = t;
      return session;
    },
    csrfMatches(session, presented) {
      if (presented === undefined || !SECRET.test(presented)) return false;
      return timingSafeEqual(Buffer.from(presented, "utf8"), Buffer.from(session.csrfToken, "utf8"));
    },
    delete(id) {
      if (id !== undefined && SECRET.test(id)) sessions.delete(digest(id));
    },
    expiryOf(session) {
      return Math.min(session.expiresAt, session.lastSeenAt + idleTimeoutMs);
    },
    get size() {
      return sessions.size;
    },
  };
}

/** The value of one cookie in a `Cookie` header (the first, if sent twice), or undefined. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  for (const part of header.split(";")) {
    const eq = part.indexOf("=");
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/** `Set-Cookie` for a session: HttpOnly, SameSite=Strict, Path=/admin, Secure over TLS; a session cookie (no Max-Age). */
export function sessionCookie(id: string, secure: boolean): string {
  return `${SESSION_COOKIE}=${id}; Path=/admin; HttpOnly; SameSite=Strict${secure ? "; Secure" : ""}`;
}

/** `Set-Cookie` that removes the session cookie. */
export function clearedSessionCookie(secure: boolean): string {
  return `${SESSION_COOKIE}=; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=0${secure ? "; Secure" : ""}`;
}
