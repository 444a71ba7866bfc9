/**
 * The emulator framework: what every wire emulator in this package shares. An emulator is a real
 * server on 127.0.0.1 (an ephemeral port unless one is given) that speaks one KMS's wire protocol, so
 * an adapter is tested through its official SDK end to end. It is HTTP (or HTTPS) unless a protocol
 * brings its own transport (`createTransport`: the Cloud KMS emulator serves gRPC); the pipeline
 * below is the same for every transport. This file owns:
 *
 * - the server's life cycle: `start()` / `stop()`, and `outage()`, which stops listening on the same
 *   port (clients get connection refused) until the returned function restores it;
 * - the request log: one entry per request that reached the server, named by the protocol's own
 *   operation names, so tests assert exact call counts (`emulator.count("Decrypt")`);
 * - fault injection, per operation (or `"*"`) and optionally per key: added latency, throttling, a
 *   5xx, a dropped connection, access denied, key disabled, key not found; for N requests or until
 *   cleared. The protocol renders each fault as its service's own error;
 * - in-memory symmetric keys with versions (`EmulatedKey`), sealing with AES-256-GCM.
 *
 * A protocol subclass implements `route` (which operation a request is, and for which key),
 * `authenticate`, `faultResponse` and `handle`. It never logs request bodies: they hold plaintext.
 *
 * Pipeline, per request: transport refusal (a body too large) → `route` → `authenticate` → faults
 * (latency, then one decisive fault) → `handle` → request log. `pending` counts requests inside it.
 */
import { createCipheriv, createDecipheriv, randomBytes, randomUUID } from "node:crypto";
import { type IncomingMessage, type Server, type ServerResponse, createServer } from "node:http";
import { createServer as createTlsServer } from "node:https";
import type { AddressInfo } from "node:net";

/** A fault to inject. Each protocol answers it as its service does (see its emulator's docs). */
export type Fault =
  /** Delay the request by `ms`, then answer it normally (or with the next matching fault). */
  | { readonly kind: "latency"; readonly ms: number }
  /** The service's throttling error (HTTP 400 `ThrottlingException` on AWS, 429 on Vault). */
  | { readonly kind: "throttle" }
  /** The service's internal error, with this status (default 500). */
  | { readonly kind: "serverError"; readonly status?: number }
  /** Close the connection without answering: the client sees a reset ("socket hang up"). */
  | { readonly kind: "connectionReset" }
  /** The service's access-denied error for this operation. */
  | { readonly kind: "accessDenied" }
  /** The service's "key is disabled" error. */
  | { readonly kind: "keyDisabled" }
  /** The service's "key not found" error. */
  | { readonly kind: "keyNotFound" };

export type FaultKind = Fault["kind"];

export interface InjectOptions {
  /** How many matching requests the fault applies to; default: every one until cleared. */
  readonly times?: number;
  /** Only requests for this key (as the request names it: an id, alias or name). */
  readonly keyId?: string;
}

/** A fault in force. */
export interface InjectedFault {
  readonly operation: string;
  readonly fault: Fault;
  /** Requests it has applied to so far. */
  readonly hits: number;
  /** Requests it will still apply to (Infinity until cleared). */
  readonly remaining: number;
  clear(): void;
}

/** One request that reached the emulator. Never holds a body: bodies carry plaintext. */
export interface LoggedRequest {
  /** The protocol's operation name (`GenerateDataKey`, `transit/encrypt`…), or `"unknown"`. */
  readonly operation: string;
  /** The key the request named, when it named one. */
  readonly keyId?: string;
  /** The HTTP status answered (0 when the connection was dropped). */
  readonly status: number;
  /** The injected fault that decided the answer, if one did (latency included). */
  readonly fault?: FaultKind;
  /** Who the request authenticated as (an access key id, a token's name), when known. */
  readonly identity?: string;
  /** Protocol-specific facts worth asserting on (the Vault namespace header, for one). */
  readonly details?: Readonly<Record<string, string>>;
}

/**
 * What a protocol says a request is. `state` is the protocol's own parse of the request (its body, its
 * route), made once in `route` and handed back to `authenticate`, `faultResponse` and `handle`; it
 * never reaches the request log.
 */
export interface RoutedRequest<S = unknown> {
  readonly operation: string;
  readonly keyId?: string;
  readonly details?: Readonly<Record<string, string>>;
  readonly state?: S;
}

