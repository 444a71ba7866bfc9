/**
 * The contracts between the parts of @kms/rotation: the evidence log (evidence/), the rotation
 * scheduler and its locks (scheduler/, locks/), re-wrap (rewrap.ts). Each part implements or uses
 * these; none reaches into another's files.
 */

/** What happened to a key, as the evidence log records it. */
export type EvidenceEventType =
  | "key.created"
  /** Written before a rotation is attempted: a crash after it is recovered on restart. */
  | "key.rotation-started"
  | "key.rotated"
  | "key.rotation-failed"
  | "rewrap.completed"
  | "key.disabled"
  | "key.destruction-scheduled"
  | "permissions.validated"
  | "config.loaded";

/** One event to record. Never holds key material, plaintext or context values. */
export interface EvidenceEvent {
  readonly type: EvidenceEventType;
  /** The tenant, when the event is about one tenant's key. */
  readonly tenantId?: string;
  /** Provider id (`aws-kms`, `local`…). */
  readonly provider?: string;
  /** The key reference as configured. */
  readonly keyId?: string;
  /** The key version after the event (the new one, for a rotation). */
  readonly keyVersion?: string;
  /** The key version before the event (for a rotation). */
  readonly previousVersion?: string;
  /** Who or what caused it: `scheduler@<host>`, `admin:<name>`, `cli`… */
  readonly actor: string;
  readonly outcome: "success" | "failure";
  /** The KmsError code of a failure. */
  readonly errorCode?: string;
  /** The provider's request id, when it gave one (to match CloudTrail, Vault's audit log…). */
  readonly requestId?: string;
  /** Small, secret-free facts (counts, durations, flags). */
  readonly details?: Readonly<Record<string, string | number | boolean>>;
}

/** A recorded event: numbered, timed, chained. */
export interface EvidenceRecord extends EvidenceEvent {
  /** 1, 2, 3… without gaps. */
  readonly seq: number;
  /** ISO 8601, UTC, milliseconds. */
  readonly time: string;
  /** The previous record's `hash` (64 zero hex digits for the first). */
  readonly prevHash: string;
  /** SHA-256 (hex) over the record's canonical encoding, `prevHash` included. */
  readonly hash: string;
  /** HMAC-SHA-256 (hex) of `hash` under the log's HMAC key, when it has one. */
  readonly mac?: string;
}

export interface EvidenceFilter {
  readonly tenantId?: string;
  readonly provider?: string;
  readonly keyId?: string;
  readonly types?: readonly EvidenceEventType[];
  /** Inclusive, ISO 8601 or Date. */
  readonly since?: string | Date;
  /** Exclusive, ISO 8601 or Date. */
  readonly until?: string | Date;
}

/** The append-only log every part records into (and the scheduler reads to recover after a crash). */
export interface EvidenceLog {
  /** Appends one record; durable (flushed to disk / committed) when the promise resolves. */
  append(event: EvidenceEvent): Promise<EvidenceRecord>;
  /** Records in sequence order, filtered. */
  records(filter?: EvidenceFilter): AsyncIterable<EvidenceRecord>;
  close(): Promise<void>;
}

/** A lease on one key, so that one scheduler instance at a time rotates it. */
export interface LockLease {
  /** Strictly increasing per lock name across holders: a stale holder's token is lower (fencing). */
  readonly token: number;
  /** True while the lease has not expired or been lost. */
  isValid(): boolean;
  release(): Promise<void>;
}

/** Embedded (in-process), PostgreSQL or Redis: see locks/. */
export interface LockProvider {
  /** The lease on `name` for `ttlMs`, or undefined when another holder has it. */
  tryAcquire(name: string, ttlMs: number): Promise<LockLease | undefined>;
  close(): Promise<void>;
}
