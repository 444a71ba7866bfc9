import { writeFileSync } from "node:fs";
import type { AwsKmsEmulator } from "@kms/testkit/emulators";

/**
 * Resilience for a server whose KMS a test takes down: fail fast while it is down, with enough
 * failures allowed that the circuit stays closed.
 */
export const FAIL_FAST_RESILIENCE = { timeoutMs: 1_000, retry: { maxAttempts: 1 }, circuitBreaker: { failureThreshold: 50 } };

/**
 * Writes the server's configuration file (JSON) with the AWS KMS emulator as its one provider and
 * `keyId` as every tenant's key; `sections` adds top-level sections (`resilience`, `cache`, …).
 * Returns `file`.
 */
export function writeAwsKmsConfig(file: string, emulator: AwsKmsEmulator, keyId: string, sections: Record<string, unknown> = {}): string {
  const { region, endpoint, credentials } = emulator.clientConfig();
  writeFileSync(
    file,
    JSON.stringify({
      providers: { "aws-kms": { region, endpoint, credentials } },
      tenants: { defaultKey: { provider: "aws-kms", keyId } },
      ...sections,
    }),
  );
  return file;
}
