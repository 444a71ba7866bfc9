import { describe, expect, it } from "@jest/globals";
import { contextBytes } from "../src/context-bytes";
import { isKmsError } from "../src/errors";

const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};
const field = (text: string) => Buffer.concat([u32(Buffer.byteLength(text)), Buffer.from(text, "utf8")]);

describe("contextBytes", () => {
  it("is the label, the count, then each pair sorted by key bytes, every field length-prefixed", () => {
    expect(contextBytes("L", { é: "3", a: "1", B: "2" }, "p")).toEqual(
      Buffer.concat([field("L"), u32(3), field("B"), field("2"), field("a"), field("1"), field("é"), field("3")]),
    );
    expect(contextBytes("L", {}, "p")).toEqual(Buffer.concat([field("L"), u32(0)]));
  });

  it("gives the same bytes for any order, and different bytes for contexts that only concatenate alike", () => {
    expect(contextBytes("L", { a: "1", b: "2" }, "p")).toEqual(contextBytes("L", { b: "2", a: "1" }, "p"));
    const distinct: Record<string, string>[] = [{ ab: "c" }, { a: "bc" }, { a: "b", c: "" }, { "": "abc" }, {}];
    const encoded = new Set(distinct.map((c) => contextBytes("L", c, "p").toString("hex")));
    expect(encoded.size).toBe(distinct.length);
    expect(contextBytes("L1", {}, "p")).not.toEqual(contextBytes("L2", {}, "p"));
  });

  it.each([null, [], "a=1", { a: 1 }, { a: undefined }])("refuses %p with INPUT_INVALID naming the provider, not the value", (context) => {
    let error: unknown;
    try {
      contextBytes("L", context as never, "gcp-kms");
    } catch (thrown) {
      error = thrown;
    }
    expect(isKmsError(error) && error.code).toBe("INPUT_INVALID");
    expect((error as Error).message).toMatch(/^gcp-kms: /);
    expect((error as Error).message).not.toContain("a=1");
  });
});
