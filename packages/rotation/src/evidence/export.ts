/**
 * Export and its offline check. An export is the records matching a filter, as JSON Lines or CSV,
 * plus a manifest that binds them: count, first/last seq and hash, the filter, the content's SHA-256,
 * and an HMAC signature over the manifest when the log has a key. A filtered export is not a whole
 * chain, yet every record in it stays checkable: it keeps its seq, prevHash, hash and mac.
 */
import { createHash } from "node:crypto";
import { type Clock, KmsError, systemClock } from "@kms/core";
import type { EvidenceFilter, EvidenceLog, EvidenceRecord } from "../types";
import { canonicalJson, checkHmacKey, EVIDENCE_FORMAT_VERSION, GENESIS_HASH, macOf, matchesFilter, normalizeFilter, type NormalizedFilter, parseRecord, sameHex } from "./record";
import { type EvidenceFailure, recordFailure, verifyEvidence } from "./verify";

export type ExportFormat = "jsonl" | "csv";

/** The filter as exported: times as ISO strings. */
export interface ExportedFilter {
  readonly tenantId?: string;
  readonly provider?: string;
  readonly keyId?: string;
  readonly types?: readonly string[];
  readonly since?: string;
  readonly until?: string;
}

export interface EvidenceManifest {
  /** Manifest format version. */
  readonly v: number;
  readonly generator: string;
  readonly generatedAt: string;
  readonly format: ExportFormat;
  readonly filter: ExportedFilter;
  readonly count: number;
  /** Undefined (absent) in an empty export, as are the hashes. */
  readonly firstSeq?: number;
  readonly lastSeq?: number;
  readonly firstHash?: string;
  readonly lastHash?: string;
  /** SHA-256 (hex) of the content's UTF-8 bytes. */
  readonly contentSha256: string;
  /** HMAC-SHA-256 (hex) of the canonical JSON of every other manifest field, under the log's key. */
  readonly signature?: string;
}

export interface ExportOptions {
  readonly format: ExportFormat;
  readonly filter?: EvidenceFilter;
  /** The log's HMAC key: signs the manifest. */
  readonly hmacKey?: Uint8Array;
  /** Source of `generatedAt` (default: the system clock). */
  readonly clock?: Clock;
  /** Who made the export (default `@kms/rotation`). */
  readonly generator?: string;
}

export interface EvidenceExport {
  readonly content: string;
  readonly manifest: EvidenceManifest;
}

/** The CSV columns, in order; the first line of every CSV export. */
export const CSV_COLUMNS = [
  "seq", "time", "type", "tenantId", "provider", "keyId", "keyVersion", "previousVersion",
  "actor", "outcome", "errorCode", "requestId", "details", "prevHash", "hash", "mac",
] as const;

export async function exportEvidence(log: EvidenceLog, options: ExportOptions): Promise<EvidenceExport> {
  if (options.format !== "jsonl" && options.format !== "csv") throw new KmsError("INPUT_INVALID", "Export format must be jsonl or csv");
  const hmacKey = checkHmacKey(options.hmacKey);
  const normalized = normalizeFilter(options.filter);
  const parts: string[] = options.format === "csv" ? [csvLine([...CSV_COLUMNS])] : [];
  let count = 0;
  let first: EvidenceRecord | undefined;
  let last: EvidenceRecord | undefined;
  for await (const record of log.records(options.filter)) {
    count++;
    first ??= record;
    last = record;
    parts.push(options.format === "csv" ? csvLine(toCsvRow(record)) : `${canonicalJson(record)}\n`);
  }
  const content = parts.join("");
  const unsigned: EvidenceManifest = {
    v: EVIDENCE_FORMAT_VERSION,
    generator: options.generator ?? "@kms/rotation",
    generatedAt: new Date((options.clock ?? systemClock).now()).toISOString(),
    format: options.format,
    filter: exportedFilter(normalized),
    count,
    ...(first && last ? { firstSeq: first.seq, lastSeq: last.seq, firstHash: first.hash, lastHash: last.hash } : {}),
    contentSha256: sha256(content),
  };
  const manifest = JSON.parse(canonicalJson(unsigned)) as EvidenceManifest;
  return { content, manifest: hmacKey === undefined ? manifest : { ...manifest, signature: signatureOf(hmacKey, manifest) } };
}

