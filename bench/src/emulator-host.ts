/**
 * A child process that hosts the AWS KMS emulator for scenario 2, so that the emulator's work (SigV4
 * checks, key operations, the injected latency's timers) runs on the other core and is not counted
 * against the clients being measured, as a real KMS's would not be. Controlled over IPC by
 * `spawnEmulatorHost` (emulator-control.ts).
 */
import { AwsKmsEmulator } from "@kms/testkit/emulators";

type Command = { id: number; cmd: "resetLog" | "count" | "stop" };

async function main(): Promise<void> {
  const latencyMs = Number(process.argv[2] ?? 20);
  const emulator = new AwsKmsEmulator();
  await emulator.start();
  const { arn } = emulator.createKey({ alias: "alias/bench" });
  if (latencyMs > 0) emulator.inject("*", { kind: "latency", ms: latencyMs });
  process.on("message", (message: Command) => {
    const reply = (value: unknown) => process.send?.({ id: message.id, value });
    if (message.cmd === "resetLog") {
      emulator.resetLog();
      reply(null);
    } else if (message.cmd === "count") {
      reply(emulator.count());
    } else if (message.cmd === "stop") {
      void emulator.stop().then(() => {
        reply(null);
        process.disconnect();
      });
    }
  });
  process.send?.({ ready: true, clientConfig: emulator.clientConfig(), keyArn: arn });
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
