/**
 * The Grafana dashboard: valid JSON, every query valid PromQL (checked by promtool as recording
 * rules), reading only metrics @kms/metrics exports, and a panel for each SLO.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { describe, expect, it } from "@jest/globals";
import { stringify } from "yaml";

const RUNBOOKS = resolve(__dirname, "..");
const METRICS_README = resolve(RUNBOOKS, "../packages/metrics/README.md");

interface Panel {
  id: number;
  type: string;
  title: string;
  targets?: { refId: string; expr: string }[];
}
const dashboard = JSON.parse(readFileSync(join(RUNBOOKS, "dashboards/kms.json"), "utf8")) as { uid: string; panels: Panel[] };
const panels = dashboard.panels.filter((p) => p.type !== "row");
const queries = panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p, ...t })));

describe("the Grafana dashboard", () => {
  it("has unique panel ids and a query on every panel", () => {
    const ids = dashboard.panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const panel of panels) expect(panel.targets?.length ?? 0).toBeGreaterThan(0);
  });

  it("has a panel for each SLO", () => {
    const titles = panels.map((p) => p.title);
    for (const slo of ["Cache hit rate", "Cache lookup p99", "KMS success rate", "KMS operation p99", "Keys overdue for rotation", "Rotation success rate"]) {
      expect(titles.some((t) => t.startsWith(slo))).toBe(true);
    }
  });

  it("queries only metrics @kms/metrics exports", () => {
    const exported = new Set([...readFileSync(METRICS_README, "utf8").matchAll(/^\| `(kms_[a-z_]+)` \|/gm)].map((m) => m[1]!));
    expect(exported.size).toBeGreaterThan(10);
    for (const { expr } of queries) {
      for (const [name] of expr.matchAll(/\bkms_[a-z_]+/g)) expect(exported).toContain(name.replace(/_(bucket|sum|count)$/, ""));
    }
  });

  it("has only valid PromQL (promtool checks each query as a recording rule)", () => {
    const rules = {
      groups: [{ name: "dashboard", rules: queries.map((q) => ({ record: `kms:dashboard:panel${q.panel.id}_${q.refId}`, expr: q.expr })) }],
    };
    const dir = mkdtempSync(join(tmpdir(), "kms-dashboard-"));
    writeFileSync(join(dir, "dashboard.rules.yml"), stringify(rules));
    const run = spawnSync("promtool", ["check", "rules", "dashboard.rules.yml"], { cwd: dir, encoding: "utf8" });
    rmSync(dir, { recursive: true, force: true });
    expect(`${run.stdout}${run.stderr}`).toContain(`SUCCESS: ${queries.length} rules found`);
    expect(run.status).toBe(0);
  });
});
