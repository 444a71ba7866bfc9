/**
 * `createEvidenceLog`: numbers, times, chains and MACs events, and hands each finished record to a
 * store. Appends run one at a time in call order within the process; a store shared between
 * processes (PostgreSQL) adds its own lock around reading the head and writing the next record.
 */
import { type Clock, KmsError, systemClock } from "@kms/core";
import type { EvidenceEvent, EvidenceFilter, EvidenceLog, EvidenceRecord } from "../types";
import { checkHmacKey, GENESIS_HASH, hashRecord, macOf, normalizeFilter, type NormalizedFilter, parseEvent } from "./record";

/** Where records live. Implementations: `openFileEvidenceStore`, `pgEvidenceStore`. */
export interface EvidenceStore {
  /**
   * Reads the last record (undefined when empty), passes it to `next`, and durably stores the record
   * `next` returns, with no other append in between (across processes, for a shared store).
   */
  append(next: (head: EvidenceRecord | undefined) => EvidenceRecord): Promise<EvidenceRecord>;
  /** Stored records in sequence order, matching `filter`; streamed. */
  records(filter: NormalizedFilter): AsyncIterable<EvidenceRecord>;
  close(): Promise<void>;
}

export interface EvidenceLogOptions {
  readonly store: EvidenceStore;
  /** Adds `mac = HMAC-SHA-256(hmacKey, hash)` to every record; ≥ 32 bytes. Copied. */
  readonly hmacKey?: Uint8Array;
  /** Source of record times (default: the system clock). */
  readonly clock?: Clock;
}

export function createEvidenceLog(options: EvidenceLogOptions): EvidenceLog {
  const hmacKey = checkHmacKey(options.hmacKey);
  const clock = options.clock ?? systemClock;
  const { store } = options;
  let tail: Promise<unknown> = Promise.resolve();
  let closed = false;

  const next = (event: EvidenceEvent) => (head: EvidenceRecord | undefined): EvidenceRecord => {
    const body = {
      ...event,
      seq: (head?.seq ?? 0) + 1,
      time: new Date(clock.now()).toISOString(),
      prevHash: head?.hash ?? GENESIS_HASH,
    };
    const hash = hashRecord(body);
    return { ...body, hash, ...(hmacKey === undefined ? {} : { mac: macOf(hmacKey, hash) }) };
  };

  return {
    append(input: EvidenceEvent): Promise<EvidenceRecord> {
      if (closed) return Promise.reject(new KmsError("KMS_CLOSED", "The evidence log is closed"));
      let event: EvidenceEvent;
      try {
        event = parseEvent(input);
      } catch (error) {
        return Promise.reject(error);
      }
      const appended = tail.then(() => store.append(next(event)));
      tail = appended.catch(() => undefined);
      return appended;
    },
    records(filter?: EvidenceFilter): AsyncIterable<EvidenceRecord> {
      return store.records(normalizeFilter(filter));
    },
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      await tail;
      hmacKey?.fill(0);
      await store.close();
    },
  };
}
