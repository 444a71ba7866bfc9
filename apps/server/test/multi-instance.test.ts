/**
 * Several BUILT servers (`node apps/server/dist/main.js`, as in server.test.ts and scale.test.ts) as
 * one deployment: their rotation leases in a shared store (KMS_ROTATION_LOCKS_URL: the real Redis at
 * REDIS_URL, default redis://127.0.0.1:6379, then the real PostgreSQL at DATABASE_URL) and one
 * evidence log in PostgreSQL (KMS_EVIDENCE_DATABASE_URL, DATABASE_URL, default
 * postgres://postgres@127.0.0.1:5432/test). Each variant works in a schema of its own (the URL's
 * `options=-c search_path=…`), dropped afterwards with everything in it; the Redis variant's lock
 * keys name this run's keys only, and are deleted afterwards.
 *
 * Two KMS emulators, both in every server's configuration:
 * - tenant-a's key is in the **Vault** emulator, created 100 days ago (the emulator's clock), so it
 *   is overdue under the 90-day cryptoperiod and every instance's scheduler wants to rotate it at
 *   start-up. Vault reports when the current version was made: after one rotation the key is
 *   current for every instance, and "exactly one rotation in total" is the property of the shared
 *   lease and evidence alone.
 * - tenant-b's key is in the **AWS KMS** emulator, new (never due): the on-demand race. The emulator
 *   holds RotateKeyOnDemand until the test lets it go, so whichever instance wins the lease holds it
 *   while the other asks: no timing decides the outcome.
 *
 * Each instance authenticates to Vault with a token of its own, so the emulator's log tells the
 * instances apart (`identity`).
 */
import { afterAll, beforeAll, describe, expect, it } from "@jest/globals";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { createClient } from "@keyv/redis";
import { verifyEvidence, verifyExport, type EvidenceManifest, type EvidenceRecord } from "@kms/rotation";
import {
  type AwsKmsRoute,
  AwsKmsEmulator,
  type EmulatorRequest,
  type EmulatorResponse,
  VaultEmulator,
} from "@kms/testkit/emulators";
import { Pool } from "pg";
import { closedPort } from "./support/closed-port";
import { exited, ServerHarness, type ServerProcess, stop } from "./support/server-process";

const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const DATABASE_URL = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";
/** In every name this run makes (Redis keys, schemas, KMS keys): nothing else uses them. */
const RUN = `${process.pid}-${Date.now()}`;
const INSTANCES = 2;
const TOKENS = { "tenant-a": "multi-token-a-0123456789", "tenant-b": "multi-token-b-0123456789" };
const ADMIN_TOKEN = "multi-admin-token-0123456789";
/** The redisLocks default prefix (the server does not change it). */
const LOCK_PREFIX = "kms:rotation:lock:";
const DAY_MS = 86_400_000;

/** Who reached a held rotation, and how long the emulator's request log was then. */
interface Arrival {
  identity: string | undefined;
  logLength: number;
}

/**
 * Holds an emulator's rotation requests until the test releases them, so that whoever reached the
 * KMS first keeps the key's lease while the others try: no timing decides who wins.
 */
class RotationGate {
  #held: { arrivals: Arrival[]; arrive: Array<(arrival: Arrival) => void>; opened: Promise<void>; open: () => void } | undefined;

  /** From now on rotation requests wait for `release()`; `arrived(n)` settles when the n-th (1 or 2) arrives. */
  hold(): { arrived: (n: 1 | 2) => Promise<Arrival>; arrivals: () => number; release: () => void } {
    const arrive: Array<(arrival: Arrival) => void> = [];
    const arrived = [1, 2].map(() => new Promise<Arrival>((r) => arrive.push(r)));
    let open!: () => void;
    const held = { arrivals: [] as Arrival[], arrive, opened: new Promise<void>((r) => (open = r)), open };
    this.#held = held;
    return {
      arrived: (n) => arrived[n - 1]!,
      arrivals: () => held.arrivals.length,
      release: () => {
        if (this.#held === held) this.#held = undefined;
        held.open();
      },
    };
  }

  /** Answers at once, or once released. The framework awaits a protocol's `handle`, hence the cast. */
  pass(arrival: Arrival, answer: () => EmulatorResponse): EmulatorResponse {
    const held = this.#held;
    if (held === undefined) return answer();
    held.arrive[held.arrivals.length]?.(arrival);
    held.arrivals.push(arrival);
    return held.opened.then(answer) as unknown as EmulatorResponse;
  }
}

/** The AWS KMS emulator with RotateKeyOnDemand behind a gate. */
class GatedAwsEmulator extends AwsKmsEmulator {
  readonly gate = new RotationGate();

