/**
 * Re-wrap: moves stored envelopes onto their tenant's current key version without touching the
 * payload. Core's `kms.rewrap` unwraps the data key (DEK), authenticates the envelope for its tenant
 * and context, and wraps the DEK under the current key; the IV, ciphertext and GCM tag stay
 * byte-identical. This module drives it over an application's store:
 *
 * - **What is current** is decided by the envelope's key section (`parseEnvelope`: provider, key id,
 *   key version) against `isCurrent`; by default, against one `kms.describeKeys()` snapshot taken when
 *   the run starts (every configured current key with its current version). Current envelopes are
 *   skipped: no KMS call, no write.
 * - **One re-wrap per data key**: envelopes that share a DEK (the encrypt cache hands one DEK to many
 *   messages) share their header, key section and key-section tag; the first such envelope of a
 *   (tenant, context) goes through `kms.rewrap` and the others get the same new header, key section
 *   and tag in front of their own, unchanged, payload. That is the bytes `kms.rewrap` would give
 *   (only the wrap's random IV differs) at one unwrap and one wrap per DEK instead of per envelope.
 * - **Resumable**: the source is read in its order and the cursor is the id of the last envelope
 *   below which (in that order) every envelope is done (written, skipped or reported as failed). It
 *   is saved every `batchSize` envelopes and at the end; a new run starts after it. Work done past
 *   the cursor before an interruption is not redone either: those envelopes are current by then and
 *   are skipped.
 * - **Never logs**: failures go to `onFailure` with the envelope id and the error; no envelope bytes,
 *   contexts or keys are kept in reports or evidence.
 */
import { createHash } from "node:crypto";
import { type EncryptionContext, type KmsClient, KmsError, type ParsedEnvelope, contextBytes, parseEnvelope } from "@kms/core";
import type { EvidenceLog } from "./types";

/** One stored envelope, as the application's store yields it. */
export interface StoredEnvelope {
  /** The record's id in the application's store; the checkpoint cursor is one of these. */
  readonly id: string;
  readonly tenantId: string;
  readonly envelope: Uint8Array;
  /** The encryption context it was written with. */
  readonly context?: EncryptionContext;
}

/** The key an envelope's data key is wrapped under, as its key section names it. */
export interface EnvelopeKey {
  readonly tenantId: string;
  readonly providerId: string;
  readonly keyId: string;
  readonly keyVersion: string;
}

/** Where a run records how far it got. */
export interface RewrapCheckpoint {
  /** The cursor saved by the last run, or undefined to start from the beginning. */
  load(): Promise<string | undefined>;
  /** Every envelope up to and including the one with this id (in source order) is done. */
  save(cursor: string): Promise<void>;
}

export interface RewrapProgress {
  /** Envelopes read from the source in this run. */
  readonly seen: number;
  /** Written back under the current key version. */
  readonly rewrapped: number;
  /** Already current: left alone. */
  readonly skipped: number;
  /** Reported to `onFailure` and left as they were. */
  readonly failed: number;
}

export interface RewrapReport extends RewrapProgress {
  /** The cursor at the end of the run, as saved to the checkpoint (the loaded one when nothing finished). */
  readonly cursor: string | undefined;
  /** True when `signal` or `stopOnFailure` ended the run before the source did. */
  readonly interrupted: boolean;
}

export interface RewrapOptions {
  /** Only `rewrap` and, for the default `isCurrent`, `describeKeys` are used. */
  readonly kms: Pick<KmsClient, "rewrap" | "describeKeys">;
  /**
   * The envelopes to re-wrap, in a stable order (e.g. by primary key). A function is called with the
   * checkpoint's cursor and must start after it; an iterable must already start there.
   */
  readonly source: AsyncIterable<StoredEnvelope> | ((after: string | undefined) => AsyncIterable<StoredEnvelope>);
  /** Persists the new envelope of record `id`. A rejection counts as that envelope's failure. */
  write(id: string, envelope: Buffer): Promise<void>;
  /** Envelopes in flight at once. Default 8. */
  readonly concurrency?: number;
  /** Envelopes between checkpoint saves and progress reports. Default 1000. */
  readonly batchSize?: number;
  readonly checkpoint?: RewrapCheckpoint;
  /** Called after every batch and once at the end. */
  onProgress?(progress: RewrapProgress): void;
  /** One envelope failed (malformed, key disabled, write failed…): it is left as it was. */
  onFailure?(id: string, error: unknown): void;
  /**
   * Whether an envelope's key is its tenant's current key version. Default: its key and version are
   * one of `kms.describeKeys()`'s current keys at the start of the run. Pass your own when tenants
   * move between keys (a key that is current for others but no longer for this tenant).
   */
  isCurrent?(key: EnvelopeKey): boolean | Promise<boolean>;
  /** End the run at the first failure instead of reporting it and going on. Default false. */
  readonly stopOnFailure?: boolean;
  /** Aborting stops reading the source; envelopes in flight finish and the checkpoint is saved. */
  readonly signal?: AbortSignal;
  /** Receives one `rewrap.completed` record when the run reaches the end of the source. */
  readonly evidence?: EvidenceLog;
  /** The evidence record's actor. Default `rewrap`. */
  readonly actor?: string;
}

