/**
 * Entry point: `node dist/main.js` (or `pnpm start` from the repository root). Reads configuration
 * from the environment, fails fast with every problem listed (exit 1), prints generated development
 * tokens once, listens on HOST:PORT, and shuts down gracefully on SIGINT/SIGTERM.
 */
import { mkdir } from "node:fs/promises";
import { dirname } from "node:path";
import { awsKms } from "@kms/aws";
import { azureKeyVault } from "@kms/azure";
import { configIssue, createKms, isKmsError, KmsConfigError, localKms, validateConfig, type ConfigIssue, type KmsClient, type KmsProvider } from "@kms/core";
import { createEvidenceLog, openFileEvidenceStore, type EvidenceLog } from "@kms/rotation";
import { gcpKms } from "@kms/gcp";
import { vaultKms } from "@kms/vault";
import { createTokenAuth, digestsOf, generateToken, type TokenSet } from "./auth";
import { createJwtAuth } from "./jwt";
import { loadServerConfig, type ServerConfig } from "./config";
import { createRotationService, tenantKeysOf, type RotationService } from "./rotation";

/**
 * The provider definitions this server installed: the only providers its configuration may name.
 * Azure Key Vault (`@kms/azure`) authenticates with `DefaultAzureCredential` from its environment
 * (service principal, workload or managed identity, Azure CLI…), made only when the configuration
 * names `azure-key-vault`.
 */
const REGISTRY = [localKms, awsKms, vaultKms, gcpKms, azureKeyVault()];

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
 * Opens the evidence log (its file store takes the single-writer lock) and records the start.
 * `recoveredBytes`: an unfinished last line (a crash mid-write, never acknowledged) cut on opening,
 * for the server's log.
 */
async function openEvidence(config: ServerConfig): Promise<{ evidence: EvidenceLog; recoveredBytes?: number }> {
  // Like the local key store's directory: created on first start, readable by this user only.
  await mkdir(dirname(config.evidenceFile), { recursive: true, mode: 0o700 });
  const store = await openFileEvidenceStore({ path: config.evidenceFile });
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
    },
  });
  return { evidence, ...(store.recovery === undefined ? {} : { recoveredBytes: store.recovery.truncatedBytes }) };
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
  const metrics = createMetrics(kms);
  // A valid configuration always has a KMS part (else createKmsClient failed above).
  const adminProviders = rotationProviders(config.kms!);
  let evidence: EvidenceLog;
  let recoveredBytes: number | undefined;
  try {
    ({ evidence, recoveredBytes } = await openEvidence(config));
  } catch (error) {
    await Promise.all([kms.close(), ...Object.values(adminProviders).map((p) => p.close())]).catch(() => undefined);
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
    // In-flight requests finish first (they may append evidence), then the scheduler's pass, then
    // the evidence log is flushed and closed, then the clients.
    app
      .close()
      .then(() => rotation.stop())
      .then(() => evidence.close())
      .then(() => Promise.all([kms.close(), ...Object.values(adminProviders).map((p) => p.close())]))
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
    const closing = Promise.all([evidence.close(), kms.close(), ...Object.values(adminProviders).map((p) => p.close())]);
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