  protected override handle(req: EmulatorRequest, routed: AwsKmsRoute, identity?: string): EmulatorResponse {
    if (routed.operation !== "RotateKeyOnDemand") return super.handle(req, routed);
    return this.gate.pass({ identity, logLength: this.requests.length }, () => super.handle(req, routed));
  }
}

/** The Vault emulator with `keys.rotate` behind a gate. */
class GatedVaultEmulator extends VaultEmulator {
  readonly gate = new RotationGate();

  // (Its route type is not exported: the parameters are taken from the method itself.)
  protected override handle(...[req, routed, identity]: [...Parameters<VaultEmulator["handle"]>, string?]): EmulatorResponse {
    if (routed.operation !== "keys.rotate") return super.handle(req, routed);
    return this.gate.pass({ identity, logLength: this.requests.length }, () => super.handle(req, routed));
  }
}

interface Res {
  status: number;
  body: Record<string, unknown>;
}

const harness = new ServerHarness("kms-multi-instance-test-");
let tmp: string;
const pg = new Pool({ connectionString: DATABASE_URL, max: 2 });
const redis = createClient({ url: REDIS_URL });

async function call(server: ServerProcess, method: string, path: string): Promise<Res> {
  const res = await fetch(server.url + path, { method, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  const text = await res.text();
  return { status: res.status, body: text === "" ? {} : (JSON.parse(text) as Record<string, unknown>) };
}

/** Polls `probe` until it returns a value (no fixed sleeps); fails naming `what` after 30 s. */
async function until<T>(what: string, probe: () => Promise<T | undefined> | T | undefined): Promise<T> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** `base` with `options=-c search_path=<schema>`: every table the servers make goes there. */
function inSchema(base: string, schema: string): string {
  const url = new URL(base);
  url.searchParams.set("options", `-c search_path=${schema}`);
  return url.href;
}

beforeAll(async () => {
  tmp = harness.setUp();
  await redis.connect();
});

afterAll(async () => {
  await harness.tearDown();
  if (redis.isOpen) {
    const names: string[] = [];
    for await (const batch of redis.scanIterator({ MATCH: `${LOCK_PREFIX}*${RUN}*`, COUNT: 1000 })) names.push(...batch);
    if (names.length > 0) await redis.del(names);
    redis.destroy();
  }
  await pg.end();
}, 30_000);

describe.each([
  ["Redis", "redis", (_schemaUrl: string) => REDIS_URL],
  ["PostgreSQL", "postgres", (schemaUrl: string) => schemaUrl],
])("%s leases and one PostgreSQL evidence log, two instances", (_name, kind, locksUrl) => {
  const schema = `kms_multi_${kind}_${RUN.replace(/-/g, "_")}`;
  const evidenceUrl = inSchema(DATABASE_URL, schema);
  const vaultKey = `multi-${kind}-${RUN}`;
  const awsAlias = `alias/multi-${kind}-${RUN}`;
  let clockOffsetMs = 100 * DAY_MS;
  const vault = new GatedVaultEmulator({
    now: () => new Date(Date.now() - clockOffsetMs),
    tokens: Object.fromEntries(Array.from({ length: INSTANCES }, (_, i) => [`vault-token-${i}-${RUN}`, { name: `instance-${i}`, paths: ["*"] }])),
  });
  const aws = new GatedAwsEmulator();
  let servers: ServerProcess[] = [];
  /** The Vault key's rotation, held from before the servers start until the first test lets it go. */
  let vaultRotation: ReturnType<RotationGate["hold"]>;

  /** This variant's evidence, straight from its table, in seq order. */
  async function evidenceRows(): Promise<EvidenceRecord[]> {
    const { rows } = await pg.query<{ record: string }>(`SELECT record FROM "${schema}".kms_evidence ORDER BY seq`);
    return rows.map((row) => JSON.parse(row.record) as EvidenceRecord);
  }

  beforeAll(async () => {
    await pg.query(`CREATE SCHEMA "${schema}"`);
    await Promise.all([vault.start(), aws.start()]);
    // Version 1 of tenant-a's key was made 100 days ago; from now on the emulator's clock is the real one.
    vault.createKey(vaultKey);
    clockOffsetMs = 0;
    aws.createKey({ alias: awsAlias });
    vaultRotation = vault.gate.hold();
    const { region, endpoint, credentials } = aws.clientConfig();
    const configFile = join(tmp, `kms-${kind}.json`);
    writeFileSync(
      configFile,
      JSON.stringify({
        providers: {
          vault: { endpoint: vault.url, auth: { tokenFromEnv: "KMS_TEST_VAULT_TOKEN" } },
          "aws-kms": { region, endpoint, credentials },
        },
        tenants: { defaultKey: { provider: "vault", keyId: vaultKey }, keys: { "tenant-b": { provider: "aws-kms", keyId: awsAlias } } },
      }),
    );
    servers = await Promise.all(
      Array.from({ length: INSTANCES }, (_, i) =>
        harness.start({
          KMS_CONFIG_FILE: configFile,
          KMS_TEST_VAULT_TOKEN: `vault-token-${i}-${RUN}`,
          KMS_TENANT_TOKENS: JSON.stringify(TOKENS),
          KMS_ADMIN_TOKEN: ADMIN_TOKEN,
          KMS_ROTATION_INTERVAL_MS: "1000",
          KMS_ROTATION_LOCKS_URL: locksUrl(evidenceUrl),
          KMS_EVIDENCE_DATABASE_URL: evidenceUrl,
        }),
      ),
    );
  }, 60_000);

  afterAll(async () => {
    await Promise.all(servers.map((server) => stop(server)));
    vaultRotation?.release();
    await Promise.all([vault.stop(), aws.stop()]).catch(() => undefined);
    await pg.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  }, 30_000);

  it("the overdue key is rotated by one instance, and every instance then reads the same status", async () => {
    // Every instance's scheduler finds the key overdue at start-up. The first to reach the KMS holds
    // the key's lease while its rotation is held; the others must skip the key, pass after pass. Three
    // looks at the key by each of them after that arrival: at least two whole passes (the first may be
    // the start-up health check), each of which found the key due and its lease taken.
    const winner = await vaultRotation.arrived(1);
    const others = Array.from({ length: INSTANCES }, (_, i) => `instance-${i}`).filter((name) => name !== winner.identity);
    expect(others).toHaveLength(INSTANCES - 1);
    const looksAfter = (index: number, identity: string) =>
      vault.requests.slice(index).filter((r) => r.operation === "keys.read" && r.keyId === vaultKey && r.identity === identity).length;
    try {
      await Promise.race([
        until("three looks at the key by every other instance while the rotation is held", () =>
          others.every((name) => looksAfter(winner.logLength, name) >= 3) ? true : undefined,
        ),
        vaultRotation.arrived(2).then(() => {
          throw new Error("a second instance reached keys.rotate: the lease is not shared");
        }),
      ]);
    } finally {
      vaultRotation.release();
    }
    expect(vaultRotation.arrivals()).toBe(1);

    // Released: the rotation completes. Two more looks by every instance after it (at least one
    // whole pass each, which found the key current): a second rotation would have come from those.
    const rotatedAt = await until("the rotation", () => {
      const i = vault.requests.findIndex((r) => r.operation === "keys.rotate");
      return i < 0 ? undefined : i;
    });
    await until("a pass of each instance after the rotation", () =>
      [winner.identity!, ...others].every((name) => looksAfter(rotatedAt + 1, name) >= 2) ? true : undefined,
    );
    expect(vault.count("keys.rotate")).toBe(1);

    const statuses = await Promise.all(servers.map((server) => call(server, "GET", "/admin/tenants/tenant-a/rotation")));
    for (const status of statuses) expect(status.status).toBe(200);
    // As described now by each instance: the same but for the age (read at a slightly different time).
    const [first, ...rest] = statuses.map((s) => ({ ...s.body, ageMs: undefined }));
    expect(first).toMatchObject({ tenantId: "tenant-a", provider: "vault", keyId: vaultKey, currentVersion: "2", overdue: false, lastError: null });
    for (const other of rest) expect(other).toEqual(first);
  });

  it("on-demand rotation from both instances at once: one rotates, the other answers 409 ROTATION_IN_PROGRESS", async () => {
    const held = aws.gate.hold();
    const tagged = servers.map((server, i) => call(server, "POST", "/admin/tenants/tenant-b/rotate").then((res) => ({ i, res })));
    // The winner holds the lease while the KMS holds its rotation; the loser found the lease held.
    // (Were the lease not shared, both would reach the KMS and wait there: fail at once instead.)
    const bothReachedTheKms = held.arrived(2).then(() => {
      held.release();
      throw new Error("both instances reached RotateKeyOnDemand: the lease is not shared");
    });
    const loser = await Promise.race([...tagged, bothReachedTheKms]);
    await held.arrived(1);
    held.release();
    const winner = await tagged[1 - loser.i]!;
    expect(loser.res).toEqual({
      status: 409,
      body: {
        error: {
          code: "ROTATION_IN_PROGRESS",
          message: "The tenant's key is being rotated; retry later",
          retryable: true,
          docsUrl: expect.stringMatching(/#rotation_in_progress$/),
        },
      },
    });
    expect(winner.res.status).toBe(200);
    const [before, after] = aws.key(awsAlias).keyMaterialIds;
    expect(winner.res.body).toEqual({ tenantId: "tenant-b", provider: "aws-kms", keyId: awsAlias, previousVersion: before, currentVersion: after });
    expect(held.arrivals()).toBe(1);
  });

  it("an export from either instance holds the other's records and verifies", async () => {
    for (const server of servers) {
      const res = await call(server, "GET", "/admin/evidence/export");
      expect(res.status).toBe(200);
      const { content, manifest } = res.body as { content: string; manifest: EvidenceManifest };
      expect(await verifyExport(content, manifest)).toMatchObject({ ok: true });
      const types = content.trim().split("\n").map((line) => (JSON.parse(line) as EvidenceRecord).type);
      expect(types.filter((t) => t === "config.loaded")).toHaveLength(INSTANCES);
      expect(types.filter((t) => t === "key.rotated")).toHaveLength(2);
    }
  });

  it("after a graceful shutdown of both: one rotation per key in total, in one intact evidence chain", async () => {
    const codes = await Promise.all(servers.map((server) => stop(server)));
    expect(codes).toEqual(Array(INSTANCES).fill(0));
    for (const server of servers) {
      expect(server.output()).toContain('"msg":"stopped"');
      // The URLs (and so any password in them) never reach the log.
      expect(server.output()).not.toContain(evidenceUrl);
      expect(server.output()).not.toContain(locksUrl(evidenceUrl));
    }

    // The KMSs saw one rotation each.
    expect(vault.count("keys.rotate")).toBe(1);
    expect(aws.count("RotateKeyOnDemand")).toBe(1);
    expect(aws.key(awsAlias).keyMaterialIds).toHaveLength(2);

    const records = await evidenceRows();
    expect(await verifyEvidence(records)).toMatchObject({ ok: true, count: records.length });
    const summary = records.map((r) => [r.type, r.keyId ?? null, r.outcome]);
    // Both start records (in either order), then the scheduler's rotation and the on-demand one.
    expect(summary.filter(([type]) => type === "config.loaded")).toEqual(Array(INSTANCES).fill(["config.loaded", null, "success"]));
    expect(summary.filter(([type]) => type !== "config.loaded")).toEqual([
      ["key.rotation-started", vaultKey, "success"],
      ["key.rotated", vaultKey, "success"],
      ["key.rotation-started", awsAlias, "success"],
      ["key.rotated", awsAlias, "success"],
    ]);
    for (const record of records.filter((r) => r.type === "config.loaded")) {
      expect(record.details).toMatchObject({ evidenceStore: "postgres", rotationLocks: kind });
    }
    const rotated = records.filter((r) => r.type === "key.rotated");
    expect(rotated[0]).toMatchObject({ tenantId: "tenant-a", provider: "vault", previousVersion: "1", keyVersion: "2", actor: expect.stringMatching(/^scheduler@/) });
    expect(rotated[1]).toMatchObject({ tenantId: "tenant-b", provider: "aws-kms", actor: "admin-api", details: expect.objectContaining({ onDemand: true }) });
  }, 30_000);
});

describe("one instance: the shared stores at start-up and shutdown", () => {
  const password = "multi-secret-Pa55word";

  it("bad URLs: exit 1 naming each variable, never the URL's password or host", async () => {
    const { code, output } = await harness.runToExit({
      KMS_ROTATION_LOCKS_URL: `mysql://kms:${password}@db.internal/kms`,
      KMS_EVIDENCE_DATABASE_URL: `kms:${password}@db.internal/kms`,
    });
    expect(code).toBe(1);
    expect(output).toContain(
      'KMS_EVIDENCE_DATABASE_URL: must be a postgres:// or postgresql:// URL (the value is not repeated: it may hold a password)',
    );
    expect(output).toContain('KMS_ROTATION_LOCKS_URL: must be a redis://, rediss://, postgres:// or postgresql:// URL, got "mysql://…"');
    expect(output).not.toContain(password);
    expect(output).not.toContain("db.internal");
  });

  it("the evidence database unreachable: exit 1 naming the variable, without the password", async () => {
    const port = await closedPort();
    const { code, output } = await harness.runToExit({
      KMS_LOCAL_KEY_STORE: join(tmp, "unreachable-db", "keys.json"),
      KMS_EVIDENCE_DATABASE_URL: `postgres://kms:${password}@127.0.0.1:${port}/kms`,
    });
    expect(code).toBe(1);
    expect(output).toContain(`kms-server: failed to start: KMS_EVIDENCE_DATABASE_URL: cannot open the evidence log in PostgreSQL: connect ECONNREFUSED 127.0.0.1:${port}`);
    expect(output).not.toContain(password);
  });

  it("the lock store unreachable: a warning, the server serves, on-demand rotation fails, and it stops cleanly", async () => {
    const port = await closedPort();
    const server = await harness.start({
      KMS_LOCAL_KEY_STORE: join(tmp, "unreachable-locks", "keys.json"),
      KMS_TENANT_TOKENS: JSON.stringify(TOKENS),
      KMS_ADMIN_TOKEN: ADMIN_TOKEN,
      KMS_ROTATION_LOCKS_URL: `redis://kms:${password}@127.0.0.1:${port}`,
    });
    try {
      expect(server.output()).toContain("KMS_ROTATION_LOCKS_URL: Redis is not reachable at start-up; rotations fail until it is (the client keeps trying)");
      expect(server.output()).toContain("KMS_ROTATION_LOCKS_URL is set but the evidence log is a file of this instance");
      const encrypted = await fetch(`${server.url}/v1/tenants/tenant-a/encrypt`, {
        method: "POST",
        headers: { authorization: `Bearer ${TOKENS["tenant-a"]}`, "content-type": "application/json" },
        body: JSON.stringify({ plaintext: Buffer.from("no locks needed").toString("base64") }),
      });
      expect(encrypted.status).toBe(200);
      const rotated = await call(server, "POST", "/admin/tenants/tenant-a/rotate");
      expect(rotated.status).toBe(500);
    } finally {
      server.child.kill("SIGTERM");
    }
    expect(await exited(server.child)).toBe(0);
    expect(server.output()).toContain('"msg":"stopped"');
    expect(server.output()).not.toContain(password);
  });
});
