import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "@jest/globals";
import { AWS_PRICE_PER_10K, monthlyCost } from "../src/cache-sim";
import { fmtInt, fmtMs, fmtNum, fmtPct, fmtRange, fmtRatio, fmtSize, fmtUsd } from "../src/format";
import { ZipfSampler, median, percentile, seededRandom, summarize } from "../src/stats";

describe("percentile (nearest rank)", () => {
  const oneToTen = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
  it("picks the smallest value with at least q of the values at or below it", () => {
    expect(percentile(oneToTen, 0.5)).toBe(5);
    expect(percentile(oneToTen, 0.99)).toBe(10);
    expect(percentile(oneToTen, 0.1)).toBe(1);
    expect(percentile(oneToTen, 0.11)).toBe(2);
    expect(percentile(oneToTen, 0)).toBe(1);
    expect(percentile(oneToTen, 1)).toBe(10);
  });
  it("has no value for an empty list", () => {
    expect(percentile([], 0.5)).toBeNaN();
  });
  it("p99 of 1,000 samples is the 990th", () => {
    const values = Array.from({ length: 1000 }, (_, i) => i + 1);
    expect(percentile(values, 0.99)).toBe(990);
  });
});

describe("median", () => {
  // Skewed inputs: their mean (and their middle position before sorting) is not the median.
  it("is the middle value of an odd count, whatever the order", () => {
    expect(median([100, 1, 3])).toBe(3);
    expect(median([2])).toBe(2);
  });
  it("is the mean of the two middle values of an even count", () => {
    expect(median([100, 1, 4, 2])).toBe(3);
  });
  it("does not reorder its input", () => {
    const values = [3, 1, 2];
    median(values);
    expect(values).toEqual([3, 1, 2]);
  });
  it("has no value for an empty list", () => {
    expect(median([])).toBeNaN();
  });
});

describe("summarize", () => {
  it("gives throughput from the sum of the samples and p50/p99 in µs", () => {
    // One slow outlier: the mean moves, the median does not; p99 of five samples is the largest.
    const s = summarize(Float64Array.from([16_000, 1000, 3000, 2000, 3000]));
    expect(s).toEqual({ ops: 5, opsPerSec: 200_000, meanUs: 5, p50Us: 3, p99Us: 16 });
  });
  it("sorts the samples as numbers (not as text) and leaves them in place", () => {
    const samples = Float64Array.from([900, 10_000, 2000]);
    expect(summarize(samples)).toMatchObject({ p50Us: 2, p99Us: 10 });
    expect(Array.from(samples)).toEqual([900, 10_000, 2000]);
  });
});

describe("seededRandom", () => {
  it("repeats its sequence for a seed and differs between seeds", () => {
    const a = seededRandom(42);
    const b = seededRandom(42);
    const c = seededRandom(43);
    const seqA = Array.from({ length: 5 }, a);
    expect(Array.from({ length: 5 }, b)).toEqual(seqA);
    expect(Array.from({ length: 5 }, c)).not.toEqual(seqA);
  });
  it("is uniform on [0, 1): range, mean and deciles over 100,000 draws", () => {
    const random = seededRandom(1);
    const deciles = new Array<number>(10).fill(0);
    let sum = 0;
    for (let i = 0; i < 100_000; i++) {
      const u = random();
      expect(u >= 0 && u < 1).toBe(true);
      sum += u;
      deciles[Math.floor(u * 10)]!++;
    }
    expect(Math.abs(sum / 100_000 - 0.5)).toBeLessThan(0.005);
    for (const count of deciles) expect(Math.abs(count - 10_000)).toBeLessThan(400);
  });
});

