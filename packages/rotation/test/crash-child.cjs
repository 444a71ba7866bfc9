/* global require, __dirname, setInterval */
// A scheduler process for crash.test.ts: one pass over one tenant whose key is on the `local`
// provider, evidence in a JSON Lines file. With CRASH_AT=<step> it writes "at:<step>" once it gets
// there and waits to be killed (SIGKILL by the parent). Loads the TypeScript sources through swc.
const fs = require("node:fs");
const Module = require("node:module");
const path = require("node:path");
const { transformSync } = require("@swc/core");

const CORE_SOURCE = path.join(__dirname, "../../core/src/index.ts");
const resolve = Module._resolveFilename;
Module._resolveFilename = function (request, ...rest) {
  return resolve.call(this, request === "@kms/core" ? CORE_SOURCE : request, ...rest);
};
require.extensions[".ts"] = (module, filename) => {
  const { code } = transformSync(fs.readFileSync(filename, "utf8"), {
    filename,
    jsc: { parser: { syntax: "typescript" }, target: "es2022" },
    module: { type: "commonjs" },
  });
  module._compile(code, filename);
};

const { localKmsProvider } = require("@kms/core");
const { createRotationScheduler } = require("../src/scheduler");
const { fileEvidenceLog } = require("./scheduler-fakes");

const { KEYSTORE, EVIDENCE, CRASH_AT } = process.env;

async function stopIf(step) {
  if (CRASH_AT !== step) return;
  process.stdout.write(`at:${step}\n`);
  setInterval(() => {}, 60_000); // keeps the process alive until the parent kills it
  await new Promise(() => {});
}

(async () => {
  const provider = localKmsProvider({ path: KEYSTORE, autoCreateKeys: false });
  const rotateKey = provider.rotateKey.bind(provider);
  provider.rotateKey = async (keyId, options) => {
    const result = await rotateKey(keyId, options);
    await stopIf("rotated-key");
    return result;
  };
  const evidence = fileEvidenceLog(EVIDENCE);
  const append = evidence.append.bind(evidence);
  evidence.append = async (event) => {
    const record = await append(event);
    await stopIf(event.type === "key.rotation-started" ? "started" : "outcome");
    return record;
  };
  const scheduler = createRotationScheduler({
    providers: { local: provider },
    tenants: [{ tenantId: "acme", provider: "local", keyId: "tenant-acme", cryptoperiodMs: 3_600_000 }],
    evidence,
    actor: "scheduler@crash-test",
  });
  const summary = await scheduler.runOnce();
  await evidence.close();
  process.stdout.write(`done:${JSON.stringify(summary)}\n`);
})().catch((error) => {
  process.stderr.write(`${error?.stack ?? error}\n`);
  process.exit(1);
});
