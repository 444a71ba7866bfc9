import crypto from "node:crypto";
import { describe, expect, it, jest } from "@jest/globals";
import { writeIv } from "../src/iv";

describe("writeIv", () => {
  it("never hands out the same IV twice, and refills from the CSPRNG once per 1,024 IVs", () => {
    const spy = jest.spyOn(crypto, "randomFillSync");
    const seen = new Set<string>();
    const out = Buffer.alloc(20);
    for (let i = 0; i < 5000; i++) {
      writeIv(out, 4);
      seen.add(out.toString("hex", 4, 16));
    }
    expect(seen.size).toBe(5000);
    expect(out.subarray(0, 4).equals(Buffer.alloc(4))).toBe(true);
    expect(out.subarray(16).equals(Buffer.alloc(4))).toBe(true);
    // 5,000 IVs span at least 4 and at most 5 blocks of 1,024 (the first may have been partly used).
    expect(spy.mock.calls.length).toBeGreaterThanOrEqual(4);
    expect(spy.mock.calls.length).toBeLessThanOrEqual(5);
    for (const [buf] of spy.mock.calls) expect((buf as Buffer).length).toBe(12 * 1024);
    spy.mockRestore();
  });
});
