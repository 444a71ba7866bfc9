/**
 * The PostgreSQL evidence store: an append-only table, with triggers that make the database itself
 * refuse UPDATE, DELETE and TRUNCATE. Appends from any number of processes are serialized by an
 * EXCLUSIVE table lock held for the insert's transaction (readers are not blocked).
 * Takes the application's `pg` pool or client; never imports `pg` itself.
 */
import { KmsError } from "@kms/core";
import type { EvidenceRecord } from "../types";
import type { EvidenceStore } from "./log";
import { canonicalJson, matchesFilter, type NormalizedFilter, parseRecord } from "./record";

/** The part of `pg.Pool` / `pg.Client` this store uses. */
export interface PgQueryable {
  query(text: string, values?: unknown[]): Promise<{ rows: Record<string, unknown>[] }>;
}
/** A `pg.Pool` (a client per transaction) or a single `pg.Client` (used as is). */
export type PgPoolOrClient = PgQueryable & { connect?: () => Promise<PgQueryable & { release(): void }> };

export interface PgEvidenceStoreOptions {
  readonly pool: PgPoolOrClient;
  /** Lower-case identifier, at most 40 characters (`[a-z_][a-z0-9_]*`); the trigger function is `<table>_append_only`. */
  readonly table: string;
  /** Rows fetched per query when reading (default 1000). */
  readonly pageSize?: number;
}

export interface PgEvidenceStore extends EvidenceStore {
  /** Creates the table, its indexes and the append-only triggers if missing. Idempotent, safe concurrently. */
  migrate(): Promise<void>;
}

const TABLE_NAME = /^[a-z_][a-z0-9_]{0,39}$/;

export function pgEvidenceStore(options: PgEvidenceStoreOptions): PgEvidenceStore {
  const { pool, table } = options;
  if (typeof table !== "string" || !TABLE_NAME.test(table)) {
    throw new KmsError("KMS_CONFIG_INVALID", "Evidence table name must match [a-z_][a-z0-9_]* and be at most 40 characters");
  }
  const pageSize = options.pageSize ?? 1000;
  if (!Number.isSafeInteger(pageSize) || pageSize < 1) throw new KmsError("KMS_CONFIG_INVALID", "Evidence pageSize must be a positive integer");
  const t = `"${table}"`;
  const fn = `"${table}_append_only"`;

  /** Runs `work` in one transaction on one connection. */
  async function transaction<T>(work: (client: PgQueryable) => Promise<T>): Promise<T> {
    const client = pool.connect ? await pool.connect() : pool;
    try {
      await client.query("BEGIN");
      const result = await work(client);
      await client.query("COMMIT");
      return result;
    } catch (error) {
      await client.query("ROLLBACK").catch(() => undefined);
      throw error;
    } finally {
      if ("release" in client && typeof client.release === "function") client.release();
    }
  }

  return {
    async migrate(): Promise<void> {
      await transaction(async (client) => {
        // Concurrent migrations of one table would race on the catalog: one at a time.
        await client.query("SELECT pg_advisory_xact_lock(hashtext($1))", [`kms-evidence:${table}`]);
        await client.query(`CREATE TABLE IF NOT EXISTS ${t} (
          seq bigint PRIMARY KEY CHECK (seq > 0),
          time timestamptz NOT NULL,
          type text NOT NULL,
          tenant_id text,
          record text NOT NULL
        )`);
        await client.query(`CREATE INDEX IF NOT EXISTS "${table}_tenant_seq" ON ${t} (tenant_id, seq)`);
        await client.query(`CREATE INDEX IF NOT EXISTS "${table}_time" ON ${t} (time)`);
        await client.query(`CREATE OR REPLACE FUNCTION ${fn}() RETURNS trigger LANGUAGE plpgsql AS $$
          BEGIN
            RAISE EXCEPTION 'evidence table % is append-only: % refused', TG_TABLE_NAME, TG_OP USING ERRCODE = 'insufficient_privilege';
          END $$`);
        await client.query(`CREATE OR REPLACE TRIGGER "${table}_no_change" BEFORE UPDATE OR DELETE ON ${t} FOR EACH ROW EXECUTE FUNCTION ${fn}()`);
        await client.query(`CREATE OR REPLACE TRIGGER "${table}_no_truncate" BEFORE TRUNCATE ON ${t} FOR EACH STATEMENT EXECUTE FUNCTION ${fn}()`);
      });
    },

    append(next: (head: EvidenceRecord | undefined) => EvidenceRecord): Promise<EvidenceRecord> {
      return transaction(async (client) => {
        // EXCLUSIVE blocks other writers until commit, not readers: the head read here stays the head.
        await client.query(`LOCK TABLE ${t} IN EXCLUSIVE MODE`);
        const { rows } = await client.query(`SELECT record FROM ${t} ORDER BY seq DESC LIMIT 1`);
        const record = next(rows[0] === undefined ? undefined : decodeRow(rows[0]));
        await client.query(`INSERT INTO ${t} (seq, time, type, tenant_id, record) VALUES ($1, $2, $3, $4, $5)`, [
          record.seq,
          record.time,
          record.type,
          record.tenantId ?? null,
          canonicalJson(record),
        ]);
        return record;
      });
    },

    async *records(filter: NormalizedFilter): AsyncIterable<EvidenceRecord> {
      // Keyset pages: memory stays at one page whatever the table's size. SQL narrows by the indexed
      // columns; matchesFilter decides.
      const where: string[] = ["seq > $1"];
      const values: unknown[] = [0];
      if (filter.tenantId !== undefined) where.push(`tenant_id = $${values.push(filter.tenantId)}`);
      if (filter.sinceMs !== undefined) where.push(`time >= $${values.push(new Date(filter.sinceMs).toISOString())}`);
      if (filter.untilMs !== undefined) where.push(`time < $${values.push(new Date(filter.untilMs).toISOString())}`);
      const sql = `SELECT seq, record FROM ${t} WHERE ${where.join(" AND ")} ORDER BY seq LIMIT ${pageSize}`;
      for (;;) {
        const { rows } = await pool.query(sql, values);
        for (const row of rows) {
          values[0] = row.seq;
          const record = decodeRow(row);
          if (matchesFilter(record, filter)) yield record;
        }
        if (rows.length < pageSize) return;
      }
    },

    async close(): Promise<void> {
      // The pool belongs to the application, which ends it.
    },
  };
}

function decodeRow(row: Record<string, unknown>): EvidenceRecord {
  try {
    return parseRecord(JSON.parse(String(row.record)));
  } catch (cause) {
    throw new KmsError("INPUT_INVALID", "An evidence table row is not a valid record", { ...(cause instanceof KmsError ? { cause } : {}) });
  }
}
