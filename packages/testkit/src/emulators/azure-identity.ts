/**
 * The token endpoint of Azure App Service's managed identity, on 127.0.0.1: what lets
 * `DefaultAzureCredential` (`@azure/identity` 4.x, through its `ManagedIdentityCredential`) get tokens
 * for the Key Vault emulator in a process the test does not control, such as a CLI or a server run
 * as a child. Give the child `env()` (`IDENTITY_ENDPOINT`, `IDENTITY_HEADER`) and it authenticates as
 * the identity of the credential the endpoint was made with (`emulator.credential(identity)`).
 *
 * The protocol (API version 2019-08-01), as `@azure/msal-node` 3.8 speaks it for `@azure/identity`
 * 4.13: `GET <IDENTITY_ENDPOINT>?api-version=2019-08-01&resource=<scope without /.default>` with the
 * header `X-IDENTITY-HEADER: <IDENTITY_HEADER>`; the answer is JSON `{ access_token, expires_on
 * (epoch seconds, a string), resource, token_type: "Bearer", client_id }`. Plain HTTP, as App
 * Service's own endpoint (`http://localhost:<port>/msi/token`): the token never leaves the loopback
 * interface. The header is a random secret made at `start()`; a request without it, with another
 * value, with another API version, no resource, or naming a user-assigned identity (`client_id`,
 * `object_id`, `mi_res_id`: only the system-assigned one is served) is refused (`400`/`401`, with
 * MSAL's `{ error, error_description }`) and logged. The log holds the resource and the status,
 * never a token or the secret.
 */
import { randomBytes, timingSafeEqual } from "node:crypto";
import { type Server, createServer } from "node:http";

/** The App Service managed identity API version this endpoint serves (the one MSAL sends). */
export const APP_SERVICE_IDENTITY_API_VERSION = "2019-08-01";
const PATH = "/msi/token";
const USER_ASSIGNED = ["client_id", "object_id", "mi_res_id", "principal_id"];

/** The credential whose tokens the endpoint hands out (structurally `@azure/core-auth`'s TokenCredential). */
export interface IdentitySource {
  getToken(scopes: string | string[], options?: unknown): Promise<{ token: string; expiresOnTimestamp: number } | null>;
}

/** One request to the endpoint: the resource asked for (undefined when absent) and the status answered. */
export interface IdentityTokenRequest {
  readonly resource: string | undefined;
  readonly status: number;
}

/** An App Service managed identity endpoint on 127.0.0.1 that issues the tokens of one credential. See the module comment. */
export class AppServiceManagedIdentityEndpoint {
  readonly #source: IdentitySource;
  readonly #log: IdentityTokenRequest[] = [];
  #server: Server | undefined;
  #url: string | undefined;
  #secret: Buffer | undefined;

  /** `source`: usually `azureKeyVaultEmulator.credential(identity)`. */
  constructor(source: IdentitySource) {
    if (typeof source?.getToken !== "function") throw new TypeError("source must have getToken (a TokenCredential)");
    this.#source = source;
  }

  /** Starts listening on 127.0.0.1 (a free port) with a new secret; returns `IDENTITY_ENDPOINT`. */
  async start(): Promise<string> {
    if (this.#url !== undefined) return this.#url;
    this.#secret = randomBytes(24);
    const server = createServer((req, res) => {
      void this.#answer(req.method ?? "", req.url ?? "", req.headers["x-identity-header"]).then(({ status, resource, body }) => {
        this.#log.push({ resource, status });
        res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    this.#server = server;
    this.#url = `http://127.0.0.1:${(server.address() as { port: number }).port}${PATH}`;
    return this.#url;
  }

  /** Stops listening and drops every connection. */
  async stop(): Promise<void> {
    const server = this.#server;
    if (server === undefined) return;
    this.#server = undefined;
    this.#url = undefined;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** The environment of a process that should authenticate through this endpoint; after `start()`. */
  env(): { IDENTITY_ENDPOINT: string; IDENTITY_HEADER: string } {
    if (this.#url === undefined || this.#secret === undefined) throw new Error("managed identity endpoint: not started");
    return { IDENTITY_ENDPOINT: this.#url, IDENTITY_HEADER: this.#secret.toString("hex") };
  }

  /** Every request so far, oldest first. */
  get requests(): readonly IdentityTokenRequest[] {
    return [...this.#log];
  }

  resetLog(): void {
    this.#log.length = 0;
  }

  async #answer(method: string, rawUrl: string, header: string | string[] | undefined): Promise<{ status: number; resource: string | undefined; body: Record<string, unknown> }> {
    const url = new URL(rawUrl, "http://127.0.0.1");
    const query = url.searchParams;
    const resource = query.get("resource") || undefined;
    const refuse = (status: number, error: string, description: string) => ({ status, resource, body: { error, error_description: description } });
    if (method !== "GET" || url.pathname !== PATH) return refuse(404, "not_found", `only GET ${PATH} is served`);
    if (!this.#secretMatches(header)) return refuse(401, "unauthorized_client", "the X-IDENTITY-HEADER header is missing or wrong");
    if (query.get("api-version") !== APP_SERVICE_IDENTITY_API_VERSION) return refuse(400, "invalid_request", `api-version must be ${APP_SERVICE_IDENTITY_API_VERSION}`);
    if (resource === undefined) return refuse(400, "invalid_request", "the resource parameter is required");
    if (USER_ASSIGNED.some((p) => query.has(p))) return refuse(400, "invalid_request", "this endpoint serves the system-assigned identity only");
    let token: Awaited<ReturnType<IdentitySource["getToken"]>>;
    try {
      token = await this.#source.getToken(`${resource}/.default`);
    } catch {
      token = null;
    }
    if (token === null) return refuse(500, "server_error", "the identity has no token");
    const expiresOn = String(Math.floor(token.expiresOnTimestamp / 1000));
    return { status: 200, resource, body: { access_token: token.token, expires_on: expiresOn, resource, token_type: "Bearer", client_id: "00000000-0000-0000-0000-000000000000" } };
  }

  #secretMatches(header: string | string[] | undefined): boolean {
    const secret = this.#secret;
    if (typeof header !== "string" || secret === undefined) return false;
    const given = Buffer.from(header, "utf8");
    const expected = Buffer.from(secret.toString("hex"), "utf8");
    return given.length === expected.length && timingSafeEqual(given, expected);
  }
}
