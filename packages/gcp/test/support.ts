import type { KeyManagementServiceClient } from "@google-cloud/kms";

/**
 * Resolves once the client's gRPC channel is connected again, e.g. after an emulator outage: grpc-js
 * reconnects after a backoff (the emulator's `clientOptions()` makes it short), and calls made before
 * then fail with UNAVAILABLE. Waits on the channel's own state change: no sleeping.
 */
export async function reconnected(client: KeyManagementServiceClient): Promise<void> {
  const stub = (await client.initialize()) as unknown as { waitForReady(deadline: number, callback: (error?: Error) => void): void };
  await new Promise<void>((resolve, reject) => stub.waitForReady(Date.now() + 10_000, (error) => (error ? reject(error) : resolve())));
}
