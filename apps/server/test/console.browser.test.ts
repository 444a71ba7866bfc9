/**
 * The admin console in a real browser: Debian's Chromium (headless), driven by playwright-core,
 * against the BUILT server (`dist/main.js`) on an ephemeral port with the AWS KMS emulator of
 * @kms/testkit as its provider and 10,000 tenants. Each acceptance point of the console is one test,
 * in order, on one page; every test fails on a console error or an uncaught page error. Screenshots
 * of each page go to test/artifacts/console-*.png (committed copies in docs/console, linked from the README).
 *
 * Chromium is installed by scripts/ensure-tool.sh (as .ci/run does); without it the suite fails
 * saying so. It is never skipped.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "@jest/globals";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { verifyExport, type EvidenceManifest } from "@kms/rotation";
import { AwsKmsEmulator } from "@kms/testkit/emulators";
import { FAIL_FAST_RESILIENCE, writeAwsKmsConfig } from "./support/aws-kms-config";
import { ServerHarness } from "./support/server-process";

/**
 * The little of the browser's globals the `page.evaluate` callbacks below use (they run in the page;
 * this package's TypeScript has no DOM library).
 */
interface PageElement {
  id: string;
  textContent: string | null;
  value: string;
  disabled: boolean;
}
declare const document: {
  activeElement: PageElement | null;
  documentElement: { outerHTML: string; scrollWidth: number };
  getElementById(id: string): PageElement;
};
declare const window: { localStorage: { length: number }; sessionStorage: { length: number }; location: { href: string } };
declare function getComputedStyle(element: PageElement): { outlineStyle: string };

const ENSURE_TOOL = resolve(__dirname, "../../../scripts/ensure-tool.sh");
/**
 * Where screenshots go: test/artifacts (not committed: each run's own). The README shows the copies in
 * docs/console, refreshed with `KMS_SCREENSHOTS_DIR=docs/console pnpm --filter @kms/server test console.browser`.
 */
const ARTIFACTS = resolve(process.env.KMS_SCREENSHOTS_DIR ?? resolve(__dirname, "artifacts"));
const CHROMIUM = "/usr/bin/chromium";
const HMAC_KEY = "console-browser-hmac-key-0123456789abcdef";
const TENANT_COUNT = 10_000;
const tenantId = (i: number) => `t${String(i).padStart(5, "0")}`;
/** The tenant the tests act on. */
const TENANT = tenantId(4242);
/** What AWS needs for the runtime role (`AWS_RUNTIME_PERMISSIONS`), the one removed in the validation test. */
const RUNTIME_PERMISSIONS = ["kms:DescribeKey", "kms:ListKeyRotations", "kms:GenerateDataKey", "kms:Encrypt", "kms:Decrypt"];
const REMOVED = "kms:GenerateDataKey";

const harness = new ServerHarness("kms-console-test-");
let tmp: string;
let emulator: AwsKmsEmulator;
let url: string;
let adminToken: string;
let tenantToken: string;
let context: BrowserContext;
let page: Page;
/** Console errors and page errors of the current test. */
let problems: string[] = [];

/** Chromium, or a clear failure: never a skip. */
function ensureChromium(): void {
  if (existsSync(CHROMIUM)) return;
  const result = spawnSync(ENSURE_TOOL, ["chromium", "chromium", "the admin console browser tests"], { encoding: "utf8" });
  if (result.status !== 0 || !existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing and could not be installed: install Debian's chromium package (apt-get install chromium).\n${result.stderr ?? ""}`);
  }
}

/** Starts the server and reads the development tokens it prints (after `listening on`, the admin's last). */
async function startServer(env: Record<string, string>): Promise<void> {
  const adminLine = /^ {2}admin: (\S+)$/m;
  const server = await harness.start(env, { ready: (stdout) => adminLine.test(stdout) });
  const out = server.stdout();
  url = server.url;
  adminToken = adminLine.exec(out)![1]!;
  tenantToken = new RegExp(`^ {2}tenant ${TENANT}: (\\S+)$`, "m").exec(out)![1]!;
}