const DEFAULT_CONCURRENCY = 8;
const DEFAULT_BATCH_SIZE = 1000;
/** Re-wrapped data keys remembered for their sibling envelopes; the oldest are forgotten first. */
const SHARED_DEK_MEMORY = 10_000;
const CONTEXT_LABEL = "@kms/rotation rewrap";

type Outcome = "rewrapped" | "skipped" | "failed";

export async function rewrapEnvelopes(options: RewrapOptions): Promise<RewrapReport> {
  const concurrency = positiveInt(options.concurrency, DEFAULT_CONCURRENCY, "concurrency");
  const batchSize = positiveInt(options.batchSize, DEFAULT_BATCH_SIZE, "batchSize");
  if (typeof options.write !== "function") throw new KmsError("INPUT_INVALID", "rewrapEnvelopes needs a write(id, envelope) function");
  const { kms, checkpoint, signal } = options;
  const isCurrent = options.isCurrent ?? (await currentKeysOf(kms));
  const rewrapShared = sharedRewrap(kms);

  const start = await checkpoint?.load();
  const source = typeof options.source === "function" ? options.source(start) : options.source;
  const counts = { seen: 0, rewrapped: 0, skipped: 0, failed: 0 };
  const done = new FinishedPrefix(start);
  let stop = false;
  /** A checkpoint save or an `onFailure` callback threw: the run stops and rejects with it. */
  let fatal: { error: unknown } | undefined;
  const fail = (error: unknown) => {
    fatal ??= { error };
    stop = true;
  };
  let lastSaved = done.cursor;
  let sinceSave = 0;
  let saving: Promise<void> = Promise.resolve();

  /** Saves the cursor and reports progress as they are now (the save itself may run later, in turn). */
  const saveProgress = () => {
    const cursor = done.cursor;
    const progress = { ...counts };
    saving = saving.then(async () => {
      if (checkpoint && cursor !== undefined && cursor !== lastSaved) {
        lastSaved = cursor;
        await checkpoint.save(cursor);
      }
      options.onProgress?.(progress);
    }).catch(fail);
  };

  const handle = async (item: StoredEnvelope): Promise<Outcome> => {
    try {
      const parsed = parseEnvelope(item.envelope);
      const { providerId, keyId, keyVersion } = parsed.keySection;
      if (await isCurrent({ tenantId: item.tenantId, providerId, keyId, keyVersion })) return "skipped";
      await options.write(item.id, await rewrapShared(item, parsed));
      return "rewrapped";
    } catch (error) {
      if (options.stopOnFailure) stop = true;
      try {
        options.onFailure?.(item.id, error);
      } catch (callbackError) {
        fail(callbackError);
      }
      return "failed";
    }
  };

  // One reader feeds at most `concurrency` envelopes in flight; each finished one may advance the cursor.
  const inFlight = new Set<Promise<void>>();
  try {
    for await (const item of source) {
      if (stop || signal?.aborted) break;
      checkItem(item, counts.seen);
      const position = counts.seen++;
      const task = handle(item).then((outcome) => {
        counts[outcome]++;
        done.finish(position, item.id);
        if (++sinceSave >= batchSize) {
          sinceSave = 0;
          saveProgress();
        }
      });
      inFlight.add(task);
      void task.finally(() => inFlight.delete(task));
      if (inFlight.size >= concurrency) await Promise.race(inFlight);
    }
  } finally {
    // Also when the source fails: what finished is kept, so a new run does not redo it.
    await Promise.all(inFlight);
    saveProgress();
    await saving;
  }
  if (fatal) throw fatal.error;

  const interrupted = stop || signal?.aborted === true;
  if (!interrupted && options.evidence) {
    await options.evidence.append({
      type: "rewrap.completed",
      actor: options.actor ?? "rewrap",
      outcome: counts.failed === 0 ? "success" : "failure",
      details: { ...counts },
    });
  }
  return { ...counts, cursor: done.cursor, interrupted };
}