describe("ZipfSampler", () => {
  it("has probabilities proportional to 1/(k+1)^s that sum to 1", () => {
    const zipf = new ZipfSampler(1000, 1.2);
    let total = 0;
    for (let k = 0; k < 1000; k++) total += zipf.probability(k);
    expect(total).toBeCloseTo(1, 12);
    expect(zipf.probability(9) / zipf.probability(0)).toBeCloseTo(1 / Math.pow(10, 1.2), 12);
    expect(zipf.probability(-1)).toBe(0);
    expect(zipf.probability(1000)).toBe(0);
  });
  it("maps u to ranks at the CDF's steps", () => {
    const zipf = new ZipfSampler(4, 0); // uniform: steps at 0.25, 0.5, 0.75
    expect([0, 0.2499, 0.25, 0.5, 0.7499, 0.75, 0.9999].map((u) => zipf.rankOf(u))).toEqual([0, 0, 1, 2, 2, 3, 3]);
  });
  it("draws ranks at their probabilities (seeded, 200,000 draws)", () => {
    const zipf = new ZipfSampler(100, 1);
    const random = seededRandom(7);
    const counts = new Array<number>(100).fill(0);
    const draws = 200_000;
    for (let i = 0; i < draws; i++) counts[zipf.sample(random)]!++;
    for (const k of [0, 1, 2, 9, 49, 99]) {
      const expected = zipf.probability(k) * draws;
      // within 5 standard deviations of the binomial count
      expect(Math.abs(counts[k]! - expected)).toBeLessThan(5 * Math.sqrt(expected));
    }
    // rank 0 about twice rank 1, ten times rank 9 (s = 1)
    expect(counts[0]! / counts[1]!).toBeCloseTo(2, 1);
    expect(counts[0]! / counts[9]!).toBeGreaterThan(9);
    expect(counts[0]! / counts[9]!).toBeLessThan(11);
  });
  it("with s = 0 is uniform", () => {
    const zipf = new ZipfSampler(10, 0);
    for (let k = 0; k < 10; k++) expect(zipf.probability(k)).toBeCloseTo(0.1, 12);
  });
  it("refuses an empty population or a negative exponent", () => {
    expect(() => new ZipfSampler(0, 1)).toThrow(RangeError);
    expect(() => new ZipfSampler(10, -1)).toThrow(RangeError);
  });
});

describe("monthly cost", () => {
  it("is calls per request × requests in 30 days × the price per 10,000", () => {
    // 1,000 req/s for 30 days = 2,592,000,000 requests; 28.5 KMS calls per 1,000 = 73,872,000 calls.
    expect(monthlyCost(28.5, 1000)).toBeCloseTo(221.616, 9);
    expect(monthlyCost(0, 1000)).toBe(0);
  });
  it("uses the AWS KMS price per 10,000 requests that docs/COST.md lists", () => {
    const cost = readFileSync(join(__dirname, "..", "..", "docs", "COST.md"), "utf8");
    const row = cost.split("\n").find((line) => line.startsWith("| AWS KMS"));
    expect(row?.split("|")[3]?.trim()).toBe(`$${AWS_PRICE_PER_10K}`);
  });
});

describe("formatting", () => {
  it("formats as the report prints", () => {
    expect(fmtInt(1234567.8)).toBe("1,234,568");
    expect(fmtInt(999)).toBe("999");
    expect([0.6912, 5, 51.71, 123.4, 1234.5].map(fmtNum)).toEqual(["0.69", "5.00", "51.7", "123", "1,235"]);
    expect(fmtRatio(1.318)).toBe("1.32×");
    expect(fmtRange([1.2, 1.456])).toBe("1.20–1.46");
    expect(fmtPct(0.99843)).toBe("99.84 %");
    expect(fmtPct(0.99, 0)).toBe("99 %");
    expect(fmtUsd(221.616)).toBe("$222");
    expect(fmtUsd(12.346)).toBe("$12.35");
    expect([64, 1024, 65536, 1048576, 1000].map(fmtSize)).toEqual(["64 B", "1 KiB", "64 KiB", "1 MiB", "1000 B"]);
    expect(fmtMs(21.43)).toBe("21.4 ms");
    expect(fmtMs(12_345)).toBe("12.3 s");
  });
});