async function api(method: string, path: string, options: { token?: string; cookie?: string; csrf?: string; body?: unknown } = {}) {
  const headers: Record<string, string> = {};
  if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
  if (options.cookie !== undefined) headers.cookie = options.cookie;
  if (options.csrf !== undefined) headers["x-csrf-token"] = options.csrf;
  if (options.body !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(url + path, { method, headers, body: options.body === undefined ? undefined : JSON.stringify(options.body) });
  const text = await res.text();
  return { status: res.status, body: (text === "" ? {} : JSON.parse(text)) as Record<string, unknown> };
}

const encrypt = () => api("POST", `/v1/tenants/${TENANT}/encrypt`, { token: tenantToken, body: { plaintext: Buffer.from("hello").toString("base64") } });

/** Saves a screenshot, after checking that the page fits the window's width (no sideways scrolling). */
async function screenshot(name: string, fullPage = false): Promise<void> {
  await expect(page.evaluate(() => document.documentElement.scrollWidth)).resolves.toBeLessThanOrEqual(page.viewportSize()!.width);
  await page.screenshot({ path: join(ARTIFACTS, `console-${name}.png`), fullPage });
}

const SECTIONS = { Overview: "overview", "Tenants and keys": "tenants", Validation: "validation", Evidence: "evidence", Setup: "setup" } as const;

async function go(section: keyof typeof SECTIONS): Promise<void> {
  await page.getByRole("navigation", { name: "Sections" }).getByRole("link", { name: section, exact: true }).click();
  await page.locator(`#view-${SECTIONS[section]}`).waitFor({ state: "visible" });
}

/** Clicks Refresh and waits for the overview it fetched to be shown. */
async function refreshOverview(): Promise<void> {
  const answered = page.waitForResponse((r) => r.url().endsWith("/admin/overview") && r.request().method() === "GET");
  await page.getByRole("button", { name: "Refresh" }).click();
  await answered;
  await page.waitForFunction(() => !document.getElementById("overview-refresh").disabled);
}

/**
 * Refreshes the overview until the provider's status reads `status`: the server shares one health
 * result for 5 s, so a change shows within that. The deadline only turns a change that never comes
 * into a failure.
 */
async function untilProviderStatus(status: string): Promise<void> {
  const cell = page.locator('[data-provider="aws-kms"] [data-field="status"]');
  const deadline = Date.now() + 25_000;
  while ((await cell.textContent()) !== status) {
    if (Date.now() > deadline) throw new Error(`the provider's status did not become ${status}: it is ${await cell.textContent()}`);
    await refreshOverview();
    await page.waitForTimeout(250);
  }
}

/** The cache counters the overview shows, read together. */
const shownCounters = () =>
  page.evaluate(() => {
    const read = (field: string) => Number((document.getElementById(`figure-${field}`).textContent ?? "").replace(/[^0-9]/g, ""));
    return { misses: read("misses"), hits: read("hits") };
  });

/**
 * Refreshes the overview until it shows `expected` (counters only grow, and nothing else calls the
 * server meanwhile), then returns what it shows. The deadline only turns figures that never come into
 * a failure that shows them.
 */
async function untilCounters(expected: { misses: number; hits: number }): Promise<{ misses: number; hits: number }> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    await refreshOverview();
    const shown = await shownCounters();
    if ((shown.misses >= expected.misses && shown.hits >= expected.hits) || Date.now() > deadline) return shown;
    await page.waitForTimeout(250);
  }
}

/** The cache counters from the admin API (the truth the page must show). */
async function apiCounters(): Promise<{ misses: number; hits: number }> {
  const { body } = await api("GET", "/admin/cache", { token: adminToken });
  const side = body as Record<"encrypt" | "decrypt", { hits: number; misses: number }>;
  return { misses: side.encrypt.misses + side.decrypt.misses, hits: side.encrypt.hits + side.decrypt.hits };
}

