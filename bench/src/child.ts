/**
 * Runs one scenario in a process of its own (fresh heap and JIT, nothing left over from the other
 * scenarios) and sends its figures to the parent over IPC: `fork("dist/child.js", [name, json])`.
 */
import { runCacheOnce } from "./cache-sim";
import { spawnEmulatorHost } from "./emulator-control";
import { runMemory } from "./memory";
import { runStampede } from "./stampede";
import { runWarm } from "./warm";

async function run(name: string, options: Record<string, unknown>): Promise<unknown> {
  switch (name) {
    case "warm":
      return runWarm(options as never);
    case "stampede": {
      const host = await spawnEmulatorHost(Number(options.latencyMs));
      try {
        return await runStampede(host, options as never);
      } finally {
        await host.stop();
      }
    }
    case "cache":
      return runCacheOnce(options as never);
    case "memory":
      return runMemory(options as never);
    default:
      throw new Error(`unknown scenario ${name}`);
  }
}

const [name = "", json = "{}"] = process.argv.slice(2);
run(name, JSON.parse(json) as Record<string, unknown>).then(
  (result) => process.send!({ ok: true, result }, () => process.exit(0)),
  (error: unknown) => process.send!({ ok: false, error: error instanceof Error ? (error.stack ?? error.message) : String(error) }, () => process.exit(1)),
);
