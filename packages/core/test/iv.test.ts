import crypto from "node:crypto";
import { afterEach, describe, expect, it, jest } from "@jest/globals";

/** A fresh copy of the module, so its pool starts empty whatever else this file has run. */
function freshIvModule(): typeof import("../src/iv") {
  let fresh!: typeof import("../src/iv");
  jest.isolateModules(() => {
    fresh = jest.requireActual<typeof import("../src/iv")>("../src/iv");
  });
  return fresh;
}

afterEach(() => {
  jest.restoreAllMocks();
});

describe("writeIv", () => {
  it("never hands out the same IV twice, and refills from the CSPRNG once per 1,024 IVs", () => {
    const spy = jest.spyOn(crypto, "randomFillSync");
    const { writeIv } = freshIvModule();
    const seen = new Set<string>();
    const refilledAt: number[] = [];
    const out = Buffer.alloc(20);
    for (let i = 0; i < 5000; i++) {
      const before = spy.mock.calls.length;
      writeIv(out, 4);
      if (spy.mock.calls.length !== before) refilledAt.push(i);
      seen.add(out.toString("hex", 4, 16));
    }
    expect(seen.size).toBe(5000);
    expect(out.subarray(0, 4).equals(Buffer.alloc(4))).toBe(true);
    expect(out.subarray(16).equals(Buffer.alloc(4))).toBe(true);
    // The empty pool is filled by the first IV, then again each time 1,024 IVs have used it up.
    expect(refilledAt).toEqual([0, 1024, 2048, 3072, 4096]);
    expect(spy).toHaveBeenCalledTimes(5);
    for (const [buf] of spy.mock.calls) expect((buf as Buffer).length).toBe(12 * 1024);
  });

  it("cuts each IV from the pool in order, never reusing a block", () => {
    // Each block is filled with its own sequence number, so every IV shows which block it came from.
    let block = 0;
    const spy = jest
      .spyOn(crypto, "randomFillSync")
      .mockImplementation(((buf: Buffer) => buf.fill(++block)) as unknown as typeof crypto.randomFillSync);
    const { writeIv } = freshIvModule();
    const out = Buffer.alloc(12);
    const sources: number[] = [];
    for (let i = 0; i < 2049; i++) {
      writeIv(out, 0);
      expect(out.equals(Buffer.alloc(12, out[0]!))).toBe(true);
      sources.push(out[0]!);
    }
    expect(sources.slice(0, 1024).every((b) => b === 1)).toBe(true);
    expect(sources.slice(1024, 2048).every((b) => b === 2)).toBe(true);
    expect(sources[2048]).toBe(3);
    expect(spy).toHaveBeenCalledTimes(3);
    // A spent block is replaced by a new buffer, not refilled in place.
    expect(new Set(spy.mock.calls.map(([buf]) => buf)).size).toBe(3);
  });
});