/** Searches the tenants table for the tenant and waits for its row. */
async function findTenant(): Promise<void> {
  await page.getByLabel("Search tenant or key id").fill(TENANT);
  const answered = page.waitForResponse((r) => r.url().includes("/admin/tenants?"));
  await page.getByRole("button", { name: "Search", exact: true }).click();
  await answered;
  await page.locator(`[data-tenant="${TENANT}"]`).waitFor();
}

beforeAll(async () => {
  ensureChromium();
  tmp = harness.setUp();
  mkdirSync(ARTIFACTS, { recursive: true });
  emulator = new AwsKmsEmulator();
  await emulator.start();
  emulator.createKey({ alias: "alias/tenants" });
  await startServer({
    KMS_CONFIG_FILE: writeAwsKmsConfig(join(tmp, "kms.json"), emulator, "alias/tenants", { resilience: FAIL_FAST_RESILIENCE }),
    // No token configured: the server generates one per demo tenant (10,000 of them) and the admin's.
    KMS_DEMO_TENANTS: Array.from({ length: TENANT_COUNT }, (_, i) => tenantId(i)).join(","),
    KMS_EVIDENCE_FILE: join(tmp, "evidence.jsonl"),
    KMS_EVIDENCE_HMAC_KEY: HMAC_KEY,
  });
  context = await chromium.launchPersistentContext(join(tmp, "chromium-profile"), {
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    viewport: { width: 1280, height: 800 },
    acceptDownloads: true,
  });
  page = context.pages()[0] ?? (await context.newPage());
  page.on("console", (message) => {
    if (message.type() === "error") problems.push(`console error: ${message.text()}`);
  });
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
}, 60_000);

afterEach(() => {
  const seen = problems;
  problems = [];
  expect(seen).toEqual([]);
});

afterAll(async () => {
  await context?.close();
  await harness.tearDown();
  await emulator?.stop();
});

