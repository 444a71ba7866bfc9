/**
 * The alert rules are checked and unit-tested by Prometheus's own `promtool` (Debian's `prometheus`
 * package; `.ci/run` installs it), and every alert is held to what an on-call engineer relies on:
 * a severity, a summary, a runbook section that exists and says what to do, and unit tests in which
 * it both fires and stays silent.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { describe, expect, it } from "@jest/globals";
import { parse } from "yaml";

const RUNBOOKS = resolve(__dirname, "..");
const ALERTS = join(RUNBOOKS, "alerts");
const RULES_FILE = join(ALERTS, "kms.rules.yml");
const RULES_TEST_FILE = join(ALERTS, "kms.rules.test.yml");
const RUNBOOK_URL_PREFIX = "https://github.com/kms-toolkit/kms/blob/main/runbooks/";
/** The sections every alert's runbook entry has, in this order. */
const SECTIONS = ["Symptoms", "Confirm", "Mitigate", "Recover", "Verify", "Follow-up"];

interface AlertRule {
  alert: string;
  expr: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface RuleFile {
  groups: { name: string; rules: AlertRule[] }[];
}
interface RuleTestFile {
  tests: { name: string; alert_rule_test?: { alertname: string; exp_alerts?: unknown[] }[] }[];
}

const rules = (parse(readFileSync(RULES_FILE, "utf8")) as RuleFile).groups.flatMap((g) => g.rules);
const ruleTests = (parse(readFileSync(RULES_TEST_FILE, "utf8")) as RuleTestFile).tests.flatMap((t) => t.alert_rule_test ?? []);

function promtool(...args: string[]): { status: number | null; output: string } {
  const found = spawnSync("promtool", ["--version"], { encoding: "utf8" });
  if (found.error !== undefined) {
    throw new Error("promtool is not installed: install Debian's `prometheus` package (apt-get install prometheus), as .ci/run does");
  }
  const run = spawnSync("promtool", args, { cwd: ALERTS, encoding: "utf8" });
  return { status: run.status, output: `${run.stdout}${run.stderr}` };
}

/** GitHub's anchor for a Markdown heading. */
const anchorOf = (heading: string): string =>
  heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, "")
    .replace(/\s/g, "-");

/** `## Heading` → the headings of a Markdown file at `level`, outside code fences. */
function headings(markdown: string, level: number): string[] {
  const out: string[] = [];
  let fenced = false;
  for (const line of markdown.split("\n")) {
    if (line.startsWith("```")) fenced = !fenced;
    const m = /^(#+)\s+(.*)$/.exec(line);
    if (!fenced && m !== null && m[1]!.length === level) out.push(m[2]!);
  }
  return out;
}

describe("promtool", () => {
  it("accepts the rule file (check rules)", () => {
    const { status, output } = promtool("check", "rules", RULES_FILE);
    expect(output).toContain(`SUCCESS: ${rules.length} rules found`);
    expect(status).toBe(0);
  });

  it("passes every alert unit test (test rules)", () => {
    const { status, output } = promtool("test", "rules", RULES_TEST_FILE);
    expect(output).toContain("SUCCESS");
    expect(output).not.toContain("FAILED");
    expect(status).toBe(0);
  });
});

describe("every alert", () => {
  it("is one of the alerts the product review asked for (no alert is lost)", () => {
    expect(rules.map((r) => r.alert).sort()).toEqual(
      [
        "KmsCacheHitRateLow",
        "KmsCacheIntegrityFailure",
        "KmsCacheLookupSlow",
        "KmsCircuitOpen",
        "KmsErrorRateHigh",
        "KmsLatencyHigh",
        "KmsRotationFailing",
        "KmsRotationOverdue",
        "KmsSharedCacheDegraded",
        "KmsSharedCacheIntegrityFailure",
        "KmsThrottled",
      ].sort(),
    );
  });

  it.each(rules.map((r) => [r.alert, r] as const))("%s has a severity, a summary and a runbook_url", (_name, rule) => {
    expect(["critical", "warning"]).toContain(rule.labels?.severity);
    expect(rule.annotations?.summary).toEqual(expect.any(String));
    expect(rule.annotations?.runbook_url?.startsWith(RUNBOOK_URL_PREFIX)).toBe(true);
  });

  it.each(rules.map((r) => [r.alert, r] as const))("%s's runbook_url points to a runbook section with every step", (_name, rule) => {
    const [file, anchor] = rule.annotations!.runbook_url!.slice(RUNBOOK_URL_PREFIX.length).split("#");
    const path = join(RUNBOOKS, file!);
    expect(existsSync(path)).toBe(true);
    const markdown = readFileSync(path, "utf8");
    const sections = headings(markdown, 2);
    const section = sections.find((h) => anchorOf(h) === anchor);
    expect(section).toBe(rule.alert);
    // The steps under this alert's heading, up to the next alert's.
    const body = markdown.slice(markdown.indexOf(`## ${section}`)).split(/\n## /)[0]!;
    expect(headings(body, 3)).toEqual(SECTIONS);
  });

  it.each(rules.map((r) => [r.alert] as const))("%s has a unit test where it fires and one where it stays silent", (alert) => {
    const cases = ruleTests.filter((t) => t.alertname === alert);
    expect(cases.some((t) => (t.exp_alerts ?? []).length > 0)).toBe(true);
    expect(cases.some((t) => (t.exp_alerts ?? []).length === 0)).toBe(true);
  });
});

describe("the unit tests", () => {
  it("fail when an alert's threshold is wrong (they can fail)", () => {
    // The same tests against a rule file whose error-rate threshold is 10× too lax must fail.
    const lax = readFileSync(RULES_FILE, "utf8").replace(") > 0.01\n", ") > 0.1\n");
    expect(lax).not.toEqual(readFileSync(RULES_FILE, "utf8"));
    const dir = mkdtempSync(join(tmpdir(), "kms-rules-"));
    writeFileSync(join(dir, "kms.rules.yml"), lax);
    writeFileSync(join(dir, "kms.rules.test.yml"), readFileSync(RULES_TEST_FILE));
    const run = spawnSync("promtool", ["test", "rules", "kms.rules.test.yml"], { cwd: dir, encoding: "utf8" });
    rmSync(dir, { recursive: true, force: true });
    expect(run.status).not.toBe(0);
    expect(`${run.stdout}${run.stderr}`).toContain("alertname: KmsErrorRateHigh");
  });
});

describe("the runbooks", () => {
  it("are each linked from runbooks/README.md", () => {
    const index = readFileSync(join(RUNBOOKS, "README.md"), "utf8");
    for (const file of readdirSync(RUNBOOKS).filter((f) => /^KMS_.*\.md$/.test(f))) expect(index).toContain(`(${file})`);
  });
});
