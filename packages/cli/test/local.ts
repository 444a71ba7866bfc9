/** A directory with a local-provider configuration, for the tests that need no emulator. */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export function localSetup(prefix: string, tenants: Record<string, unknown> = { defaultKey: { provider: "local", keyId: "default" } }) {
  const dir = mkdtempSync(join(tmpdir(), `kms-cli-${prefix}-`));
  const store = join(dir, "keys", "local-keys.json");
  const config = join(dir, "kms.config.json");
  const raw = { providers: { local: { path: "keys/local-keys.json" } }, tenants };
  writeFileSync(config, JSON.stringify(raw));
  return { dir, store, config, raw: { ...raw, providers: { local: { path: store } } } };
}