describe("the admin console in Chromium", () => {
  it("signs in with the admin credential into an HttpOnly, SameSite=Strict session cookie", async () => {
    await page.goto(`${url}/admin/console`);
    await page.getByRole("heading", { name: "Sign in" }).waitFor();
    await screenshot("signin");
    await page.getByLabel("Admin credential").fill(adminToken);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("heading", { name: "Overview", level: 1 }).waitFor();
    await page.locator('[data-provider="aws-kms"] [data-field="status"]', { hasText: "up" }).waitFor();

    const cookies = await context.cookies(`${url}/admin/console`);
    expect(cookies).toEqual([expect.objectContaining({ name: "kms_console_session", path: "/admin", httpOnly: true, secure: false, sameSite: "Strict" })]);
    // The credential is in no storage, URL or element of the page.
    const seen = await page.evaluate((token) => ({
      storage: window.localStorage.length + window.sessionStorage.length,
      inPage: document.documentElement.outerHTML.includes(token) || document.getElementById("signin-token").value.includes(token),
      url: window.location.href,
    }), adminToken);
    expect(seen).toEqual({ storage: 0, inPage: false, url: `${url}/admin/console` });
    await screenshot("overview");
  });

  it("shows the provider go down when the emulator fails, and come back", async () => {
    // Nothing is cached yet (no request was made), so the failing provider is `down`, not `degraded`.
    const restore = await emulator.outage();
    let restored = false;
    try {
      await untilProviderStatus("down");
      await expect(page.locator("#overview-ready").textContent()).resolves.toBe("Not ready: some tenants cannot be served.");
      await page.locator('[data-alert="KmsProviderDown"]').waitFor();
      await screenshot("overview-outage");
      await restore();
      restored = true;
      await untilProviderStatus("up");
      await expect(page.locator("#overview-ready").textContent()).resolves.toBe("Ready: every tenant can be served.");
      await expect(page.locator('[data-alert="KmsProviderDown"]').count()).resolves.toBe(0);
    } finally {
      if (!restored) await restore();
    }
  }, 60_000);

  it("flushes a tenant's cache: the next request misses", async () => {
    expect((await encrypt()).status).toBe(200); // loads the data key
    const { misses, hits } = await apiCounters();
    expect(await untilCounters({ misses, hits })).toEqual({ misses, hits });
    expect((await encrypt()).status).toBe(200); // served from the cache
    expect(await untilCounters({ misses, hits: hits + 1 })).toEqual({ misses, hits: hits + 1 });

    await go("Tenants and keys");
    await findTenant();
    await page.getByRole("button", { name: `Flush the cache of ${TENANT}` }).click();
    await page.locator("#tenants-message", { hasText: `Flushed the cached data keys of ${TENANT}` }).waitFor();

    expect((await encrypt()).status).toBe(200);
    await go("Overview");
    expect(await untilCounters({ misses: misses + 1, hits: hits + 1 })).toEqual({ misses: misses + 1, hits: hits + 1 });
    expect(await apiCounters()).toEqual({ misses: misses + 1, hits: hits + 1 });
  });

  it("lists 10,000 tenants a page at a time, and rotates a key (with confirmation): its version changes", async () => {
    await go("Tenants and keys");
    await page.getByLabel("Search tenant or key id").fill("");
    await page.getByRole("button", { name: "Search", exact: true }).click();
    await page.locator("#tenants-range", { hasText: "1–25 of 10,000" }).waitFor();
    await expect(page.locator("#tenants-table tbody tr").count()).resolves.toBe(25);
    await page.getByRole("button", { name: "Next page" }).click();
    await page.locator("#tenants-range", { hasText: "26–50 of 10,000" }).waitFor();
    await expect(page.locator("#tenants-table tbody tr").first().getAttribute("data-tenant")).resolves.toBe(tenantId(25));

    await findTenant();
    const version = page.locator(`[data-tenant="${TENANT}"] [data-field="version"]`);
    const before = (await version.textContent())!;
    expect(before).toMatch(/^\S+$/);
    await page.getByRole("button", { name: `Rotate the key of ${TENANT} now` }).click();
    await page.getByRole("dialog", { name: "Rotate key now?" }).waitFor();
    await screenshot("rotate-confirm");
    // Cancelling rotates nothing.
    await page.getByRole("button", { name: "Cancel" }).click();
    await expect(version.textContent()).resolves.toBe(before);

    await page.getByRole("button", { name: `Rotate the key of ${TENANT} now` }).click();
    await page.getByRole("button", { name: "Rotate", exact: true }).click();
    await page.locator("#tenants-message", { hasText: "Rotated aws-kms:alias/tenants" }).waitFor({ timeout: 20_000 });
    await version.filter({ hasNotText: before }).waitFor();
    const after = (await version.textContent())!;
    const status = await api("GET", `/admin/tenants/${TENANT}/rotation`, { token: adminToken });
    expect({ before: before !== after, after }).toEqual({ before: true, after: status.body.currentVersion });
    await screenshot("tenants");
  }, 40_000);

  it("runs validation with one permission removed: exactly that one fails, with its fix and docs link", async () => {
    const { accessKeyId } = emulator.clientConfig().credentials;
    emulator.setAllowedActions(accessKeyId, RUNTIME_PERMISSIONS.filter((p) => p !== REMOVED));
    try {
      await go("Validation");
      await page.getByRole("button", { name: "Run validation" }).click();
      await page.locator("#validation-summary", { hasText: "checks failed" }).waitFor();
      await expect(page.locator("#validation-summary").textContent()).resolves.toBe(`1 of ${RUNTIME_PERMISSIONS.length} checks failed.`);
      const failed = page.locator('tr[data-ok="false"]');
      await expect(failed.count()).resolves.toBe(1);
      await expect(failed.getAttribute("data-permission")).resolves.toBe(REMOVED);
      await expect(failed.locator("td").nth(1).textContent()).resolves.toMatch(/\S/);
      await expect(failed.getByRole("link", { name: "How to fix" }).getAttribute("href")).resolves.toMatch(/^https:\/\//);
      await expect(page.locator('tr[data-ok="true"]').count()).resolves.toBe(RUNTIME_PERMISSIONS.length - 1);
      await screenshot("validation");
    } finally {
      emulator.setAllowedActions(accessKeyId, "*");
    }
  });

  it("downloads an evidence export that verifies, and shows the first bad record of a tampered one", async () => {
    await go("Evidence");
    const downloading = page.waitForEvent("download");
    await page.getByRole("button", { name: "Download export" }).click();
    const download = await downloading;
    const text = readFileSync((await download.path())!, "utf8");
    const exported = JSON.parse(text) as { manifest: EvidenceManifest; content: string };
    expect(exported.manifest.signature).toEqual(expect.any(String));
    // Offline, with the log's key: the file as downloaded is intact.
    expect(await verifyExport(exported.content, exported.manifest, { hmacKey: Buffer.from(HMAC_KEY) })).toMatchObject({ ok: true, count: exported.manifest.count });
    const types = exported.content.split("\n").filter((l) => l !== "").map((l) => (JSON.parse(l) as { type: string }).type);
    expect(types).toEqual(expect.arrayContaining(["config.loaded", "key.rotated", "permissions.validated"]));

    await page.getByLabel("Export downloaded here (.json)").setInputFiles({ name: download.suggestedFilename(), mimeType: "application/json", buffer: Buffer.from(text) });
    await page.getByRole("button", { name: "Verify" }).click();
    await expect(page.locator('[data-verdict="ok"]').textContent()).resolves.toBe(`Verified: ${exported.manifest.count.toLocaleString("en-US")} records, intact.`);

    // Tamper with the rotation record: the key version it names.
    const lines = exported.content.split("\n");
    const index = lines.findIndex((l) => l.includes('"type":"key.rotated"'));
    const record = JSON.parse(lines[index]!) as { keyVersion: string; seq: number };
    lines[index] = lines[index]!.replace(`"keyVersion":"${record.keyVersion}"`, '"keyVersion":"forged"');
    const tampered = JSON.stringify({ ...exported, content: lines.join("\n") });
    await page.getByLabel("Export downloaded here (.json)").setInputFiles({ name: "tampered.json", mimeType: "application/json", buffer: Buffer.from(tampered) });
    await page.getByRole("button", { name: "Verify" }).click();
    const verdict = page.locator('[data-verdict="bad"]');
    await verdict.waitFor();
    await expect(verdict.textContent()).resolves.toMatch(new RegExp(`^Verification failed: \\w+ at record ${index + 1} \\(seq ${record.seq}\\)\\.$`));
    const shown = JSON.parse((await page.locator('[data-field="record"]').textContent())!) as Record<string, unknown>;
    expect(shown).toMatchObject({ seq: record.seq, type: "key.rotated", keyVersion: "forged" });
    await screenshot("evidence", true);
  });

  it("the setup wizard asks kms init's questions and produces a checked file to download", async () => {
    await go("Setup");
    await page.getByLabel("Provider").selectOption("aws-kms");
    await expect(page.getByLabel("Local key store file (development only)").isVisible()).resolves.toBe(false);
    await page.getByLabel("Key id of the default tenant key").fill("alias/app");
    await page.getByLabel("AWS region").fill("nowhere");
    await page.getByRole("button", { name: "Check configuration" }).click();
    await page.locator("#setup-region-issue", { hasText: "must be an AWS region" }).waitFor();
    await expect(page.evaluate(() => document.activeElement?.id)).resolves.toBe("setup-region");

    await page.getByLabel("AWS region").fill("eu-west-1");
    await page.getByLabel("File name (.json, or .yaml / .yml for YAML)").fill("kms.config.yaml");
    await page.getByRole("button", { name: "Check configuration" }).click();
    await page.locator('[data-verdict="ok"]').waitFor();
    const preview = (await page.locator('[data-field="config"]').textContent())!;
    expect(preview).toBe(
      'providers:\n  aws-kms:\n    region: "eu-west-1"\ntenants:\n  defaultKey:\n    provider: "aws-kms"\n    keyId: "alias/app"\nrotation:\n  cryptoperiodDays: 90\n',
    );
    await screenshot("setup");
    const downloading = page.waitForEvent("download");
    await page.getByRole("button", { name: "Download kms.config.yaml" }).click();
    const download = await downloading;
    expect(download.suggestedFilename()).toBe("kms.config.yaml");
    expect(readFileSync((await download.path())!, "utf8")).toBe(preview);
  });

  it("is readable at phone width (390 px): no page-wide horizontal scrolling", async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    try {
      for (const [section, name] of [["Overview", "overview-phone"], ["Tenants and keys", "tenants-phone"]] as const) {
        await go(section);
        if (section === "Tenants and keys") await findTenant();
        await screenshot(name);
      }
    } finally {
      await page.setViewportSize({ width: 1280, height: 800 });
    }
  });

  it("signs out: the page forgets the session and the old cookie and CSRF token are refused", async () => {
    await go("Overview");
    const [cookie] = await context.cookies(`${url}/admin/console`);
    const csrf = await page.evaluate(async () => ((await (await fetch("/admin/console/session")).json()) as { csrfToken: string }).csrfToken);
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.getByRole("heading", { name: "Sign in" }).waitFor();
    await expect(page.locator("#signin-error").textContent()).resolves.toBe("You are signed out.");
    expect(await context.cookies(`${url}/admin/console`)).toEqual([]);
    const old = `${cookie!.name}=${cookie!.value}`;
    for (const [method, path] of [["GET", "/admin/cache"], ["GET", "/admin/tenants"], ["POST", "/admin/validate-kms"], ["DELETE", `/admin/tenants/${TENANT}/cache`]] as const) {
      const res = await api(method, path, { cookie: old, csrf });
      expect({ path, status: res.status, code: (res.body.error as { code: string }).code }).toEqual({ path, status: 401, code: "UNAUTHENTICATED" });
    }
    // Navigating inside the page does not bring anything back.
    await page.goto(`${url}/admin/console#tenants`);
    await page.getByRole("heading", { name: "Sign in" }).waitFor();
    await expect(page.locator("#view-tenants").isVisible()).resolves.toBe(false);
  });

  it("can be used with the keyboard alone: sign in, move between sections, act", async () => {
    await page.goto(`${url}/admin/console`);
    await page.getByRole("heading", { name: "Sign in" }).waitFor();
    // Skip link first, then the credential field.
    await page.keyboard.press("Tab");
    await expect(page.evaluate(() => document.activeElement?.textContent)).resolves.toBe("Skip to content");
    await page.keyboard.press("Tab");
    await expect(page.evaluate(() => document.activeElement?.id)).resolves.toBe("signin-token");
    await page.keyboard.type(adminToken);
    await page.keyboard.press("Enter");
    await page.getByRole("heading", { name: "Overview", level: 1 }).waitFor();
    // Focus is on the page's main area: back through the header (Sign out, Setup, …) to "Tenants and keys", opened with Enter.
    for (let i = 0; i < 10; i++) {
      await page.keyboard.press("Shift+Tab");
      if ((await page.evaluate(() => document.activeElement?.textContent)) === "Tenants and keys") break;
    }
    await expect(page.evaluate(() => document.activeElement?.textContent)).resolves.toBe("Tenants and keys");
    await expect(page.evaluate(() => getComputedStyle(document.activeElement!).outlineStyle)).resolves.toBe("solid");
    await page.keyboard.press("Enter");
    await page.getByRole("heading", { name: "Tenants and keys", level: 1 }).waitFor();
    await page.getByLabel("Search tenant or key id").focus();
    await page.keyboard.type(TENANT);
    await page.keyboard.press("Enter");
    await page.locator(`[data-tenant="${TENANT}"]`).waitFor();
    await page.locator("#tenants-range", { hasText: "1–1 of 1" }).waitFor();
    // The row's actions are buttons in the tab order; the dialog opens with the confirmation focused and Escape closes it.
    await page.getByRole("button", { name: `Rotate the key of ${TENANT} now` }).focus();
    await page.keyboard.press("Enter");
    await page.getByRole("dialog", { name: "Rotate key now?" }).waitFor();
    await expect(page.evaluate(() => document.activeElement?.id)).resolves.toBe("rotate-confirm");
    await page.keyboard.press("Escape");
    await expect(page.getByRole("dialog").count()).resolves.toBe(0);
  });
});
