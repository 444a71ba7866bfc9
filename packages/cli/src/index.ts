/**
 * @kms/cli: the `kms` command. Its programmatic surface is `main(argv)` (returns the exit code) and
 * the command table, for embedding and tests; the interface is the command line (README.md).
 */
export { COMMANDS, main, version } from "./cli";
export { EXIT } from "./errors";
export { REGISTRY } from "./config";