/** A request as handed to the protocol: headers, raw body, and the parsed URL. */
export interface EmulatorRequest {
  readonly method: string;
  readonly url: URL;
  readonly headers: IncomingMessage["headers"];
  readonly body: Buffer;
}

export interface EmulatorResponse {
  readonly status: number;
  readonly headers?: Readonly<Record<string, string>>;
  /** Serialized as JSON unless it is a Buffer or a string; omitted for undefined. */
  readonly body?: unknown;
}

/** The answer to a failed authentication, or the identity it established. */
export type AuthResult = { readonly ok: true; readonly identity?: string } | { readonly ok: false; readonly response: EmulatorResponse; readonly identity?: string };

/** Thrown by a protocol's handler to answer with an error response. */
export class EmulatorReply extends Error {
  constructor(readonly response: EmulatorResponse) {
    super(`emulator reply ${response.status}`);
    this.name = "EmulatorReply";
  }
}

/**
 * One request as a transport hands it to the pipeline, and the ways back to its client. A transport
 * maps `EmulatorResponse` onto its wire (HTTP: status, headers, body; gRPC: message or status).
 */
export interface TransportExchange {
  readonly request: EmulatorRequest;
  /** The transport's own refusal, answered without routing (HTTP: a body over the limit → 413). */
  readonly refused?: EmulatorResponse;
  /** True once the client can no longer be answered (it hung up or cancelled). */
  gone(): boolean;
  /** Drops the connection without an answer (the `connectionReset` fault). */
  drop(): void;
  reply(response: EmulatorResponse): void;
}

/** Where an emulator listens: HTTP(S) by default; a protocol may bring another (`createTransport`). */
export interface EmulatorTransport {
  /** Listens on 127.0.0.1:`port` (0: ephemeral), feeding each request to `serve`; resolves with the port. */
  listen(port: number, serve: (exchange: TransportExchange) => Promise<void>): Promise<number>;
  /** Stops listening and drops every connection (requests in flight included). */
  close(): Promise<void>;
}

/** A certificate and its private key, PEM. */
export interface TlsMaterial {
  readonly cert: string | Buffer;
  readonly key: string | Buffer;
}

export interface EmulatorOptions {
  /** Port on 127.0.0.1; default 0 (an ephemeral port). */
  readonly port?: number;
  /** Time source for key timestamps; default the system clock. */
  readonly now?: () => Date;
  /** Largest request body accepted, in bytes; default 1 MiB. */
  readonly maxBodyBytes?: number;
  /**
   * Serve HTTPS with this certificate and private key (PEM) instead of plain HTTP. The client trusts
   * the certificate per client (a `ca` option), never by switching verification off.
   */
  readonly tls?: TlsMaterial | (() => Promise<TlsMaterial>);
}

const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;

interface ActiveFault {
  readonly operation: string;
  readonly fault: Fault;
  readonly keyId: string | undefined;
  hits: number;
  remaining: number;
}

/** The common server: life cycle, request log, faults. Protocols extend it; `S` is their per-request state. */
export abstract class Emulator<S = unknown> {
  readonly #options: EmulatorOptions;
  readonly #log: LoggedRequest[] = [];
  #faults: ActiveFault[] = [];
  readonly #transport: EmulatorTransport;
  #listening = false;
  #port = 0;
  #down = false;
  #pending = 0;
  /** Latency timers still pending, released early by `stop()`. */
  readonly #sleeping = new Set<() => void>();
  protected readonly now: () => Date;

  protected constructor(options: EmulatorOptions = {}) {
    this.#options = options;
    this.now = options.now ?? (() => new Date());
    this.#transport = this.createTransport(options);
  }

