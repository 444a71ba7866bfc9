/**
 * `kms rewrap`: re-wraps every envelope of a file (one base64url envelope per line) under the
 * tenant's current key version, through @kms/rotation's `rewrapEnvelopes` (one KMS unwrap and wrap
 * per data key, payloads untouched). The output has the same lines in the same order: envelopes
 * already current are copied as they are. Input is streamed and output written as lines complete, so
 * memory stays flat whatever the file's size.
 */
import { once } from "node:events";
import { createReadStream, createWriteStream, statSync } from "node:fs";
import { resolve } from "node:path";
import { createInterface } from "node:readline";
import { fromBase64Url, isKmsError, parseEnvelope, publicMessageOf, toBase64Url } from "@kms/core";
import { rewrapEnvelopes, type EnvelopeKey, type StoredEnvelope } from "@kms/rotation";
import { CONFIG_FLAG, contextOf, required, str, type Command, type Flags } from "../command";
import { configLocation, openKms, readConfig } from "../config";
import { CliError, EXIT, UsageError } from "../errors";
import { err, out, progressBar } from "../output";

/** Failures listed one by one before the rest are only counted. */
const MAX_LISTED_FAILURES = 10;
/** Output is written in chunks of about this size. */
const WRITE_CHUNK_CHARS = 64 * 1024;

async function rewrap(flags: Flags): Promise<number> {
  const tenantId = required(flags, "tenant");
  const inPath = required(flags, "in");
  const outPath = required(flags, "out");
  const context = contextOf(flags);
  if (resolve(inPath) === resolve(outPath)) throw new UsageError("--out must not be the --in file (write elsewhere, then replace it)");
  let total: number;
  try {
    total = statSync(inPath).size;
  } catch (error) {
    throw new CliError(`cannot read --in ${inPath} (${(error as NodeJS.ErrnoException).code ?? "unreadable"})`, EXIT.USAGE);
  }
  const kms = openKms(readConfig(configLocation(str(flags, "config"))));
  const started = process.hrtime.bigint();
  const output = createWriteStream(outPath, { mode: 0o600 });
  const outputFailed = new Promise<never>((_, reject) => output.once("error", reject));
  outputFailed.catch(() => undefined);

  // Lines finish out of order (concurrency): each waits in `done` until those before it are written.
  const done = new Map<number, string>();
  let nextToWrite = 0;
  let pendingText = "";
  const finish = (index: number, text: string) => {
    done.set(index, text);
    for (let line = done.get(nextToWrite); line !== undefined; line = done.get(nextToWrite)) {
      done.delete(nextToWrite++);
      pendingText += `${line}\n`;
    }
    if (pendingText.length >= WRITE_CHUNK_CHARS) flush();
  };
  const flush = () => {
    if (pendingText !== "") output.write(pendingText);
    pendingText = "";
  };

  let bytesRead = 0;
  let linesRead = 0;
  const counts = { rewrapped: 0, current: 0 };
  /** Lines handed to rewrapEnvelopes, kept until written: a failed one is copied as it was. */
  const originals = new Map<number, string>();
  const failures: { line: number; code: string; text: string }[] = [];
  const failed = (index: number, error: unknown, line: string) => {
    failures.push({ line: index + 1, code: isKmsError(error) ? error.code : "KMS_PROVIDER_ERROR", text: isKmsError(error) ? publicMessageOf(error) : "unexpected failure" });
    finish(index, line);
  };
  const bar = progressBar(() => ({ fraction: total === 0 ? 1 : bytesRead / total, label: `${linesRead} envelopes` }));

  try {
    // The current key versions, described once: the same test decides what is copied here and what
    // rewrapEnvelopes would skip.
    const current = new Set<string>();
    for (const report of await kms.describeKeys()) {
      if (report.description) current.add(`${report.provider}\0${report.keyId}\0${report.description.currentVersion}`);
    }
    const isCurrent = (key: EnvelopeKey) => current.has(`${key.providerId}\0${key.keyId}\0${key.keyVersion}`);

    async function* source(): AsyncIterable<StoredEnvelope> {
      const lines = createInterface({ input: createReadStream(inPath), crlfDelay: Infinity });
      for await (const raw of lines) {
        bytesRead += raw.length + 1;
        const index = linesRead++;
        const line = raw.trimEnd();
        let envelope: Buffer;
        try {
          envelope = fromBase64Url(line);
          const { providerId, keyId, keyVersion } = parseEnvelope(envelope).keySection;
          if (isCurrent({ tenantId, providerId, keyId, keyVersion })) {
            counts.current++;
            finish(index, line);
            continue;
          }
        } catch (error) {
          failed(index, error, line);
          continue;
        }
        originals.set(index, line);
        yield { id: String(index), tenantId, envelope, ...(context === undefined ? {} : { context }) };
        if (output.writableNeedDrain) await Promise.race([once(output, "drain"), outputFailed]);
      }
    }

    await rewrapEnvelopes({
      kms,
      source: source(),
      isCurrent,
      write: async (id, envelope) => {
        const index = Number(id);
        originals.delete(index);
        counts.rewrapped++;
        finish(index, toBase64Url(envelope));
      },
      onFailure: (id, error) => {
        const index = Number(id);
        const line = originals.get(index) ?? "";
        originals.delete(index);
        failed(index, error, line);
      },
    });
    flush();
    output.end();
    await Promise.race([once(output, "finish"), outputFailed]);
  } finally {
    bar.finish();
    output.destroy();
    await kms.close();
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  for (const f of failures.slice(0, MAX_LISTED_FAILURES)) err(`failed line ${f.line}: ${f.code}: ${f.text} (left as it was)`);
  if (failures.length > MAX_LISTED_FAILURES) err(`… and ${failures.length - MAX_LISTED_FAILURES} more failed lines`);
  const failedPart = failures.length === 0 ? "" : `, ${failures.length} failed`;
  out(`rewrapped ${counts.rewrapped} envelopes (${counts.current} already current${failedPart}) in ${seconds.toFixed(1)} s`);
  return failures.length === 0 ? EXIT.OK : EXIT.FAILED;
}

export const rewrapCommand: Command = {
  name: "rewrap",
  summary:
    "Re-wraps a file of envelopes under the tenant's current key version.\n" +
    "--in has one base64url envelope per line; --out gets them in the same order (payloads unchanged, current\n" +
    "ones copied). A progress bar on a terminal.",
  usage: "rewrap --tenant T --in FILE --out FILE [--context k=v]... [--config F]",
  flags: {
    tenant: { type: "string", value: "T", help: "the tenant the envelopes belong to (required)" },
    in: { type: "string", value: "FILE", help: "envelopes, one per line (required)" },
    out: { type: "string", value: "FILE", help: "where the re-wrapped envelopes go, same order (required; mode 0600)" },
    context: { type: "string", multiple: true, value: "k=v", help: "the envelopes' encryption context pair" },
    config: CONFIG_FLAG,
  },
  run: rewrap,
};