export interface ExportVerification {
  readonly ok: boolean;
  /** Records read. */
  readonly count: number;
  /** The first problem: a record (by seq and 1-based position) or the manifest itself. */
  readonly firstBad?: { readonly seq?: number; readonly position?: number; readonly reason: EvidenceFailure | ManifestFailure };
}

export type ManifestFailure =
  /** The manifest's signature is missing or wrong under the given key. */
  | "signature"
  /** The content's SHA-256 is not the manifest's. */
  | "contentSha256"
  /** The content could not be parsed in the manifest's format. */
  | "content"
  /** Count, first/last seq or hash, or the filter, disagree with the records. */
  | "manifest";

/**
 * Checks an export on its own: the signature (with the key), the content hash, every record's hash
 * (and mac, with the key), increasing seqs that match the filter, consecutive seqs chained, and the
 * manifest's count and ends. An unfiltered export is also checked as a whole chain from record 1.
 * When the content is not what the manifest describes, `firstBad` names the first record that no
 * longer checks out, if any does; else the reason is `contentSha256`.
 */
export async function verifyExport(content: string, manifest: EvidenceManifest, options: { hmacKey?: Uint8Array } = {}): Promise<ExportVerification> {
  const hmacKey = checkHmacKey(options.hmacKey);
  const fail = (reason: ExportVerification["firstBad"], count = 0): ExportVerification => ({ ok: false, count, firstBad: reason });
  if (typeof manifest !== "object" || manifest === null) return fail({ reason: "manifest" });
  if (hmacKey !== undefined) {
    const { signature, ...unsigned } = manifest;
    if (typeof signature !== "string" || !sameHex(signatureOf(hmacKey, unsigned), signature)) return fail({ reason: "signature" });
  }
  if (typeof content !== "string") return fail({ reason: "contentSha256" });
  // A content hash that does not match is reported last: the record checks below name the first
  // record that no longer checks out, which says more (`contentSha256` when none does).
  const contentOk = sameHex(sha256(content), String(manifest.contentSha256));
  let rows: unknown[];
  try {
    rows = manifest.format === "csv" ? fromCsv(content) : content.split("\n").filter((line, i, all) => i < all.length - 1 || line !== "").map((line) => JSON.parse(line) as unknown);
  } catch {
    return fail({ reason: "content" });
  }
  let filter: NormalizedFilter;
  try {
    filter = normalizeFilter(toEvidenceFilter(manifest.filter));
  } catch {
    return fail({ reason: "manifest" });
  }
  const isWhole = Object.keys(manifest.filter ?? {}).length === 0;
  if (isWhole) {
    const whole = await verifyEvidence(rows, hmacKey === undefined ? {} : { hmacKey });
    if (!whole.ok) return { ok: false, count: whole.count, ...(whole.firstBad ? { firstBad: whole.firstBad } : {}) };
  }
  let previous: EvidenceRecord | undefined;
  let position = 0;
  for (const row of rows) {
    position++;
    let record: EvidenceRecord;
    try {
      record = parseRecord(row);
    } catch {
      return fail({ position, reason: "malformed" }, position);
    }
    const bad = (reason: EvidenceFailure | ManifestFailure) => fail({ seq: record.seq, position, reason }, position);
    if (previous !== undefined && record.seq <= previous.seq) return bad("seq");
    const expectedPrev = previous !== undefined && record.seq === previous.seq + 1 ? previous.hash : record.seq === 1 ? GENESIS_HASH : undefined;
    const reason = recordFailure(record, expectedPrev, hmacKey);
    if (reason) return bad(reason);
    if (!matchesFilter(record, filter)) return bad("manifest");
    previous = record;
  }
  if (!contentOk) return fail({ reason: "contentSha256" }, rows.length);
  const first = parseRecordOrUndefined(rows[0]);
  const ends =
    manifest.count === rows.length &&
    manifest.firstSeq === first?.seq &&
    manifest.firstHash === first?.hash &&
    manifest.lastSeq === previous?.seq &&
    manifest.lastHash === previous?.hash;
  if (!ends) return fail({ reason: "manifest" }, rows.length);
  return { ok: true, count: rows.length };
}