  /** Short protocol name, for messages (`aws-kms`, `vault`). */
  protected abstract readonly protocol: string;
  /** Which operation a request is; throw an `EmulatorReply` for a request the service would refuse before routing. */
  protected abstract route(req: EmulatorRequest): RoutedRequest<S>;
  /** Checks the request's credentials; runs before faults, as the service checks them first. */
  protected abstract authenticate(req: EmulatorRequest, routed: RoutedRequest<S>): AuthResult;
  /**
   * The service's own answer to an injected fault (never `latency` or `connectionReset`), for the
   * identity `authenticate` established (an access-denied answer names it).
   */
  protected abstract faultResponse(
    fault: Exclude<FaultKind, "latency" | "connectionReset">,
    routed: RoutedRequest<S>,
    status: number,
    identity: string | undefined,
  ): EmulatorResponse;
  /** Serves an authenticated, unfaulted request. Throw an `EmulatorReply` for an error answer. */
  protected abstract handle(req: EmulatorRequest, routed: RoutedRequest<S>, identity: string | undefined): EmulatorResponse | Promise<EmulatorResponse>;
  /** Headers every response carries (a request id, for one). */
  protected responseHeaders(): Record<string, string> {
    return {};
  }

  /**
   * The transport requests arrive by; default HTTP, or HTTPS with `options.tls`. Called once, from
   * the constructor (before a subclass's own fields are set: use only `options`).
   */
  protected createTransport(options: EmulatorOptions): EmulatorTransport {
    return new HttpTransport(options);
  }

