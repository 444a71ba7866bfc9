/**
 * Entry point: `node dist/main.js` (or `pnpm start` from the repository root). Reads configuration
 * from the environment, fails fast with every problem listed (exit 1), prints generated development
 * tokens once, listens on HOST:PORT, and shuts down gracefully on SIGINT/SIGTERM.
 */
import { mkdir } from "node:fs/promises";
import { dirname } from "node:path";
import { configIssue, createKms, isKmsError, KmsConfigError, validateConfig, type ConfigIssue, type KmsClient, type KmsProvider } from "@kms/core";
import { createEvidenceLog, openFileEvidenceStore, type EvidenceLog, type EvidenceStore, type LockProvider } from "@kms/rotation";
import { createTokenAuth, digestsOf, generateToken, type TokenSet } from "./auth";
import { createJwtAuth } from "./jwt";
import { loadServerConfig, type ServerConfig } from "./config";
import { REGISTRY } from "./registry";
import { createRotationService, tenantKeysOf, type RotationService } from "./rotation";
import { createSharedConnections, openPgEvidenceStore, openRotationLocks, type SharedConnections } from "./shared-stores";

/** How long in-flight requests get to finish on shutdown before the process exits anyway. */
const SHUTDOWN_GRACE_MS = 10_000;

function fail(error: unknown): never {
  // The message of a KmsError ends with its code and docs link; a KmsConfigError lists every issue.
  const text = isKmsError(error) || error instanceof Error ? error.message : String(error);
  console.error(`kms-server: failed to start: ${text}`);
  process.exit(1);
}

/**
 * `createKms`, with the server's own configuration issues reported in the same error. Core's issue
 * at a path the server already reported (`providers`) is dropped: the server's says more.
 */
function createKmsClient(kmsConfig: Record<string, unknown> | undefined, serverIssues: readonly ConfigIssue[]): KmsClient {
  let kms: KmsClient | undefined;
  let kmsIssues: readonly ConfigIssue[] = [];
  // No KMS configuration (an unreadable file, already reported): nothing for core to check.
  if (kmsConfig !== undefined) {
    try {
      kms = createKms({ registry: REGISTRY, config: kmsConfig, env: process.env });
    } catch (error) {
      if (!isKmsError(error)) throw error;
      kmsIssues =
        error instanceof KmsConfigError || Array.isArray((error as KmsConfigError).issues)
          ? (error as KmsConfigError).issues
          : [configIssue("", error.code, error.message)];
    }
  }
  const reported = new Set(serverIssues.map((issue) => issue.path));
  const issues = [...serverIssues, ...kmsIssues.filter((issue) => !reported.has(issue.path))];
  if (issues.length > 0) {
    void kms?.close();
    throw new KmsConfigError(issues);
  }
  return kms!;
}

/** The actor of the server's own evidence records. */
const SERVER_ACTOR = "kms-server";

/**
 * The providers rotation uses: built from the same settings as the runtime client's (so, in this
 * reference server, the same credentials). Production should give them separate key-administration
 * credentials: rotation rights do not belong in the role that encrypts.
 */
function rotationProviders(kmsConfig: Record<string, unknown>): Record<string, KmsProvider> {
  const { providers } = validateConfig(kmsConfig, { registry: REGISTRY, env: process.env });
  return Object.fromEntries(providers);
}

/**
 * Opens the evidence log and records the start: in PostgreSQL with `KMS_EVIDENCE_DATABASE_URL` (one
 * log for every instance), else the file (its store takes the single-writer lock). `recoveredBytes`:
 * an unfinished last line of the file (a crash mid-write, never acknowledged) cut on opening, for the
 * server's log.
 */
