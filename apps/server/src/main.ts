/**
 * Entry point: `node dist/main.js` (or `pnpm start` from the repository root). Reads configuration
 * from the environment, fails fast with every problem listed (exit 1), prints generated development
 * tokens once, listens on HOST:PORT, and shuts down gracefully on SIGINT/SIGTERM.
 */
import { awsKms } from "@kms/aws";
import { configIssue, createKms, isKmsError, KmsConfigError, localKms, type ConfigIssue, type KmsClient } from "@kms/core";
import { gcpKms } from "@kms/gcp";
import { vaultKms } from "@kms/vault";
import { createTokenAuth, generateToken, type TokenSet } from "./auth";
import { createJwtAuth } from "./jwt";
import { loadServerConfig } from "./config";

/**
 * The provider definitions this server installed: the only providers its configuration may name.
 * Azure Key Vault (`@kms/azure`) is not among them: it needs a credential object (a `TokenCredential`)
 * that a configuration file cannot express; an application that needs it builds its client in code.
 */
const REGISTRY = [localKms, awsKms, vaultKms, gcpKms];

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
    tokens = generated;
  }
  // With KMS_AUTH=jwt a valid configuration always has JWT settings (else it failed above).
  const auth = config.jwt !== undefined ? createJwtAuth(config.jwt) : createTokenAuth(tokens ?? { tenants: {} });

  // Fastify is loaded only once the configuration is known to be valid: a bad configuration fails
  // a few hundred milliseconds sooner.
  const { buildApp } = require("./app") as typeof import("./app");
  const { createMetrics } = require("./metrics") as typeof import("./metrics");
  const metrics = createMetrics(kms);
  const app = buildApp({ kms, auth, logger: { level: config.logLevel }, bodyLimitBytes: config.bodyLimitBytes, metrics: metrics.registry });
  for (const warning of config.warnings) app.log.warn(warning);

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
    app
      .close()
      .then(() => kms.close())
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
    await Promise.race([kms.close(), new Promise((resolve) => setTimeout(resolve, 500).unref())]).catch(() => {});
    throw error;
  }

  if (generated !== undefined) {
    // Printed once, never logged, and not kept: only their hashes stay in memory.
    const lines = [
      "",
      "Development tokens (generated because KMS_TENANT_TOKENS and KMS_ADMIN_TOKEN are not set; shown only once):",
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