  /** Starts listening on 127.0.0.1 and returns the base URL (`http://127.0.0.1:<port>`, `https://` with `tls`). */
  async start(): Promise<string> {
    if (this.#listening) return this.url;
    await this.#listen(this.#options.port ?? 0);
    return this.url;
  }

  /** Stops the server, drops every connection, releases pending latency; idempotent. */
  async stop(): Promise<void> {
    this.#down = false;
    for (const wake of [...this.#sleeping]) wake();
    await this.#close();
  }

  /** The base URL; throws before `start()`. */
  get url(): string {
    if (this.#port === 0) throw new Error(`${this.protocol} emulator: not started`);
    return `${this.#options.tls === undefined ? "http" : "https"}://127.0.0.1:${this.#port}`;
  }

  get port(): number {
    return this.#port;
  }

  /**
   * A whole-service outage: stops listening (clients get connection refused, and requests in
   * flight are dropped) until the returned function is called, which listens again on the same port.
   */
  async outage(): Promise<() => Promise<void>> {
    if (!this.#listening) throw new Error(`${this.protocol} emulator: not started`);
    this.#down = true;
    for (const wake of [...this.#sleeping]) wake();
    await this.#close();
    return async () => {
      if (!this.#down) return;
      this.#down = false;
      await this.#listen(this.#port);
    };
  }

  /**
   * Injects a fault for `operation` (the protocol's name for it, or `"*"` for every operation).
   * Faults apply in the order injected; a latency fault delays the request and lets the next
   * matching fault (or the normal answer) decide it.
   */
  inject(operation: string, fault: Fault, options: InjectOptions = {}): InjectedFault {
    const times = options.times ?? Infinity;
    if (!(times === Infinity || (Number.isInteger(times) && times > 0))) throw new RangeError("times must be a positive integer");
    if (fault.kind === "latency" && !(Number.isFinite(fault.ms) && fault.ms >= 0)) throw new RangeError("latency ms must be a finite number >= 0");
    const active: ActiveFault = { operation, fault, keyId: options.keyId, hits: 0, remaining: times };
    this.#faults.push(active);
    return {
      operation,
      fault,
      get hits() {
        return active.hits;
      },
      get remaining() {
        return active.remaining;
      },
      clear: () => {
        active.remaining = 0;
        this.#faults = this.#faults.filter((f) => f !== active);
      },
    };
  }

  /** Clears every injected fault. */
  clearFaults(): void {
    for (const f of this.#faults) f.remaining = 0;
    this.#faults = [];
  }

  /** Every request that reached the server since start (or the last `resetLog()`), in order. */
  get requests(): readonly LoggedRequest[] {
    return [...this.#log];
  }

  /** How many requests reached the server for `operation` (all operations when omitted). */
  count(operation?: string): number {
    return operation === undefined ? this.#log.length : this.#log.filter((r) => r.operation === operation).length;
  }

  /** Request counts by operation, e.g. `{ GenerateDataKey: 1, Decrypt: 2 }`. */
  counts(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const r of this.#log) out[r.operation] = (out[r.operation] ?? 0) + 1;
    return out;
  }

  resetLog(): void {
    this.#log.length = 0;
  }

  /** Requests received and not yet answered (held by a latency fault, for one). */
  get pending(): number {
    return this.#pending;
  }

  // --- internals ------------------------------------------------------------------------------

  async #listen(port: number): Promise<void> {
    this.#port = await this.#transport.listen(port, (exchange) => this.#serve(exchange));
    this.#listening = true;
  }

  async #close(): Promise<void> {
    if (!this.#listening) return;
    this.#listening = false;
    await this.#transport.close();
  }

  async #serve(exchange: TransportExchange): Promise<void> {
    this.#pending += 1;
    try {
      await this.#answer(exchange);
    } finally {
      this.#pending -= 1;
    }
  }

  /** The pipeline (see the module comment), whatever the transport. */
  async #answer(exchange: TransportExchange): Promise<void> {
    const reply = (response: EmulatorResponse) => {
      if (!exchange.gone()) exchange.reply({ ...response, headers: { ...this.responseHeaders(), ...response.headers } });
    };
    if (exchange.refused !== undefined) {
      this.#log.push({ operation: "unknown", status: exchange.refused.status });
      reply(exchange.refused);
      return;
    }
    const request = exchange.request;
    let routed: RoutedRequest<S> = { operation: "unknown" };
    let identity: string | undefined;
    let faultKind: FaultKind | undefined;
    const record = (status: number) =>
      this.#log.push({
        operation: routed.operation,
        ...(routed.keyId === undefined ? {} : { keyId: routed.keyId }),
        status,
        ...(faultKind === undefined ? {} : { fault: faultKind }),
        ...(identity === undefined ? {} : { identity }),
        ...(routed.details === undefined ? {} : { details: routed.details }),
      });
    const answer = (response: EmulatorResponse) => {
      record(response.status);
      reply(response);
    };
    try {
      routed = this.route(request);
      const auth = this.authenticate(request, routed);
      identity = auth.identity;
      if (!auth.ok) return answer(auth.response);
      for (const fault of this.#matchingFaults(routed)) {
        faultKind = fault.kind;
        if (fault.kind === "latency") {
          await this.#sleep(fault.ms);
          if (exchange.gone() || !this.#listening) {
            record(0);
            return;
          }
          continue;
        }
        if (fault.kind === "connectionReset") {
          record(0);
          exchange.drop();
          return;
        }
        return answer(this.faultResponse(fault.kind, routed, fault.kind === "serverError" ? (fault.status ?? 500) : 0, identity));
      }
      answer(await this.handle(request, routed, identity));
    } catch (error) {
      if (error instanceof EmulatorReply) return answer(error.response);
      answer({ status: 500, body: { message: `${this.protocol} emulator: internal error` } });
    }
  }

  /** The faults that apply to this request, consuming one use of each (latency first, in order, then one decisive fault). */
  #matchingFaults(routed: RoutedRequest): Fault[] {
    const out: Fault[] = [];
    for (const f of this.#faults) {
      if (f.remaining <= 0) continue;
      if (f.operation !== "*" && f.operation !== routed.operation) continue;
      if (f.keyId !== undefined && f.keyId !== routed.keyId) continue;
      f.hits += 1;
      f.remaining -= 1;
      out.push(f.fault);
      if (f.fault.kind !== "latency") break; // the first decisive fault answers
    }
    this.#faults = this.#faults.filter((f) => f.remaining > 0);
    return out;
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.#sleeping.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.#sleeping.add(wake);
    });
  }
}

/** The default transport: HTTP/1.1, or HTTPS with `options.tls`. */
class HttpTransport implements EmulatorTransport {
  readonly #options: EmulatorOptions;
  #server: Server | undefined;

  constructor(options: EmulatorOptions) {
    this.#options = options;
  }

  async listen(port: number, serve: (exchange: TransportExchange) => Promise<void>): Promise<number> {
    const onRequest = (req: IncomingMessage, res: ServerResponse) => void this.#exchange(req, res).then(serve);
    const given = this.#options.tls;
    // A function is called when listening (a certificate generated asynchronously, on first start).
    const tls = typeof given === "function" ? await given() : given;
    const server: Server = tls === undefined ? createServer(onRequest) : createTlsServer({ cert: tls.cert, key: tls.key }, onRequest);
    server.keepAliveTimeout = 1000;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, "127.0.0.1", () => {
        server.off("error", reject);
        resolve();
      });
    });
    this.#server = server;
    return (server.address() as AddressInfo).port;
  }

  async close(): Promise<void> {
    const server = this.#server;
    if (server === undefined) return;
    this.#server = undefined;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  async #exchange(req: IncomingMessage, res: ServerResponse): Promise<TransportExchange> {
    let body: Buffer = Buffer.alloc(0);
    let refused: EmulatorResponse | undefined;
    try {
      body = await readBody(req, this.#options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES);
    } catch {
      refused = { status: 413, body: { message: "request body too large" } };
    }
    return {
      request: { method: req.method ?? "GET", url: new URL(req.url ?? "/", "http://127.0.0.1"), headers: req.headers, body },
      ...(refused === undefined ? {} : { refused }),
      gone: () => res.destroyed || this.#server === undefined,
      drop: () => req.socket.destroy(),
      reply: (response) => send(res, response),
    };
  }
}

