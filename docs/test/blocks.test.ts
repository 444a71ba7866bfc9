import { describe, expect, it } from "@jest/globals";
import { codeBlocks, markedFile, outputMatches } from "./blocks";

const fence = "```";

describe("codeBlocks", () => {
  it("reads fenced blocks with their line, language and flags", () => {
    const text = ["# T", `${fence}sh test exit=2`, "kms validate", fence, "", "~~~json", "{}", "~~~", `${fence}`, "plain", fence].join("\n");
    expect(codeBlocks(text)).toEqual([
      { line: 2, language: "sh", flags: ["test", "exit=2"], body: "kms validate\n" },
      { line: 6, language: "json", flags: [], body: "{}\n" },
      { line: 9, language: "", flags: [], body: "plain\n" },
    ]);
  });
});

describe("markedFile", () => {
  it("collects run blocks with their expected output, and skips cloud and manual blocks", () => {
    const text = [
      "<!-- docs-test: emulator=aws-kms -->",
      `${fence}sh test`, "echo hi", fence,
      `${fence}text expected`, "hi", fence,
      `${fence}sh cloud`, "aws kms create-key", fence,
      `${fence}sh manual`, "pnpm test", fence,
      `${fence}sh test background port=8080`, "pnpm start", fence,
    ].join("\n");
    const marked = markedFile(text);
    expect(marked.problems).toEqual([]);
    expect(marked.emulators).toEqual(["aws-kms"]);
    expect(marked.runs.map((r) => [r.line, r.exit, r.background, r.port, r.expected])).toEqual([
      [2, 0, false, undefined, "hi\n"],
      [14, 0, true, 8080, undefined],
    ]);
  });

  it("reports unmarked shell blocks and marker mistakes", () => {
    const text = [`${fence}sh`, "ls", fence, `${fence}bash test background`, "x", fence, `${fence}text expected`, "y", fence, "<!-- docs-test: emulator=nope -->"].join("\n");
    expect(markedFile(text).problems).toEqual([
      expect.stringMatching(/^unknown docs-test directive "emulator=nope"/),
      expect.stringMatching(/^line 1: ```sh has no marker/),
      "line 4: a background block needs port=N (where it listens)",
      "line 7: a background block's output is not compared",
    ]);
  });
});

describe("outputMatches", () => {
  it("compares exactly but for … wildcards and trailing blanks", () => {
    expect(outputMatches("PASS local default local:read-keystore  \n\n", "PASS local default local:read-keystore")).toBe(true);
    expect(outputMatches("envelope v1 AbC123\n", "envelope v1 …")).toBe(true);
    expect(outputMatches("a\nb\nc\nd\n", "a\n…\nd")).toBe(true);
    expect(outputMatches("a\nd\n", "a\n…\nd")).toBe(true);
    expect(outputMatches("a\nX\n", "a\nd")).toBe(false);
    expect(outputMatches("a (b)\n", "a (b)")).toBe(true);
    const warning = "(node:123) Warning: NodeVersionSupportWarning: The AWS SDK\nwill require node >=22.\n\n(Use `node --trace-warnings ...` to show where the warning was created)\n";
    expect(outputMatches(`${warning}PASS x\n`, "PASS x")).toBe(true);
    expect(outputMatches("(node:9) ExperimentalWarning: VM modules\nok\n", "ok")).toBe(true);
  });
});
