/**
 * The embedded evidence store: one JSON Lines file, one record per line, each line `fsync`ed before
 * its append resolves. One writer per file, enforced by `<path>.lock` holding the writer's pid.
 */
import { createReadStream } from "node:fs";
import { type FileHandle, open, readFile, unlink } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { KmsError } from "@kms/core";
import type { EvidenceRecord } from "../types";
import type { EvidenceStore } from "./log";
import { canonicalJson, matchesFilter, type NormalizedFilter, parseRecord } from "./record";

/** Where the evidence log goes when nothing says otherwise and there is no local key store. */
export const DEFAULT_EVIDENCE_FILE = ".kms/evidence.jsonl";

/**
 * The evidence file an app uses when none is configured (the reference server and the `kms` CLI
 * share this rule): `evidence.jsonl` next to the local key store when the configuration has one
 * (`localKeyStore`, e.g. `providers.local.path`), else `DEFAULT_EVIDENCE_FILE`; relative paths
 * resolve against `baseDir`.
 */
export function defaultEvidenceFile(localKeyStore: string | undefined, baseDir: string): string {
  return localKeyStore !== undefined ? join(dirname(resolve(baseDir, localKeyStore)), "evidence.jsonl") : resolve(baseDir, DEFAULT_EVIDENCE_FILE);
}

export interface FileEvidenceStoreOptions {
  /** The log file; created with mode 0600 if missing. Its directory must exist. */
  readonly path: string;
}

/** What opening found at the end of the file, when it was not a whole record. */
export interface FileRecovery {
  /** Bytes of an unfinished last line (a write cut short by a crash) removed from the end. */
  readonly truncatedBytes: number;
}

export interface FileEvidenceStore extends EvidenceStore {
  /** Set when opening removed an unfinished last line; undefined when the file ended cleanly. */
  readonly recovery: FileRecovery | undefined;
}

/**
 * Opens (or creates) the file, takes the writer lock, and repairs a torn end: a last line without
 * its newline was never acknowledged (an append resolves only after the newline is on disk), so it
 * is cut off and reported in `recovery`. A complete record is never removed.
 */
export async function openFileEvidenceStore(options: FileEvidenceStoreOptions): Promise<FileEvidenceStore> {
  const { path } = options;
  const lockPath = `${path}.lock`;
  await takeWriterLock(lockPath);
  let handle: FileHandle | undefined;
  try {
    handle = await open(path, "a+", 0o600);
    await handle.chmod(0o600);
    const { size } = await handle.stat();
    const end = await findCleanEnd(handle, size);
    if (end < size) {
      await handle.truncate(end);
      await handle.sync();
    }
    await syncDirectory(dirname(path));
    const head = await lastRecord(handle, end);
    return new FileStore(path, lockPath, handle, end, head, end < size ? { truncatedBytes: size - end } : undefined);
  } catch (error) {
    await handle?.close();
    await unlink(lockPath).catch(() => undefined);
    throw error;
  }
}

class FileStore implements FileEvidenceStore {
  #broken = false;
  #closed = false;

  constructor(
    private readonly path: string,
    private readonly lockPath: string,
    private readonly handle: FileHandle,
    /** Bytes that hold acknowledged records; readers stop here, so they never see a line being written. */
    private committed: number,
    private head: EvidenceRecord | undefined,
    readonly recovery: FileRecovery | undefined,
  ) {}

