/**
 * The AWS Encryption SDK for JavaScript (`@aws-crypto/client-node`) set up as its docs recommend for
 * data-key caching: a caching materials manager over a keyring, with the local LRU materials cache.
 *
 * Suite: `ALG_AES256_GCM_IV12_TAG16_HKDF_SHA512_COMMIT_KEY` under `REQUIRE_ENCRYPT_REQUIRE_DECRYPT`,
 * the ESDK's committing suite without an ECDSA signature: the closest match to the @kms envelope
 * (AES-256-GCM, a per-message derived key, key commitment, no signature). The SDK's default suite
 * adds an ECDSA P-384 signature per message and would make the comparison unfair to it.
 */
import {
  AlgorithmSuiteIdentifier,
  CommitmentPolicy,
  type KeyringNode,
  NodeCachingMaterialsManager,
  NodeDefaultCryptographicMaterialsManager,
  type NodeMaterialsManager,
  buildClient,
  getLocalCryptographicMaterialsCache,
} from "@aws-crypto/client-node";

export const ESDK_SUITE = AlgorithmSuiteIdentifier.ALG_AES256_GCM_IV12_TAG16_HKDF_SHA512_COMMIT_KEY;
export const ESDK_SUITE_NAME = AlgorithmSuiteIdentifier[ESDK_SUITE];

const client = buildClient(CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT);

export interface CountingCmm {
  cmm: NodeCachingMaterialsManager;
  /**
   * Calls the CMM made to its keyring: every materials fetch, cached afterwards or not (the CMM also
   * goes to its keyring without caching, e.g. for a suite that is not cache-safe).
   */
  readonly keyringCalls: { encrypt: number; decrypt: number };
}

/** A caching CMM over `keyring` (the local LRU cache, 1,000 entries, 5-minute max age), counting its keyring's calls. */
export function cachingCmm(keyring: KeyringNode): CountingCmm {
  const keyringCalls = { encrypt: 0, decrypt: 0 };
  // What the caching CMM builds around a keyring by itself, with a count on each call (the keyring's
  // own methods are read-only). Nothing here runs on a cache hit.
  const keyringCmm = new NodeDefaultCryptographicMaterialsManager(keyring);
  const counting: NodeMaterialsManager = {
    getEncryptionMaterials(request) {
      keyringCalls.encrypt++;
      return keyringCmm.getEncryptionMaterials(request);
    },
    decryptMaterials(request) {
      keyringCalls.decrypt++;
      return keyringCmm.decryptMaterials(request);
    },
  };
  const cmm = new NodeCachingMaterialsManager({
    backingMaterials: counting,
    cache: getLocalCryptographicMaterialsCache(1000),
    maxAge: 300_000,
    partition: "bench",
  });
  return { cmm, keyringCalls };
}

export async function esdkEncrypt(cmm: NodeCachingMaterialsManager, plaintext: Buffer, encryptionContext: Record<string, string>): Promise<Buffer> {
  const { result } = await client.encrypt(cmm, plaintext, { encryptionContext, suiteId: ESDK_SUITE });
  return result;
}

export async function esdkDecrypt(cmm: NodeCachingMaterialsManager, ciphertext: Buffer): Promise<Buffer> {
  const { plaintext } = await client.decrypt(cmm, ciphertext);
  return plaintext;
}