function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        reject(new Error("body too large"));
        req.resume();
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

function send(res: ServerResponse, response: EmulatorResponse): void {
  if (res.destroyed) return;
  const headers: Record<string, string> = { ...response.headers };
  let payload: Buffer | undefined;
  if (Buffer.isBuffer(response.body)) payload = response.body;
  else if (typeof response.body === "string") payload = Buffer.from(response.body, "utf8");
  else if (response.body !== undefined) {
    payload = Buffer.from(JSON.stringify(response.body), "utf8");
    headers["content-type"] ??= "application/json";
  }
  if (payload !== undefined) headers["content-length"] = String(payload.length);
  res.writeHead(response.status, headers);
  res.end(payload);
}

// --- keys -------------------------------------------------------------------------------------

export const IV_BYTES = 12;
export const TAG_BYTES = 16;

export interface KeyVersion {
  /** 1-based. */
  readonly version: number;
  readonly createdAt: Date;
  /** An opaque id for this version's material (AWS's KeyMaterialId). */
  readonly materialId: string;
  readonly material: Buffer;
}

/**
 * A symmetric key with versions, as the emulators keep it: 32-byte AES-256-GCM key material per
 * version, sealing `iv(12) ‖ ciphertext ‖ tag(16)`. Protocols add their own metadata around it.
 */
export class EmulatedKey {
  readonly #versions: KeyVersion[] = [];
  enabled = true;

  constructor(
    readonly id: string,
    createdAt: Date,
  ) {
    this.addVersion(createdAt);
  }

  get versions(): readonly KeyVersion[] {
    return this.#versions;
  }

  get latest(): KeyVersion {
    return this.#versions[this.#versions.length - 1]!;
  }

  version(n: number): KeyVersion | undefined {
    return Number.isInteger(n) && n >= 1 ? this.#versions[n - 1] : undefined;
  }

  /** Adds a version and makes it the latest. */
  addVersion(createdAt: Date): KeyVersion {
    const v: KeyVersion = { version: this.#versions.length + 1, createdAt, materialId: randomBytes(32).toString("hex"), material: randomBytes(32) };
    this.#versions.push(v);
    return v;
  }

  /** AES-256-GCM under `version` (default the latest), with `aad`. */
  seal(plaintext: Uint8Array, aad: Uint8Array, version: KeyVersion = this.latest, key: Uint8Array = version.material): Buffer {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv("aes-256-gcm", key, iv);
    cipher.setAAD(aad);
    return Buffer.concat([iv, cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
  }

  /** Opens what `seal` made; undefined when it does not authenticate. */
  open(sealed: Uint8Array, aad: Uint8Array, version: KeyVersion, key: Uint8Array = version.material): Buffer | undefined {
    if (sealed.length < IV_BYTES + TAG_BYTES) return undefined;
    const buf = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.byteLength);
    try {
      const decipher = createDecipheriv("aes-256-gcm", key, buf.subarray(0, IV_BYTES));
      decipher.setAAD(aad);
      decipher.setAuthTag(buf.subarray(buf.length - TAG_BYTES));
      return Buffer.concat([decipher.update(buf.subarray(IV_BYTES, buf.length - TAG_BYTES)), decipher.final()]);
    } catch {
      return undefined;
    }
  }

  /** Zeroes every version's material (the emulator is done with the key). */
  destroy(): void {
    for (const v of this.#versions) v.material.fill(0);
  }
}

/** A request id in the service's usual form. */
export const newRequestId = (): string => randomUUID();
