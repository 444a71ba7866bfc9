/**
 * A small assertion for provider tests: the KmsError a call rejects with. No jest dependency (it
 * throws a plain Error), so any runner can use it.
 */
import { type KmsError, isKmsError } from "@kms/core";

/** The KmsError `promise` rejects with; fails the test if it resolves or rejects with anything else. */
export async function kmsErrorOf(promise: Promise<unknown>): Promise<KmsError> {
  try {
    await promise;
  } catch (error) {
    if (!isKmsError(error)) throw new Error(`expected a KmsError, got ${String(error)}`);
    return error;
  }
  throw new Error("expected a KmsError, but the call succeeded");
}