/**
 * `kms.rewrap` once per data key: envelopes with the same tenant, context, header, key section and
 * key-section tag share one DEK, so the first one's new header, key section and tag (its "prefix",
 * everything before the IV) fit them all. Concurrent siblings wait for the same call; a failed call is
 * forgotten, so the next sibling tries again.
 */
function sharedRewrap(kms: Pick<KmsClient, "rewrap">): (item: StoredEnvelope, parsed: ParsedEnvelope) => Promise<Buffer> {
  const prefixes = new Map<string, Promise<Buffer>>();
  return async (item, parsed) => {
    const envelope = Buffer.from(item.envelope.buffer, item.envelope.byteOffset, item.envelope.byteLength);
    const payload = envelope.subarray(prefixLength(envelope, parsed)); // IV, ciphertext, GCM tag: kept as they are
    const dek = createHash("sha256")
      .update(`${item.tenantId.length}:${item.tenantId}`)
      .update(contextBytes(CONTEXT_LABEL, item.context ?? {}, "rewrap"))
      .update(envelope.subarray(0, envelope.length - payload.length))
      .digest("hex");
    let prefix = prefixes.get(dek);
    if (prefix === undefined) {
      prefix = kms.rewrap(item.tenantId, envelope, item.context).then((out) => {
        const buf = Buffer.from(out);
        return Buffer.from(buf.subarray(0, prefixLength(buf, parseEnvelope(buf))));
      });
      prefix.catch(() => prefixes.delete(dek));
      prefixes.set(dek, prefix);
      if (prefixes.size > SHARED_DEK_MEMORY) prefixes.delete(prefixes.keys().next().value!);
    }
    return Buffer.concat([await prefix, payload]);
  };
}

/** Where the payload (IV, ciphertext, GCM tag) starts: `parseEnvelope` returns views into `envelope`. */
function prefixLength(envelope: Buffer, parsed: ParsedEnvelope): number {
  return parsed.iv.byteOffset - envelope.byteOffset;
}

/** The default `isCurrent`: the configured current keys and their versions, as described now. */
async function currentKeysOf(kms: Pick<KmsClient, "describeKeys">): Promise<(key: EnvelopeKey) => boolean> {
  const current = new Set<string>();
  for (const report of await kms.describeKeys()) {
    if (report.description) current.add(keyName(report.provider, report.keyId, report.description.currentVersion));
  }
  return (key) => current.has(keyName(key.providerId, key.keyId, key.keyVersion));
}

function keyName(provider: string, keyId: string, version: string): string {
  return `${provider}\0${keyId.length}:${keyId}\0${version}`;
}

/**
 * The cursor: the id of the last envelope of the longest finished run from the start, in source
 * order. Envelopes finish out of order (concurrency); those past a gap wait here until it closes.
 */
class FinishedPrefix {
  cursor: string | undefined;
  #next = 0;
  readonly #waiting = new Map<number, string>();

  constructor(start: string | undefined) {
    this.cursor = start;
  }

  finish(position: number, id: string): void {
    this.#waiting.set(position, id);
    for (let id = this.#waiting.get(this.#next); id !== undefined; id = this.#waiting.get(this.#next)) {
      this.#waiting.delete(this.#next++);
      this.cursor = id;
    }
  }
}

function checkItem(item: StoredEnvelope, index: number): void {
  const ok =
    typeof item === "object" &&
    item !== null &&
    typeof item.id === "string" &&
    typeof item.tenantId === "string" &&
    item.envelope instanceof Uint8Array;
  // The source is the application's own code: a wrong shape is a bug there, so the run stops.
  if (!ok) throw new KmsError("INPUT_INVALID", `source item #${index + 1} is not { id: string, tenantId: string, envelope: Uint8Array }`);
}

function positiveInt(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < 1) throw new KmsError("INPUT_INVALID", `rewrapEnvelopes: ${name} must be a positive integer`);
  return value;
}
