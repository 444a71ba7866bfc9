/**
 * GCM IVs from pooled CSPRNG output. One `randomFillSync` call costs microseconds whatever its size
 * (about 5 µs here: half of a 1 KiB seal), so IVs are cut from a 12 KiB block filled once per 1,024
 * messages, as `crypto.randomUUID` pools its randomness. Every IV is fresh CSPRNG output and never
 * handed out twice: the offset only moves forward and a spent block is replaced, not refilled in place.
 */
import { randomFillSync } from "node:crypto";

/** AES-GCM's 96-bit IV. */
export const IV_BYTES = 12;
const POOL_BYTES = IV_BYTES * 1024;

let pool = Buffer.alloc(0);
let offset = 0;

/** Writes a fresh random 12-byte IV into `target` at `at`. */
export function writeIv(target: Buffer, at: number): void {
  if (offset + IV_BYTES > pool.length) {
    pool = randomFillSync(Buffer.allocUnsafeSlow(POOL_BYTES));
    offset = 0;
  }
  pool.copy(target, at, offset, offset + IV_BYTES);
  offset += IV_BYTES;
}
