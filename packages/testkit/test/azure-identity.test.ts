import { afterAll, beforeAll, beforeEach, describe, expect, it } from "@jest/globals";
import { APP_SERVICE_IDENTITY_API_VERSION, AppServiceManagedIdentityEndpoint } from "../src/emulators/azure-identity";
import { AzureKeyVaultEmulator } from "../src/emulators/azure";

const NOW = Date.now();
const emulator = new AzureKeyVaultEmulator();
const endpoint = new AppServiceManagedIdentityEndpoint({ getToken: async () => ({ token: "kv-emulator.svc", expiresOnTimestamp: NOW + 3_600_500 }) });
const RESOURCE = "https://vault.azure.net";

/** The request MSAL sends (App Service, API 2019-08-01), with what the test changes. */
function get(query: Record<string, string> = {}, header?: string | null, path = ""): Promise<Response> {
  const { IDENTITY_ENDPOINT, IDENTITY_HEADER } = endpoint.env();
  const params = new URLSearchParams({ "api-version": APP_SERVICE_IDENTITY_API_VERSION, resource: RESOURCE, ...query });
  const headers: Record<string, string> = header === null ? {} : { "X-IDENTITY-HEADER": header ?? IDENTITY_HEADER };
  return fetch(`${IDENTITY_ENDPOINT}${path}?${params}`, { headers });
}

beforeAll(async () => {
  await endpoint.start();
});

afterAll(async () => {
  await endpoint.stop();
});

beforeEach(() => endpoint.resetLog());

describe("AppServiceManagedIdentityEndpoint", () => {
  it("env() names a loopback HTTP endpoint and a random secret of 48 hex digits", () => {
    const env = endpoint.env();
    expect(env.IDENTITY_ENDPOINT).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/msi\/token$/);
    expect(env.IDENTITY_HEADER).toMatch(/^[0-9a-f]{48}$/);
  });

  it("issues the credential's token as App Service does, and logs the resource and status only", async () => {
    const res = await get();
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/json");
    expect(await res.json()).toEqual({
      access_token: "kv-emulator.svc",
      expires_on: String(Math.floor((NOW + 3_600_500) / 1000)),
      resource: RESOURCE,
      token_type: "Bearer",
      client_id: "00000000-0000-0000-0000-000000000000",
    });
    expect(endpoint.requests).toEqual([{ resource: RESOURCE, status: 200 }]);
  });

  it("asks the credential for the resource's .default scope", async () => {
    const scopes: unknown[] = [];
    const other = new AppServiceManagedIdentityEndpoint({ getToken: async (s) => (scopes.push(s), { token: "t", expiresOnTimestamp: NOW }) });
    await other.start();
    try {
      const { IDENTITY_ENDPOINT, IDENTITY_HEADER } = other.env();
      const res = await fetch(`${IDENTITY_ENDPOINT}?api-version=2019-08-01&resource=${encodeURIComponent("https://managedhsm.azure.net")}`, { headers: { "x-identity-header": IDENTITY_HEADER } });
      expect(res.status).toBe(200);
      expect(scopes).toEqual(["https://managedhsm.azure.net/.default"]);
    } finally {
      await other.stop();
    }
  });

  it("refuses a missing or wrong header (401), another API version, no resource, a user-assigned identity (400), another path (404)", async () => {
    const cases: [Promise<Response>, number, string, string][] = [
      [get({}, null), 401, "unauthorized_client", "the X-IDENTITY-HEADER header is missing or wrong"],
      [get({}, "0".repeat(48)), 401, "unauthorized_client", "the X-IDENTITY-HEADER header is missing or wrong"],
      [get({}, "short"), 401, "unauthorized_client", "the X-IDENTITY-HEADER header is missing or wrong"],
      [get({ "api-version": "2017-09-01" }), 400, "invalid_request", "api-version must be 2019-08-01"],
      [get({ resource: "" }), 400, "invalid_request", "the resource parameter is required"],
      [get({ client_id: "11111111-1111-1111-1111-111111111111" }), 400, "invalid_request", "this endpoint serves the system-assigned identity only"],
      [get({ mi_res_id: "/subscriptions/x" }), 400, "invalid_request", "this endpoint serves the system-assigned identity only"],
      [get({ object_id: "11111111-1111-1111-1111-111111111111" }), 400, "invalid_request", "this endpoint serves the system-assigned identity only"],
      [get({}, undefined, "/other"), 404, "not_found", "only GET /msi/token is served"],
    ];
    for (const [pending, status, error, description] of cases) {
      const res = await pending;
      expect({ status: res.status, body: await res.json() }).toEqual({ status, body: { error, error_description: description } });
    }
    expect(endpoint.requests.map((r) => r.status)).toEqual([401, 401, 401, 400, 400, 400, 400, 400, 404]);
    expect(endpoint.requests[4]).toEqual({ resource: undefined, status: 400 });
    expect(JSON.stringify(endpoint.requests)).not.toContain(endpoint.env().IDENTITY_HEADER);
  });

  it("a credential without a token: 500 server_error", async () => {
    const none = new AppServiceManagedIdentityEndpoint({ getToken: async () => null });
    await none.start();
    try {
      const { IDENTITY_ENDPOINT, IDENTITY_HEADER } = none.env();
      const res = await fetch(`${IDENTITY_ENDPOINT}?api-version=2019-08-01&resource=x`, { headers: { "x-identity-header": IDENTITY_HEADER } });
      expect({ status: res.status, body: await res.json() }).toEqual({ status: 500, body: { error: "server_error", error_description: "the identity has no token" } });
    } finally {
      await none.stop();
    }
  });

  it("serves the Key Vault emulator's tokens; a new secret on each start; env() before start throws", async () => {
    await emulator.start();
    const forEmulator = new AppServiceManagedIdentityEndpoint(emulator.credential("svc"));
    expect(() => forEmulator.env()).toThrow("managed identity endpoint: not started");
    expect(() => new AppServiceManagedIdentityEndpoint({} as never)).toThrow("source must have getToken (a TokenCredential)");
    await forEmulator.start();
    const first = forEmulator.env().IDENTITY_HEADER;
    const res = await fetch(`${forEmulator.env().IDENTITY_ENDPOINT}?api-version=2019-08-01&resource=${encodeURIComponent(RESOURCE)}`, { headers: { "x-identity-header": first } });
    expect(((await res.json()) as { access_token: string }).access_token).toBe("kv-emulator.svc");
    await forEmulator.stop();
    await forEmulator.start();
    expect(forEmulator.env().IDENTITY_HEADER).not.toBe(first);
    await forEmulator.stop();
    await emulator.stop();
  });
});
