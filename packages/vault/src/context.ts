/**
 * The encryption context as Vault's `context` parameter. Vault derives the per-request key of a
 * derived transit key from the context bytes (HKDF), so those bytes must be one canonical encoding:
 * core's `contextBytes` (the same pairs in any order give the same bytes, different pairs never do),
 * under this provider's own label. Never empty, so Vault never sees a missing context.
 */
import { type EncryptionContext, contextBytes } from "@kms/core";

const LABEL = "kms-vault-context-v1";

/** The base64 `context` Vault expects for this encryption context. Throws INPUT_INVALID for a context that is not an object of strings. */
export function encodeVaultContext(context: EncryptionContext): string {
  return contextBytes(LABEL, context, "vault").toString("base64");
}
