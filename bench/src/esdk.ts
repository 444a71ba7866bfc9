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
  buildClient,
  getLocalCryptographicMaterialsCache,
} from "@aws-crypto/client-node";

export const ESDK_SUITE = AlgorithmSuiteIdentifier.ALG_AES256_GCM_IV12_TAG16_HKDF_SHA512_COMMIT_KEY;
export const ESDK_SUITE_NAME = "ALG_AES256_GCM_IV12_TAG16_HKDF_SHA512_COMMIT_KEY";

const client = buildClient(CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT);

export interface CountingCmm {
  cmm: NodeCachingMaterialsManager;
  /** Materials the CMM fetched from its keyring and put in its cache (one per cache miss). */
  readonly puts: { encrypt: number; decrypt: number };
}

/** A caching CMM over `keyring`, counting the materials it had to fetch (its cache misses). */
export function cachingCmm(keyring: KeyringNode, options: { capacity?: number; maxAgeMs?: number; partition?: string } = {}): CountingCmm {
  const cache = getLocalCryptographicMaterialsCache(options.capacity ?? 1000);
  const puts = { encrypt: 0, decrypt: 0 };
  const counting: typeof cache = {
    ...cache,
    putEncryptionMaterial(...args) {
      puts.encrypt++;
      return cache.putEncryptionMaterial(...args);
    },
    putDecryptionMaterial(...args) {
      puts.decrypt++;
      return cache.putDecryptionMaterial(...args);
    },
  };
  const cmm = new NodeCachingMaterialsManager({
    backingMaterials: keyring,
    cache: counting,
    maxAge: options.maxAgeMs ?? 300_000,
    partition: options.partition ?? "bench",
  });
  return { cmm, puts };
}

export async function esdkEncrypt(cmm: NodeCachingMaterialsManager, plaintext: Buffer, encryptionContext: Record<string, string>): Promise<Buffer> {
  const { result } = await client.encrypt(cmm, plaintext, { encryptionContext, suiteId: ESDK_SUITE });
  return result;
}

export async function esdkDecrypt(cmm: NodeCachingMaterialsManager, ciphertext: Buffer): Promise<Buffer> {
  const { plaintext } = await client.decrypt(cmm, ciphertext);
  return plaintext;
}
