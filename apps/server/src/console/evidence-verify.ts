/**
 * `POST /admin/evidence/verify`: an export and its manifest checked with @kms/rotation's
 * `verifyExport` (with this server's HMAC key when it has one: record MACs and the manifest's
 * signature), which names the first record that no longer checks out; the answer adds that record
 * as it reads in the upload.
 */
import { fromCsv, verifyExport, type EvidenceManifest } from "@kms/rotation";

export interface VerifyAnswer {
  ok: boolean;
  count: number;
  firstBad?: { seq?: number; position?: number; reason: string };
  /** The first bad record as it reads in the upload (a JSON line's object, or a CSV row's fields). */
  record?: unknown;
}

export async function verifyUploadedExport(content: string, manifest: EvidenceManifest, hmacKey: Buffer | undefined): Promise<VerifyAnswer> {
  const options = hmacKey === undefined ? {} : { hmacKey };
  const result = await verifyExport(content, manifest, options);
  const answer: VerifyAnswer = { ok: result.ok, count: result.count, ...(result.firstBad ? { firstBad: result.firstBad } : {}) };
  const position = answer.firstBad?.position;
  if (position !== undefined) {
    const record = recordAt(content, manifest.format, position);
    if (record !== undefined) answer.record = record;
  }
  return answer;
}

function recordAt(content: string, format: string, position: number): unknown {
  try {
    if (format === "csv") return fromCsv(content)[position - 1];
    const line = content.split("\n")[position - 1];
    return line === undefined ? undefined : (JSON.parse(line) as unknown);
  } catch {
    return undefined;
  }
}
