#!/usr/bin/env node
/** The `kms` executable: runs the CLI and exits with its code once stdout and stderr are flushed. */
import { main } from "./cli";
import { unexpectedFailureLine } from "./errors";

// The AWS SDK prints a notice about future Node support on stderr, which would break the CLI's stable
// output; `kms doctor` reports the Node version instead. Set the variable to "false" to see it.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // A stray handle (an SDK's keep-alive socket) must not keep a finished command alive.
    setTimeout(() => process.exit(code), 2_000).unref();
  },
  (error: unknown) => {
    process.stderr.write(`${unexpectedFailureLine(error)}\n`);
    process.exitCode = 1;
  },
);
