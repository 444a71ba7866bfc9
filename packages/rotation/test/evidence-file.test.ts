import { type ChildProcess, spawn } from "node:child_process";
import { appendFileSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "@jest/globals";
import { KmsError, ManualClock } from "@kms/core";
import { createEvidenceLog, openFileEvidenceStore, readEvidenceFile, verifyEvidence } from "../src/evidence";
import type { EvidenceRecord } from "../src/types";
import { eventNumber, fill, HMAC_KEY, START } from "./evidence-helpers";

let dir: string;
let path: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "kms-evidence-"));
  path = join(dir, "evidence.jsonl");
});
/** The crash test's child, killed after the test if it is still running (a failed test). */
let runningChild: ChildProcess | undefined;
afterEach(() => {
  if (runningChild?.exitCode === null && runningChild.signalCode === null) runningChild.kill("SIGKILL");
  runningChild = undefined;
  rmSync(dir, { recursive: true, force: true });
});

async function openLog() {
  const clock = new ManualClock(START);
  const store = await openFileEvidenceStore({ path });
  return { store, clock, log: createEvidenceLog({ store, hmacKey: HMAC_KEY, clock }) };
}

async function all(source: AsyncIterable<EvidenceRecord>): Promise<EvidenceRecord[]> {
  const out: EvidenceRecord[] = [];
  for await (const record of source) out.push(record);
  return out;
}

const lines = () => readFileSync(path, "utf8").split("\n").slice(0, -1);
const writeLines = (text: string[]) => writeFileSync(path, `${text.join("\n")}\n`);

describe("openFileEvidenceStore", () => {
  it("writes one canonical JSON line per record, mode 0600, and continues the chain after reopening", async () => {
    const first = await openLog();
    const written = await fill(first.log, 5, first.clock);
    await first.log.close();
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(lines()).toHaveLength(5);
    expect(JSON.parse(lines()[0]!)).toEqual(written[0]);
    expect(existsSync(`${path}.lock`)).toBe(false);

    const second = await openLog();
    expect(second.store.recovery).toBeUndefined();
    const next = await second.log.append({ type: "config.loaded", actor: "cli", outcome: "success" });
    expect(next).toMatchObject({ seq: 6, prevHash: written[4]!.hash });
    expect((await all(second.log.records({ tenantId: "tenant-b" }))).map((r) => r.seq)).toEqual([1, 3, 5]);
    expect(await verifyEvidence(second.log.records(), { hmacKey: HMAC_KEY })).toEqual({ ok: true, count: 6, lastHash: next.hash });
    await second.log.close();
  });

  it("allows one writer per file: a second open is refused while the first is open", async () => {
    const { log } = await openLog();
    let code: string | undefined;
    await openFileEvidenceStore({ path }).catch((error: KmsError) => (code = error.code));
    expect(code).toBe("KMS_CONFIG_INVALID");
    await log.close();
    await (await openFileEvidenceStore({ path })).close();
  });

  it("cuts an unfinished last line on open and reports it; complete records are kept", async () => {
    const { log, clock } = await openLog();
    const written = await fill(log, 3, clock);
    await log.close();
    const partial = '{"actor":"scheduler@test","details":{"envel';
    appendFileSync(path, partial);

    const reopened = await openLog();
    expect(reopened.store.recovery).toEqual({ truncatedBytes: Buffer.byteLength(partial) });
    expect(await all(reopened.log.records())).toEqual(written);
    expect((await reopened.log.append(eventNumber(4))).seq).toBe(4);
    expect(await verifyEvidence(reopened.log.records(), { hmacKey: HMAC_KEY })).toMatchObject({ ok: true, count: 4 });
    await reopened.log.close();
  });

  it("reads a large log as a stream, in order", async () => {
    const { log } = await openLog();
    await Promise.all(Array.from({ length: 500 }, (_, i) => log.append({ type: "rewrap.completed", actor: "t", outcome: "success", details: { i } })));
    let expected = 1;
    for await (const record of log.records()) expect(record.seq).toBe(expected++);
    expect(expected).toBe(501);
    await log.close();
  });

  it("verify names the first bad line of a tampered file: changed, deleted, inserted, reordered", async () => {
    const { log, clock } = await openLog();
    await fill(log, 8, clock);
    await log.close();
    const original = lines();
    const cases: [string, string[], { seq: number; position: number; reason: string }][] = [
      ["changed", original.with(3, original[3]!.replace('"keyVersion":"4"', '"keyVersion":"5"')), { seq: 4, position: 4, reason: "hash" }],
      ["deleted", original.toSpliced(2, 1), { seq: 4, position: 3, reason: "seq" }],
      ["inserted", original.toSpliced(5, 0, original[1]!), { seq: 2, position: 6, reason: "seq" }],
      ["reordered", original.with(0, original[1]!).with(1, original[0]!), { seq: 2, position: 1, reason: "seq" }],
      ["unparseable", original.with(6, "{not json"), { seq: 7, position: 7, reason: "malformed" }],
    ];
    for (const [name, tampered, firstBad] of cases) {
      writeLines(tampered);
      expect({ name, result: (await verifyEvidence(readEvidenceFile(path), { hmacKey: HMAC_KEY })).firstBad }).toEqual({ name, result: firstBad });
    }
    writeLines(original);
    expect(await verifyEvidence(readEvidenceFile(path), { hmacKey: HMAC_KEY })).toMatchObject({ ok: true, count: 8 });
  });

  it("loses no acknowledged record when the writer is killed with SIGKILL mid-stream", async () => {
    const child = spawn(process.execPath, [join(__dirname, "evidence-writer.cjs"), path], { stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")));
    const acked: number[] = [];
    let buffered = "";
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on("exit", (_code, signal) => resolve(signal)));
    runningChild = child;
    await new Promise<void>((resolve) => {
      child.stdout.on("data", (chunk: Buffer) => {
        buffered += chunk.toString("utf8");
        const parts = buffered.split("\n");
        buffered = parts.pop()!;
        acked.push(...parts.map(Number));
        if (acked.length >= 150 && !child.killed) {
          child.kill("SIGKILL");
          resolve();
        }
      });
      child.on("exit", () => resolve());
    });
    expect(await exited).toBe("SIGKILL");
    expect(stderr).toBe("");
    expect(acked.slice(0, 150)).toEqual(Array.from({ length: 150 }, (_, i) => i + 1));

    expect(readFileSync(`${path}.lock`, "utf8")).toBe(String(child.pid)); // left behind by the killed writer
    const store = await openFileEvidenceStore({ path }); // taken over: its pid is no longer running
    const log = createEvidenceLog({ store });
    const seqs = (await all(log.records())).map((r) => r.seq);
    expect(seqs.length).toBeGreaterThanOrEqual(acked.length);
    expect(seqs.slice(0, acked.length)).toEqual(acked);
    expect(await verifyEvidence(log.records())).toMatchObject({ ok: true, count: seqs.length });
    await log.close();
  });
});
