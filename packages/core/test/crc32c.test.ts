import { describe, expect, it } from "@jest/globals";
import { crc32c } from "../src";

describe("crc32c", () => {
  it("matches the CRC32C check values (not IEEE CRC-32)", () => {
    expect(crc32c(Buffer.from("123456789", "ascii"))).toBe(0xe3069283);
    expect(crc32c(Buffer.from("hello", "ascii"))).toBe(2591144780);
    expect(crc32c(new Uint8Array(0))).toBe(0);
    // RFC 3720 (iSCSI) B.4 test vectors: 32 bytes of zeros, of 0xff, and ascending 0..31.
    expect(crc32c(new Uint8Array(32))).toBe(0x8a9136aa);
    expect(crc32c(new Uint8Array(32).fill(0xff))).toBe(0x62a8ab43);
    expect(crc32c(Uint8Array.from({ length: 32 }, (_, i) => i))).toBe(0x46dd794e);
  });

  it("reads only the view it is given and always returns an unsigned 32-bit integer", () => {
    const whole = Buffer.from("xx123456789yy", "ascii");
    expect(crc32c(whole.subarray(2, 11))).toBe(0xe3069283);
    for (let i = 0; i < 50; i++) {
      const value = crc32c(Buffer.from(`sample ${i}`));
      expect(Number.isInteger(value) && value >= 0 && value <= 0xffffffff).toBe(true);
    }
  });

  it("changes when one bit of the input flips", () => {
    const bytes = Buffer.from("a data key's worth of bytes......", "ascii");
    const before = crc32c(bytes);
    bytes[7]! ^= 0x01;
    expect(crc32c(bytes)).not.toBe(before);
  });
});
