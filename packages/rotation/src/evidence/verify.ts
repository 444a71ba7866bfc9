/**
 * `verifyEvidence`: checks a chain offline, from any source of records (a log, a store, a file read
 * with `readEvidenceFile`, an array), and names the first record that fails.
 */
import { KmsError } from "@kms/core";
import type { EvidenceRecord } from "../types";
import { checkHmacKey, GENESIS_HASH, hashRecord, macOf, parseRecord, sameHex } from "./record";

/** Why a record failed, checked in this order. */
export type EvidenceFailure =
  /** Not a well-formed record (a field missing, of the wrong type, or unknown). */
  | "malformed"
  /** Its `seq` is not the one expected here: a record was deleted, inserted or moved. */
  | "seq"
  /** Its `prevHash` is not the hash of the record before it. */
  | "prevHash"
  /** Its `hash` is not the hash of its contents: a field was changed. */
  | "hash"
  /** Its `mac` is missing or wrong under the given key: rewritten without the key. */
  | "mac"
  /** The chain ends before the `head` given in the options: records were cut from the end. */
  | "missing"
  /** The record at the `head`'s seq has another hash: the chain was rewritten since. */
  | "head";

export interface EvidenceVerification {
  readonly ok: boolean;
  /** Records read up to and including the first bad one (all of them when ok). */
  readonly count: number;
  /** The first bad record: its `seq` (the expected one when unreadable), 1-based position, and why. */
  readonly firstBad?: { readonly seq: number; readonly position: number; readonly reason: EvidenceFailure };
  /** The hash of the last good record (64 zeros for an empty chain): compare with a kept copy to detect a cut end. */
  readonly lastHash: string;
}

export interface VerifyOptions {
  /** The log's HMAC key: every record must then carry a valid `mac`. */
  readonly hmacKey?: Uint8Array;
  /**
   * A head kept from earlier (a previous verification's count and lastHash, an export manifest's
   * lastSeq and lastHash). A chain alone cannot show that records were cut from its end; against a
   * kept head it can.
   */
  readonly head?: { readonly seq: number; readonly hash: string };
}

type Source = Iterable<unknown> | AsyncIterable<unknown>;

/** Checks a whole chain from record 1: seq continuity, prevHash links, hashes, MACs. */
export async function verifyEvidence(records: Source, options: VerifyOptions = {}): Promise<EvidenceVerification> {
  const hmacKey = checkHmacKey(options.hmacKey);
  const { head } = options;
  if (head !== undefined && (!Number.isSafeInteger(head.seq) || head.seq < 1 || typeof head.hash !== "string" || !/^[0-9a-f]{64}$/.test(head.hash))) {
    throw new KmsError("INPUT_INVALID", "Invalid evidence head: seq must be a positive integer and hash 64 hex digits");
  }
  let count = 0;
  let lastHash = GENESIS_HASH;
  for await (const input of records) {
    count++;
    const expectedSeq = count;
    const bad = (reason: EvidenceFailure, seq = expectedSeq): EvidenceVerification => ({ ok: false, count, firstBad: { seq, position: count, reason }, lastHash });
    let record: EvidenceRecord;
    try {
      record = parseRecord(input);
    } catch {
      return bad("malformed");
    }
    if (record.seq !== expectedSeq) return bad("seq", record.seq);
    const reason = recordFailure(record, lastHash, hmacKey);
    if (reason) return bad(reason, record.seq);
    if (head?.seq === record.seq && !sameHex(record.hash, head.hash)) return bad("head", record.seq);
    lastHash = record.hash;
  }
  if (head !== undefined && count < head.seq) {
    return { ok: false, count, firstBad: { seq: count + 1, position: count + 1, reason: "missing" }, lastHash };
  }
  return { ok: true, count, lastHash };
}

/**
 * The checks of one record on its own (`prevHash` against `expectedPrev` when given), shared with
 * the export verifier.
 */
export function recordFailure(record: EvidenceRecord, expectedPrev: string | undefined, hmacKey: Uint8Array | undefined): EvidenceFailure | undefined {
  if (expectedPrev !== undefined && !sameHex(record.prevHash, expectedPrev)) return "prevHash";
  if (!sameHex(hashRecord(record), record.hash)) return "hash";
  if (hmacKey !== undefined && (record.mac === undefined || !sameHex(macOf(hmacKey, record.hash), record.mac))) return "mac";
  return undefined;
}
