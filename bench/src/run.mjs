// `pnpm bench` (here or at the root): runs every scenario and writes docs/BENCHMARKS.md and
// docs/benchmarks.svg. The harness is TypeScript compiled to dist/ (`pnpm build`; the root script
// builds it and what it measures first); this file only checks that the build is there.
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

const require = createRequire(import.meta.url);
const entry = join(import.meta.dirname, "..", "dist", "run.js");
if (!existsSync(entry)) {
  console.error("bench/dist is missing: run `pnpm bench` at the repository root, or `pnpm turbo run build --filter=@kms/bench...` first");
  process.exit(1);
}
require(entry);
