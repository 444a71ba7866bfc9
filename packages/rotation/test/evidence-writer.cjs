/* global require, __dirname */
// Child process for the crash test: appends evidence records to the file at argv[2] forever,
// printing each record's seq on stdout once its append has resolved (acknowledged = on disk).
// Loads the TypeScript sources through @swc/core, as jest does, so no build is needed.
const Module = require("node:module");
const path = require("node:path");
const fs = require("node:fs");
const { transformSync } = require("@swc/core");

const coreSource = path.join(__dirname, "../../core/src/index.ts");
const resolve = Module._resolveFilename;
Module._resolveFilename = function (request, ...rest) {
  return request === "@kms/core" ? coreSource : resolve.call(this, request, ...rest);
};
Module._extensions[".ts"] = (module, filename) => {
  const { code } = transformSync(fs.readFileSync(filename, "utf8"), {
    filename,
    jsc: { parser: { syntax: "typescript" }, target: "es2022" },
    module: { type: "commonjs" },
  });
  module._compile(code, filename);
};

const { createEvidenceLog, openFileEvidenceStore } = require("../src/evidence/index.ts");

(async () => {
  const log = createEvidenceLog({ store: await openFileEvidenceStore({ path: process.argv[2] }) });
  for (let i = 0; ; i++) {
    const record = await log.append({ type: "key.rotated", tenantId: `tenant-${i % 7}`, actor: "crash-test", outcome: "success", keyVersion: String(i) });
    process.stdout.write(`${record.seq}\n`);
  }
})().catch((error) => {
  process.stderr.write(`${error && error.code}\n`);
  process.exit(1);
});
