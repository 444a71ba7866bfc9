// Shared jest preset: TypeScript through @swc/jest (no type-check here: `pnpm typecheck` does that),
// and workspace packages resolved to their sources so tests never need a prior build.
const path = require("node:path");

module.exports = {
  testEnvironment: "node",
  // CI runs every package's suites at once on 2 cores: RSA key generation (the Azure emulator) and
  // TLS handshakes then take seconds. Tests never wait on this timeout to pass.
  testTimeout: 30_000,
  testMatch: ["<rootDir>/test/**/*.test.ts", "<rootDir>/src/**/*.test.ts"],
  transform: {
    "^.+\\.ts$": [
      "@swc/jest",
      {
        jsc: { parser: { syntax: "typescript" }, target: "es2022" },
        module: { type: "commonjs" },
      },
    ],
  },
  moduleNameMapper: {
    "^@kms/(core|testkit|aws|vault|gcp|azure|metrics|rotation)$": path.join(__dirname, "packages/$1/src/index.ts"),
    "^@kms/testkit/emulators$": path.join(__dirname, "packages/testkit/src/emulators/index.ts"),
  },
};
