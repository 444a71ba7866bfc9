/**
 * CRC32C (Castagnoli, reflected polynomial 0x82F63B78): the checksum Google Cloud KMS puts on every
 * request and response field it protects (`plaintext_crc32c`, `ciphertext_crc32c`…). It lives in core
 * because both the `@kms/gcp` provider and the testkit's Cloud KMS emulator need it, and a provider may
 * depend on core only. Node's `zlib.crc32` is the IEEE CRC-32, a different checksum.
 *
 * An integrity check against corruption in transit, not a MAC: never use it to authenticate.
 */

/** The byte-at-a-time lookup table, built once. */
const TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** The CRC32C of `bytes`, as an unsigned 32-bit integer (`"123456789"` → 0xE3069283). */
export function crc32c(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) crc = TABLE[(crc ^ bytes[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}