function parseRecordOrUndefined(row: unknown): EvidenceRecord | undefined {
  return row === undefined ? undefined : parseRecord(row);
}

function exportedFilter({ sinceMs, untilMs, ...rest }: NormalizedFilter): ExportedFilter {
  return {
    ...rest,
    ...(sinceMs === undefined ? {} : { since: new Date(sinceMs).toISOString() }),
    ...(untilMs === undefined ? {} : { until: new Date(untilMs).toISOString() }),
  };
}

function toEvidenceFilter(filter: ExportedFilter | undefined): EvidenceFilter {
  return (filter ?? {}) as EvidenceFilter;
}

function signatureOf(hmacKey: Uint8Array, unsigned: Omit<EvidenceManifest, "signature">): string {
  return macOf(hmacKey, canonicalJson(unsigned));
}

function sha256(text: string): string {
  return createHash("sha256").update(text, "utf8").digest("hex");
}

// CSV (RFC 4180): CRLF line ends; a field holding a comma, quote, CR or LF is quoted, quotes doubled.
// An absent field is an empty cell (the log refuses empty strings, so the two cannot be confused);
// `details` is its canonical JSON.

function toCsvRow(record: EvidenceRecord): string[] {
  return CSV_COLUMNS.map((column) => {
    const value = record[column];
    if (value === undefined) return "";
    return column === "details" ? canonicalJson(value) : String(value);
  });
}

function csvLine(fields: string[]): string {
  return `${fields.map((f) => (/[",\r\n]/.test(f) ? `"${f.replace(/"/g, '""')}"` : f)).join(",")}\r\n`;
}

/** Parses a CSV export back into record objects (unchecked: `parseRecord` checks them). Throws on bad CSV. */
export function fromCsv(content: string): Record<string, unknown>[] {
  const rows = parseCsv(content);
  const header = rows.shift();
  if (header === undefined || header.join(",") !== CSV_COLUMNS.join(",")) throw new KmsError("INPUT_INVALID", "CSV header is not the evidence columns");
  return rows.map((row) => {
    if (row.length !== CSV_COLUMNS.length) throw new KmsError("INPUT_INVALID", "CSV row has the wrong number of fields");
    const record: Record<string, unknown> = {};
    CSV_COLUMNS.forEach((column, i) => {
      const cell = row[i]!;
      if (cell === "") return;
      record[column] = column === "seq" ? (/^[0-9]{1,16}$/.test(cell) ? Number(cell) : cell) : column === "details" ? JSON.parse(cell) : cell;
    });
    return record;
  });
}

const UNQUOTED = /[^,\r\n"]*/y;

/** RFC 4180 records; every record, the last included, ends with CRLF. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let i = 0;
  const malformed = () => new KmsError("INPUT_INVALID", "Malformed CSV");
  while (i < text.length) {
    let field = "";
    if (text[i] === '"') {
      i++;
      for (;;) {
        const quote = text.indexOf('"', i);
        if (quote < 0) throw malformed();
        field += text.slice(i, quote);
        i = quote + 1;
        if (text[i] !== '"') break;
        field += '"';
        i++;
      }
    } else {
      UNQUOTED.lastIndex = i;
      field = UNQUOTED.exec(text)![0];
      i += field.length;
    }
    row.push(field);
    if (text[i] === ",") {
      i++;
    } else if (text.startsWith("\r\n", i)) {
      i += 2;
      rows.push(row);
      row = [];
    } else {
      throw malformed();
    }
  }
  if (row.length > 0) throw malformed();
  return rows;
}