  async append(next: (head: EvidenceRecord | undefined) => EvidenceRecord): Promise<EvidenceRecord> {
    if (this.#closed) throw new KmsError("KMS_CLOSED", "The evidence file store is closed");
    if (this.#broken) throw new KmsError("KMS_UNAVAILABLE", "The evidence file store failed a write; reopen it");
    const record = next(this.head);
    const line = Buffer.from(`${canonicalJson(record)}\n`, "utf8");
    try {
      await this.handle.write(line, 0, line.length, null);
      await this.handle.sync();
    } catch (cause) {
      // Undo a partial write so the next append starts on a clean line; if that fails too, stop.
      await this.handle.truncate(this.committed).catch(() => {
        this.#broken = true;
      });
      throw new KmsError("KMS_UNAVAILABLE", "Could not write the evidence file", { cause });
    }
    this.committed += line.length;
    this.head = record;
    return record;
  }

  async *records(filter: NormalizedFilter): AsyncIterable<EvidenceRecord> {
    if (this.committed === 0) return;
    const lines = createInterface({ input: createReadStream(this.path, { start: 0, end: this.committed - 1 }), crlfDelay: Infinity });
    let number = 0;
    for await (const line of lines) {
      number++;
      const record = decodeLine(line, number);
      if (matchesFilter(record, filter)) yield record;
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.handle.close();
    await unlink(this.lockPath).catch(() => undefined);
  }
}

/** Reads an evidence JSON Lines file (a copy, or a log not open for writing) without locking it. */
export async function* readEvidenceFile(path: string): AsyncIterable<unknown> {
  const lines = createInterface({ input: createReadStream(path), crlfDelay: Infinity });
  for await (const line of lines) yield parseJsonOrNull(line);
}

function parseJsonOrNull(line: string): unknown {
  try {
    return JSON.parse(line) as unknown;
  } catch {
    return null;
  }
}

function decodeLine(line: string, number: number): EvidenceRecord {
  try {
    return parseRecord(JSON.parse(line));
  } catch (cause) {
    // The cause names the bad field (never its value); JSON.parse errors may quote the line, so are dropped.
    throw new KmsError("INPUT_INVALID", `Evidence file ${Number.isNaN(number) ? "last line" : `line ${number}`} is not a valid record`, {
      ...(cause instanceof KmsError ? { cause } : {}),
    });
  }
}

/** The offset just after the last newline: where acknowledged records end. */
async function findCleanEnd(handle: FileHandle, size: number): Promise<number> {
  const chunk = Buffer.alloc(64 * 1024);
  let end = size;
  while (end > 0) {
    const start = Math.max(0, end - chunk.length);
    const { bytesRead } = await handle.read(chunk, 0, end - start, start);
    const newline = chunk.subarray(0, bytesRead).lastIndexOf(0x0a);
    if (newline >= 0) return start + newline + 1;
    end = start;
  }
  return 0;
}

/** The last line before `end` (which follows a newline), decoded. */
async function lastRecord(handle: FileHandle, end: number): Promise<EvidenceRecord | undefined> {
  if (end === 0) return undefined;
  const lineStart = await findCleanEnd(handle, end - 1);
  const buffer = Buffer.alloc(end - 1 - lineStart);
  await handle.read(buffer, 0, buffer.length, lineStart);
  return decodeLine(buffer.toString("utf8"), Number.NaN);
}

/** Makes a newly created file's directory entry durable too. */
async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Creates `lockPath` exclusively with this process's pid. A lock whose pid is no longer running
 * (a writer that was killed) is stale and taken over; a live one is refused.
 */
async function takeWriterLock(lockPath: string): Promise<void> {
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const handle = await open(lockPath, "wx", 0o600);
      await handle.writeFile(String(process.pid));
      await handle.close();
      return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      const content = await readFile(lockPath, "utf8").catch(() => undefined);
      if (content === undefined) continue; // removed meanwhile: try to create it again
      const pid = Number(content.trim());
      if (Number.isSafeInteger(pid) && pid > 0 && isRunning(pid)) break;
      // Taking over a dead writer's lock is not atomic: two processes starting at that very moment
      // could both succeed. The single-writer rule (one process writes one file) is the guarantee.
      await unlink(lockPath).catch(() => undefined);
    }
  }
  throw new KmsError("KMS_CONFIG_INVALID", "The evidence file is already open for writing by another process or log");
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
