/**
 * Who may call the admin API: the admin bearer credential (src/auth.ts), or a console session
 * cookie, with the session's CSRF token in `x-csrf-token` on every method that can change state.
 * A request with an `Authorization` header is judged by it alone (a cookie does not rescue a bad
 * token); one without is judged by its session cookie; one with neither is the credential's 401.
 */
import type { FastifyRequest } from "fastify";
import type { Authenticator } from "../auth";
import { HttpError } from "../errors";
import { CSRF_HEADER, SESSION_COOKIE, cookieValue, type Session, type SessionStore } from "./session";

/** Methods that never change state: no CSRF token needed. */
const SAFE_METHODS: ReadonlySet<string> = new Set(["GET", "HEAD", "OPTIONS"]);

export type AdminGuard = (request: FastifyRequest) => void;

export function createAdminGuard(auth: Authenticator, sessions: SessionStore): AdminGuard {
  return (request) => {
    const authorization = request.headers.authorization;
    const cookie = cookieValue(request.headers.cookie, SESSION_COOKIE);
    if (authorization !== undefined || cookie === undefined) {
      auth.authorizeAdmin(authorization);
      return;
    }
    const session = sessionOf(sessions, cookie);
    if (!SAFE_METHODS.has(request.method)) requireCsrf(sessions, session, request);
  };
}

/** The live session of a cookie value; 401 when there is none (expired, signed out, unknown). */
export function sessionOf(sessions: SessionStore, cookie: string | undefined): Session {
  const session = sessions.touch(cookie);
  if (session === undefined) throw new HttpError(401, "UNAUTHENTICATED", "The console session has expired or was signed out: sign in again");
  return session;
}

/** 403 unless the request carries the session's CSRF token. */
export function requireCsrf(sessions: SessionStore, session: Session, request: FastifyRequest): void {
  const presented = request.headers[CSRF_HEADER];
  if (!sessions.csrfMatches(session, typeof presented === "string" ? presented : undefined)) {
    throw new HttpError(403, "FORBIDDEN", `Missing or wrong CSRF token: send the session's token in the ${CSRF_HEADER} header`);
  }
}