async function openEvidence(config: ServerConfig, connections: SharedConnections): Promise<{ evidence: EvidenceLog; recoveredBytes?: number }> {
  let store: EvidenceStore;
  let recoveredBytes: number | undefined;
  if (config.evidenceDatabaseUrl !== undefined) {
    store = await openPgEvidenceStore(config.evidenceDatabaseUrl, connections);
  } else {
    // Like the local key store's directory: created on first start, readable by this user only.
    await mkdir(dirname(config.evidenceFile), { recursive: true, mode: 0o700 });
    const file = await openFileEvidenceStore({ path: config.evidenceFile });
    recoveredBytes = file.recovery?.truncatedBytes;
    store = file;
  }
  const evidence = createEvidenceLog({ store, ...(config.evidenceHmacKey === undefined ? {} : { hmacKey: config.evidenceHmacKey }) });
  const providerIds = Object.keys((config.kms?.providers ?? {}) as Record<string, unknown>).sort();
  await evidence.append({
    type: "config.loaded",
    actor: SERVER_ACTOR,
    outcome: "success",
    details: {
      providers: providerIds.join(","),
      production: config.production,
      auth: config.jwt !== undefined ? "jwt" : "tokens",
      cryptoperiodMs: config.cryptoperiodMs,
      hmac: config.evidenceHmacKey !== undefined,
      evidenceStore: config.evidenceDatabaseUrl !== undefined ? "postgres" : "file",
      rotationLocks: config.rotationLocks?.kind ?? "embedded",
    },
  });
  return { evidence, ...(recoveredBytes === undefined ? {} : { recoveredBytes }) };
}

