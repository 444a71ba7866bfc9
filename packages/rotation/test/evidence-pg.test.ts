import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "@jest/globals";
import { KmsError, ManualClock } from "@kms/core";
import { Pool } from "pg";
import { createEvidenceLog, pgEvidenceStore, verifyEvidence } from "../src/evidence";
import type { EvidenceRecord } from "../src/types";
import { eventNumber, fill, HMAC_KEY, START } from "./evidence-helpers";

const DATABASE_URL = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const table = `evidence_test_${randomBytes(6).toString("hex")}`;
let pool: Pool;
let other: Pool; // a second pool: another process's connections, as far as the server can tell

beforeAll(async () => {
  pool = new Pool({ connectionString: DATABASE_URL, max: 4 });
  other = new Pool({ connectionString: DATABASE_URL, max: 4 });
  await pgEvidenceStore({ pool, table }).migrate();
});

afterAll(async () => {
  await pool.query(`DROP TABLE IF EXISTS "${table}"`);
  await pool.query(`DROP FUNCTION IF EXISTS "${table}_append_only"()`);
  await Promise.all([pool.end(), other.end()]);
});

async function all(source: AsyncIterable<EvidenceRecord>): Promise<EvidenceRecord[]> {
  const out: EvidenceRecord[] = [];
  for await (const record of source) out.push(record);
  return out;
}

/** The PostgreSQL error code (SQLSTATE) a statement fails with. */
async function sqlStateOf(sql: string): Promise<string | undefined> {
  try {
    await pool.query(sql);
  } catch (error) {
    return (error as { code?: string }).code;
  }
  return undefined;
}


describe("pgEvidenceStore", () => {
  it("refuses a table name that is not a plain identifier", () => {
    for (const bad of ['x"; DROP TABLE y; --', "Evidence", "1abc", "a".repeat(41), ""]) {
      let code: string | undefined;
      try {
        pgEvidenceStore({ pool, table: bad });
      } catch (error) {
        code = (error as KmsError).code;
      }
      expect(code).toBe("KMS_CONFIG_INVALID");
    }
  });

  it("appends, reads filtered, and keeps one linear chain with two pools appending concurrently", async () => {
    const clock = new ManualClock(START);
    const a = createEvidenceLog({ store: pgEvidenceStore({ pool, table, pageSize: 7 }), hmacKey: HMAC_KEY, clock });
    const b = createEvidenceLog({ store: pgEvidenceStore({ pool: other, table }), hmacKey: HMAC_KEY, clock });
    await pgEvidenceStore({ pool: other, table }).migrate(); // idempotent
    await fill(a, 4, clock);
    const appended = await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 ? a : b).append(eventNumber(i + 5))));
    expect(appended.map((r) => r.seq).sort((x, y) => x - y)).toEqual(Array.from({ length: 40 }, (_, i) => i + 5));
    const records = await all(a.records());
    expect(records.map((r) => r.seq)).toEqual(Array.from({ length: 44 }, (_, i) => i + 1));
    expect(await verifyEvidence(b.records(), { hmacKey: HMAC_KEY })).toEqual({ ok: true, count: 44, lastHash: records[43]!.hash });
    expect((await all(a.records({ tenantId: "tenant-b", until: new Date(START + 3 * 60_000) }))).map((r) => r.seq)).toEqual([1, 3]);
    // Every event once; the two logs interleave in whatever order the table lock grants.
    expect(records.map((r) => Number(r.keyVersion)).sort((x, y) => x - y)).toEqual(Array.from({ length: 44 }, (_, i) => i + 1));
    const created = records.filter((r) => r.type === "key.created" && r.keyId === "key-0").map((r) => r.seq);
    expect(created).toHaveLength(11);
    expect((await all(a.records({ types: ["key.created"], keyId: "key-0" }))).map((r) => r.seq)).toEqual(created);
  });

  it("the database refuses UPDATE, DELETE and TRUNCATE", async () => {
    const before = await pool.query(`SELECT count(*)::int AS n FROM "${table}"`);
    expect(before.rows[0].n).toBeGreaterThan(0);
    expect(await sqlStateOf(`UPDATE "${table}" SET type = 'key.disabled' WHERE seq = 1`)).toBe("42501");
    expect(await sqlStateOf(`DELETE FROM "${table}" WHERE seq = 2`)).toBe("42501");
    expect(await sqlStateOf(`DELETE FROM "${table}"`)).toBe("42501");
    expect(await sqlStateOf(`TRUNCATE "${table}"`)).toBe("42501");
    const after = await pool.query(`SELECT count(*)::int AS n FROM "${table}"`);
    expect(after.rows[0].n).toBe(before.rows[0].n);
  });

  it("verify names the first bad row after a superuser bypasses the trigger: changed, deleted, inserted, reordered", async () => {
    const t = `"${table}"`;
    const cases: [string, string[], { seq: number; position: number; reason: string }][] = [
      ["changed", [`UPDATE ${t} SET record = replace(record, '"outcome":"success"', '"outcome":"failure"') WHERE seq = 17`], { seq: 17, position: 17, reason: "hash" }],
      ["deleted", [`DELETE FROM ${t} WHERE seq = 30`], { seq: 31, position: 30, reason: "seq" }],
      ["inserted", [`INSERT INTO ${t} SELECT 45, time, type, tenant_id, record FROM ${t} WHERE seq = 9`], { seq: 9, position: 45, reason: "seq" }],
      [
        "reordered",
        [`UPDATE ${t} SET seq = seq + 1000 WHERE seq IN (5, 6)`, `UPDATE ${t} SET seq = CASE seq WHEN 1005 THEN 6 ELSE 5 END WHERE seq > 1000`],
        { seq: 6, position: 5, reason: "seq" },
      ],
    ];
    for (const [name, tamper, firstBad] of cases) {
      // Each case runs in a transaction rolled back afterwards, so the next starts from the intact table.
      const client = await pool.connect();
      try {
        await client.query("BEGIN");
        await client.query(`ALTER TABLE ${t} DISABLE TRIGGER ALL`);
        for (const sql of tamper) await client.query(sql);
        const log = createEvidenceLog({ store: pgEvidenceStore({ pool: client as unknown as Pool, table }) });
        const result = await verifyEvidence(log.records(), { hmacKey: HMAC_KEY });
        expect({ name, firstBad: result.firstBad }).toEqual({ name, firstBad });
      } finally {
        await client.query("ROLLBACK");
        client.release();
      }
    }
    expect(await verifyEvidence(createEvidenceLog({ store: pgEvidenceStore({ pool, table }) }).records(), { hmacKey: HMAC_KEY })).toMatchObject({ ok: true, count: 44 });
  });
});
