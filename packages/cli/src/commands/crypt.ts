/**
 * `kms encrypt` / `kms decrypt`: stdin to stdout through core's client, for one tenant and context.
 * Encrypt prints the envelope's base64url text form and a newline; decrypt takes that text (trailing
 * whitespace ignored) and prints the plaintext bytes as they are.
 */
import { fromBase64Url, toBase64Url, type KmsClient } from "@kms/core";
import { CONFIG_FLAG, contextOf, required, str, type Command, type Flags } from "../command";
import { configLocation, openKms, readConfig } from "../config";
import { CliError, EXIT } from "../errors";

/** The most stdin is read for one message (core encrypts one buffer at a time). */
export const MAX_INPUT_BYTES = 64 * 1024 * 1024;

/** All of stdin in one buffer; the chunks it came in are zeroed (they may hold plaintext). */
async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of process.stdin) {
      chunks.push(chunk as Buffer);
      size += (chunk as Buffer).length;
      if (size > MAX_INPUT_BYTES) throw new CliError(`stdin is larger than ${MAX_INPUT_BYTES} bytes`, EXIT.FAILED, "INPUT_INVALID");
    }
    return Buffer.concat(chunks);
  } finally {
    for (const chunk of chunks) chunk.fill(0);
  }
}

async function withKms<T>(flags: Flags, fn: (kms: KmsClient) => Promise<T>): Promise<T> {
  const kms = openKms(readConfig(configLocation(str(flags, "config"))));
  try {
    return await fn(kms);
  } finally {
    await kms.close();
  }
}

function write(data: string | Buffer): Promise<void> {
  return new Promise((resolve, reject) => process.stdout.write(data, (error) => (error ? reject(error) : resolve())));
}

const shared = {
  tenant: { type: "string", value: "T", help: "the tenant id (required)" },
  context: { type: "string", multiple: true, value: "k=v", help: "encryption context pair" },
  config: CONFIG_FLAG,
} as const;

export const encryptCommand: Command = {
  name: "encrypt",
  summary: "Encrypts stdin for the tenant; prints the envelope (base64url) and a newline.",
  usage: "encrypt --tenant T [--context k=v]... [--config F]",
  flags: shared,
  async run(flags) {
    const tenant = required(flags, "tenant");
    const context = contextOf(flags);
    const plaintext = await readStdin();
    try {
      const envelope = await withKms(flags, (kms) => kms.encrypt(tenant, plaintext, context));
      await write(`${toBase64Url(envelope)}\n`);
    } finally {
      plaintext.fill(0);
    }
    return EXIT.OK;
  },
};

export const decryptCommand: Command = {
  name: "decrypt",
  summary: "Decrypts an envelope (base64url text on stdin) for the tenant; prints the plaintext bytes.",
  usage: "decrypt --tenant T [--context k=v]... [--config F]",
  flags: shared,
  async run(flags) {
    const tenant = required(flags, "tenant");
    const context = contextOf(flags);
    const envelope = fromBase64Url((await readStdin()).toString("latin1").trimEnd());
    const plaintext = await withKms(flags, (kms) => kms.decrypt(tenant, envelope, context));
    try {
      await write(plaintext);
    } finally {
      plaintext.fill(0);
    }
    return EXIT.OK;
  },
};