async function main(): Promise<void> {
  const baseDir = process.env.INIT_CWD || process.cwd();
  const loaded = loadServerConfig(process.env, baseDir);
  const config = loaded.ok ? loaded.config : loaded.partial;
  const kms = createKmsClient(config.kms, loaded.ok ? [] : loaded.issues);

  let generated: TokenSet | undefined;
  let tokens = config.tokens;
  if (tokens === undefined && config.jwt === undefined) {
    // Development only (production without tokens is a configuration error above).
    const tenants: Record<string, string> = {};
    for (const tenantId of config.demoTenants) tenants[tenantId] = generateToken();
    generated = { tenants, admin: generateToken() };
    tokens = digestsOf(generated);
  }
  // With KMS_AUTH=jwt a valid configuration always has JWT settings (else it failed above).
  const auth = config.jwt !== undefined ? createJwtAuth(config.jwt) : createTokenAuth(tokens ?? { tenants: {} });

  // Fastify is loaded only once the configuration is known to be valid: a bad configuration fails
  // a few hundred milliseconds sooner.
  const { buildApp } = require("./app") as typeof import("./app");
  const { createMetrics } = require("./metrics") as typeof import("./metrics");
  // Registered before the first request: a shared cache tier starts up (its gauge then follows its events).
  const metrics = createMetrics(kms, { sharedCache: (config.kms?.cache as { shared?: unknown } | undefined)?.shared !== undefined });
  // A valid configuration always has a KMS part (else createKmsClient failed above).
  const adminProviders = rotationProviders(config.kms!);
  // The Redis and PostgreSQL clients of KMS_ROTATION_LOCKS_URL and KMS_EVIDENCE_DATABASE_URL:
  // closed last, after the scheduler and the evidence log that use them.
  const connections = createSharedConnections();
  const closeClients = () => Promise.all([connections.close(), kms.close(), ...Object.values(adminProviders).map((p) => p.close())]);
  let locks: LockProvider | undefined;
  let locksWarning: string | undefined;
  let evidence: EvidenceLog;
  let recoveredBytes: number | undefined;
  try {
    ({ locks, warning: locksWarning } = await openRotationLocks(config.rotationLocks, connections));
    ({ evidence, recoveredBytes } = await openEvidence(config, connections));
  } catch (error) {
    await closeClients().catch(() => undefined);
    throw error;
  }
  const credentialTenants = config.jwt !== undefined ? [] : Object.keys(tokens?.tenants ?? {});
  const rotation: RotationService = createRotationService({
    providers: adminProviders,
    tenants: tenantKeysOf(config.kms, credentialTenants),
    evidence,
    kms,
    cryptoperiodMs: config.cryptoperiodMs,
    intervalMs: config.rotationIntervalMs,
    // Unset (KMS_ROTATION_LOCKS_URL not set): the in-process lock, for one instance.
    ...(locks === undefined ? {} : { locks }),
    observe: (event) => metrics.metrics.observe(event),
  });
  const app = buildApp({
    kms,
    auth,
    logger: { level: config.logLevel },
    bodyLimitBytes: config.bodyLimitBytes,
    metrics: metrics.registry,
    evidence,
    evidenceHmacKey: config.evidenceHmacKey,
    rotation,
    noopRoute: config.benchNoopRoute,
  });
  for (const warning of config.warnings) app.log.warn(warning);
  if (config.benchNoopRoute) app.log.warn("KMS_BENCH_NOOP_ROUTE: the benchmark's no-op route POST /v1/tenants/:tenantId/noop is enabled");
  if (locksWarning !== undefined) app.log.warn(locksWarning);
  if (recoveredBytes !== undefined) app.log.warn({ truncatedBytes: recoveredBytes }, "evidence: cut an unfinished last line (a crash mid-write; never acknowledged)");

  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) {
      app.log.warn({ signal }, "second signal: exiting now");
      process.exit(1);
    }
    stopping = true;
    app.log.info({ signal }, "shutting down: finishing in-flight requests");
    const timer = setTimeout(() => {
      app.log.error("shutdown grace period exceeded: exiting");
      process.exit(1);
    }, SHUTDOWN_GRACE_MS);
    timer.unref();
    // In-flight requests finish first (they may append evidence and hold leases), then the
    // scheduler's pass, then the evidence log is flushed and closed, then the clients (the lock
    // store's and the evidence database's among them).
    app
      .close()
      .then(() => rotation.stop())
      .then(() => evidence.close())
      .then(() => locks?.close())
      .then(closeClients)
      .then(
        () => {
          app.log.info("stopped");
          process.exit(0);
        },
        (error: unknown) => {
          app.log.error({ err: error }, "error during shutdown");
          process.exit(1);
        },
      );
  };
  process.on("SIGINT", () => shutdown("SIGINT"));
  process.on("SIGTERM", () => shutdown("SIGTERM"));

  try {
    await app.listen({
      host: config.host,
      port: config.port,
      listenTextResolver: (address) => `listening on ${address}`,
    });
  } catch (error) {
    if (stopping) return; // a signal arrived while starting: shutdown() exits
    const closing = evidence
      .close()
      .catch(() => undefined)
      .then(closeClients);
    await Promise.race([closing, new Promise((resolve) => setTimeout(resolve, 500).unref())]).catch(() => {});
    throw error;
  }

  rotation.start();
  if (config.rotationIntervalMs !== undefined) app.log.info({ intervalMs: config.rotationIntervalMs }, "rotation scheduler started");

  if (generated !== undefined) {
    // Printed once, never logged, and not kept: only their hashes stay in memory.
    const lines = [
      "",
      "Development tokens (generated because no token or token hash is configured; shown only once):",
      ...Object.entries(generated.tenants).map(([tenantId, token]) => `  tenant ${tenantId}: ${token}`),
      `  admin: ${generated.admin}`,
      "",
    ];
    console.log(lines.join("\n"));
    generated = undefined;
  }

  try {
    const health = await kms.checkHealth();
    if (!health.ready) app.log.warn({ health }, "KMS not ready at start-up");
    const insecure = Object.entries(health.providers)
      .filter(([, p]) => p.insecure)
      .map(([id]) => id);
    if (insecure.length > 0) app.log.warn({ providers: insecure }, "insecure KMS provider in use: not for production data");
  } catch (error) {
    app.log.warn({ err: error }, "KMS health check failed at start-up");
  }
}

main().catch(fail);
