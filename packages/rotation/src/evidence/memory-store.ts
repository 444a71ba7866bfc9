/**
 * An in-memory evidence store: for tests and for short-lived tools. Nothing survives the process;
 * never use it where evidence must be kept.
 */
import type { EvidenceRecord } from "../types";
import type { EvidenceStore } from "./log";
import { matchesFilter, type NormalizedFilter } from "./record";

export interface MemoryEvidenceStore extends EvidenceStore {
  /** The stored records, in order (the array itself: tests may tamper with it). */
  readonly stored: EvidenceRecord[];
}

export function memoryEvidenceStore(): MemoryEvidenceStore {
  const stored: EvidenceRecord[] = [];
  return {
    stored,
    async append(next) {
      const record = next(stored.at(-1));
      stored.push(record);
      return record;
    },
    async *records(filter: NormalizedFilter) {
      for (const record of stored) if (matchesFilter(record, filter)) yield record;
    },
    async close() {},
  };
}
