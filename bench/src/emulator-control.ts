/** Ways to drive the AWS KMS emulator from scenario 2: in this process (tests) or in a child process. */
import { fork } from "node:child_process";
import { join } from "node:path";
import type { AwsKmsEmulator } from "@kms/testkit/emulators";
import type { EmulatorControl } from "./stampede";

/** Controls an emulator running in this process. */
export function inProcessControl(emulator: AwsKmsEmulator, keyArn: string): EmulatorControl {
  return {
    clientConfig: emulator.clientConfig(),
    keyArn,
    resetLog: async () => emulator.resetLog(),
    count: async () => emulator.count(),
  };
}

/** Starts dist/emulator-host.js (built) in a child process and controls it over IPC. */
export async function spawnEmulatorHost(latencyMs: number): Promise<EmulatorControl & { stop(): Promise<void> }> {
  const child = fork(join(__dirname, "emulator-host.js"), [String(latencyMs)], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
  const pending = new Map<number, (value: unknown) => void>();
  let nextId = 0;
  const ready = await new Promise<{ clientConfig: EmulatorControl["clientConfig"]; keyArn: string }>((resolve, reject) => {
    child.once("exit", (code) => reject(new Error(`the emulator host exited (${code}) before it was ready`)));
    child.on("message", (message: { ready?: boolean; id?: number; value?: unknown; clientConfig?: EmulatorControl["clientConfig"]; keyArn?: string }) => {
      if (message.ready) resolve({ clientConfig: message.clientConfig!, keyArn: message.keyArn! });
      else if (message.id !== undefined) {
        pending.get(message.id)?.(message.value);
        pending.delete(message.id);
      }
    });
  });
  const call = (cmd: "resetLog" | "count" | "stop") =>
    new Promise<unknown>((resolve) => {
      const id = nextId++;
      pending.set(id, resolve);
      child.send({ id, cmd });
    });
  return {
    ...ready,
    resetLog: async () => {
      await call("resetLog");
    },
    count: async () => Number(await call("count")),
    stop: async () => {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      await call("stop");
      await exited;
    },
  };
}
