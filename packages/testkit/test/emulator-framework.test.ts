import { request as httpRequest } from "node:http";
import { afterEach, beforeEach, describe, expect, it } from "@jest/globals";
import {
  type AuthResult,
  EmulatedKey,
  Emulator,
  type EmulatorOptions,
  EmulatorReply,
  type EmulatorRequest,
  type EmulatorResponse,
  type EmulatorTransport,
  type FaultKind,
  type RoutedRequest,
  type TransportExchange,
} from "../src/emulators/framework";

/**
 * A toy protocol over the framework: `POST /<op>/<key>` with header `x-token: ok`. Answers
 * `{ op, key, body }`, `/fail/<key>` with a handler error, `/crash/<key>` with an unexpected throw.
 */
class ToyEmulator extends Emulator {
  protected readonly protocol = "toy";
  constructor(options?: EmulatorOptions) {
    super(options);
  }
  protected route(req: EmulatorRequest): RoutedRequest {
    const [, op, key] = req.url.pathname.split("/");
    return { operation: op || "unknown", ...(key ? { keyId: key } : {}) };
  }
  protected authenticate(req: EmulatorRequest): AuthResult {
    return req.headers["x-token"] === "ok" ? { ok: true, identity: "tester" } : { ok: false, response: { status: 401, body: { error: "who are you" } } };
  }
  protected faultResponse(fault: Exclude<FaultKind, "latency" | "connectionReset">, routed: RoutedRequest, status: number, identity: string | undefined): EmulatorResponse {
    return { status: fault === "serverError" ? status : 400, body: { fault, key: routed.keyId ?? null, identity } };
  }
  protected handle(req: EmulatorRequest, routed: RoutedRequest, identity: string | undefined): EmulatorResponse {
    if (routed.operation === "fail") throw new EmulatorReply({ status: 409, body: { error: "conflict" } });
    if (routed.operation === "crash") throw new Error("a bug with a secret in it");
    return { status: 200, body: { op: routed.operation, key: routed.keyId ?? null, identity, body: req.body.toString("utf8") } };
  }
  protected override responseHeaders(): Record<string, string> {
    return { "x-request-id": "req-1" };
  }
}

interface Answer {
  status: number;
  body: unknown;
  headers: Record<string, string | string[] | undefined>;
}

/** One request on a fresh connection (no keep-alive pool to outlive the test). */
function call(url: string, path: string, body = "", token = "ok"): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${url}${path}`, { method: "POST", agent: false, headers: { "x-token": token, "content-length": Buffer.byteLength(body) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        resolve({ status: res.statusCode ?? 0, body: text === "" ? undefined : (JSON.parse(text) as unknown), headers: res.headers });
      });
    });
    req.on("error", reject);
    req.end(body);
  });
}

let emulator: ToyEmulator;
let url: string;

beforeEach(async () => {
  emulator = new ToyEmulator();
  url = await emulator.start();
});

afterEach(async () => {
  await emulator.stop();
});

describe("life cycle", () => {
  it("listens on an ephemeral loopback port and answers through the protocol", async () => {
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(emulator.port).toBeGreaterThan(0);
    expect(await emulator.start()).toBe(url); // idempotent
    const answer = await call(url, "/echo/k1", "hello");
    expect(answer.status).toBe(200);
    expect(answer.body).toEqual({ op: "echo", key: "k1", identity: "tester", body: "hello" });
    expect(answer.headers["x-request-id"]).toBe("req-1");
    expect(answer.headers["content-type"]).toBe("application/json");
  });

  it("url throws before start; stop is idempotent and refuses connections afterwards", async () => {
    expect(() => new ToyEmulator().url).toThrow("toy emulator: not started");
    await emulator.stop();
    await emulator.stop();
    await expect(call(url, "/echo/k1")).rejects.toMatchObject({ code: "ECONNREFUSED" });
  });

  it("outage() refuses connections until restored, then serves on the same port", async () => {
    const restore = await emulator.outage();
    await expect(call(url, "/echo/k1")).rejects.toMatchObject({ code: "ECONNREFUSED" });
    await restore();
    await restore(); // idempotent
    expect(emulator.url).toBe(url);
    expect((await call(url, "/echo/k1")).status).toBe(200);
    expect(emulator.count()).toBe(1); // refused connections never reached the server
  });

  it("outage() drops a request held by injected latency", async () => {
    emulator.inject("echo", { kind: "latency", ms: 60_000 });
    const pending = call(url, "/echo/k1");
    await waitFor(() => emulator.pending === 1);
    const restore = await emulator.outage();
    await expect(pending).rejects.toMatchObject({ code: "ECONNRESET" });
    await restore();
    expect(emulator.requests).toEqual([{ operation: "echo", keyId: "k1", status: 0, fault: "latency", identity: "tester" }]);
  });

  it("counts requests held by latency as pending; stop() releases them at once", async () => {
    emulator.inject("*", { kind: "latency", ms: 60_000 });
    const pending = call(url, "/echo/k1").catch((error: unknown) => error);
    await waitFor(() => emulator.pending === 1);
    await emulator.stop();
    expect(await pending).toMatchObject({ code: "ECONNRESET" });
  });
});

describe("request log", () => {
  it("records operation, key, status, identity and fault for every request, never the body", async () => {
    await call(url, "/echo/k1", "secret-plaintext");
    await call(url, "/echo/k1", "x", "bad-token");
    await call(url, "/fail/k2");
    await call(url, "/crash/k3");
    expect(emulator.requests).toEqual([
      { operation: "echo", keyId: "k1", status: 200, identity: "tester" },
      { operation: "echo", keyId: "k1", status: 401 },
      { operation: "fail", keyId: "k2", status: 409, identity: "tester" },
      { operation: "crash", keyId: "k3", status: 500, identity: "tester" },
    ]);
    expect(JSON.stringify(emulator.requests)).not.toContain("secret");
    expect(emulator.count()).toBe(4);
    expect(emulator.count("echo")).toBe(2);
    expect(emulator.count("nothing")).toBe(0);
    expect(emulator.counts()).toEqual({ echo: 2, fail: 1, crash: 1 });
    emulator.resetLog();
    expect(emulator.requests).toEqual([]);
  });

  it("answers an unexpected handler error with a fixed message, not the error's", async () => {
    const answer = await call(url, "/crash/k1");
    expect(answer).toMatchObject({ status: 500, body: { message: "toy emulator: internal error" } });
  });

  it("refuses a body over the limit with 413", async () => {
    const small = new ToyEmulator({ maxBodyBytes: 8 });
    const smallUrl = await small.start();
    try {
      expect((await call(smallUrl, "/echo/k1", "12345678")).status).toBe(200);
      expect((await call(smallUrl, "/echo/k1", "123456789")).status).toBe(413);
      expect(small.requests.map((r) => [r.operation, r.status])).toEqual([
        ["echo", 200],
        ["unknown", 413],
      ]);
    } finally {
      await small.stop();
    }
  });
});

describe("fault injection", () => {
  it("applies a fault N times, then answers normally", async () => {
    const fault = emulator.inject("echo", { kind: "throttle" }, { times: 2 });
    expect(await statuses(3, "/echo/k1")).toEqual([400, 400, 200]);
    expect(fault.hits).toBe(2);
    expect(fault.remaining).toBe(0);
    expect(emulator.requests.map((r) => r.fault)).toEqual(["throttle", "throttle", undefined]);
  });

  it("applies a fault until cleared, only to its operation", async () => {
    const fault = emulator.inject("echo", { kind: "serverError", status: 503 });
    expect((await call(url, "/echo/k1")).body).toEqual({ fault: "serverError", key: "k1", identity: "tester" });
    expect(await statuses(2, "/echo/k1")).toEqual([503, 503]);
    expect((await call(url, "/other/k1")).status).toBe(200);
    expect(fault.remaining).toBe(Infinity);
    fault.clear();
    expect((await call(url, "/echo/k1")).status).toBe(200);
    expect(fault.hits).toBe(3);
  });

  it("filters by key id; '*' matches every operation; clearFaults() ends them all", async () => {
    emulator.inject("*", { kind: "keyNotFound" }, { keyId: "gone" });
    expect((await call(url, "/echo/gone")).body).toEqual({ fault: "keyNotFound", key: "gone", identity: "tester" });
    expect((await call(url, "/other/gone")).status).toBe(400);
    expect((await call(url, "/echo/here")).status).toBe(200);
    emulator.clearFaults();
    expect((await call(url, "/echo/gone")).status).toBe(200);
  });

  it("answers each decisive fault kind through the protocol", async () => {
    for (const kind of ["throttle", "accessDenied", "keyDisabled", "keyNotFound"] as const) {
      emulator.inject("echo", { kind }, { times: 1 });
      expect(await call(url, "/echo/k1")).toEqual(expect.objectContaining({ status: 400, body: { fault: kind, key: "k1", identity: "tester" } }));
    }
    emulator.inject("echo", { kind: "serverError" }, { times: 1 });
    expect((await call(url, "/echo/k1")).status).toBe(500);
  });

  it("a latency fault delays, then the next matching fault or the normal answer decides", async () => {
    emulator.inject("echo", { kind: "latency", ms: 30 }, { times: 2 });
    emulator.inject("echo", { kind: "accessDenied" }, { times: 1 });
    expect(await statuses(2, "/echo/k1")).toEqual([400, 200]);
    expect(emulator.requests.map((r) => r.fault)).toEqual(["accessDenied", "latency"]);
  });

  it("connectionReset drops the connection without an answer", async () => {
    emulator.inject("echo", { kind: "connectionReset" }, { times: 1 });
    await expect(call(url, "/echo/k1")).rejects.toMatchObject({ code: "ECONNRESET" });
    expect((await call(url, "/echo/k1")).status).toBe(200);
    expect(emulator.requests.map((r) => [r.status, r.fault])).toEqual([
      [0, "connectionReset"],
      [200, undefined],
    ]);
  });

  it("authentication runs before faults", async () => {
    emulator.inject("echo", { kind: "throttle" }, { times: 1 });
    expect((await call(url, "/echo/k1", "", "bad")).status).toBe(401);
    expect((await call(url, "/echo/k1")).status).toBe(400);
  });

  it("rejects bad options", () => {
    expect(() => emulator.inject("echo", { kind: "throttle" }, { times: 0 })).toThrow(RangeError);
    expect(() => emulator.inject("echo", { kind: "throttle" }, { times: 1.5 })).toThrow(RangeError);
    expect(() => emulator.inject("echo", { kind: "latency", ms: -1 })).toThrow(RangeError);
    expect(() => emulator.inject("echo", { kind: "latency", ms: Number.NaN })).toThrow(RangeError);
  });
});

/**
 * A transport with no network: `send` hands a request straight to the pipeline and resolves with
 * what it answered (`"dropped"` for a dropped connection). Proves the pipeline is transport-neutral.
 */
class MemoryTransport implements EmulatorTransport {
  #serve: ((exchange: TransportExchange) => Promise<void>) | undefined;
  listens = 0;

  async listen(port: number, serve: (exchange: TransportExchange) => Promise<void>): Promise<number> {
    this.#serve = serve;
    this.listens += 1;
    return port === 0 ? 4242 : port;
  }

  async close(): Promise<void> {
    this.#serve = undefined;
  }

  send(path: string, options: { token?: string; refused?: EmulatorResponse } = {}): Promise<EmulatorResponse | "dropped"> {
    const serve = this.#serve;
    if (serve === undefined) return Promise.reject(new Error("refused"));
    return new Promise((resolve) => {
      let done = false;
      const exchange: TransportExchange = {
        request: { method: "POST", url: new URL(path, "http://127.0.0.1"), headers: { "x-token": options.token ?? "ok" }, body: Buffer.from("body") },
        ...(options.refused === undefined ? {} : { refused: options.refused }),
        gone: () => done,
        drop: () => {
          done = true;
          resolve("dropped");
        },
        reply: (response) => {
          done = true;
          resolve(response);
        },
      };
      void serve(exchange);
    });
  }
}

class MemoryToyEmulator extends ToyEmulator {
  // Set from the base constructor, so declared only: an initialized field would be reset after it.
  declare transport: MemoryTransport;
  protected override createTransport(): EmulatorTransport {
    this.transport = new MemoryTransport();
    return this.transport;
  }
}

describe("a protocol's own transport (createTransport)", () => {
  it("runs the same pipeline: routing, authentication, faults, log, pending, outage on the same port", async () => {
    const memory = new MemoryToyEmulator();
    expect(await memory.start()).toBe("http://127.0.0.1:4242");
    const { transport } = memory;
    expect(await transport.send("/echo/k1")).toEqual({
      status: 200,
      headers: { "x-request-id": "req-1" },
      body: { op: "echo", key: "k1", identity: "tester", body: "body" },
    });
    expect(await transport.send("/echo/k1", { token: "bad" })).toMatchObject({ status: 401 });
    memory.inject("echo", { kind: "connectionReset" }, { times: 1 });
    expect(await transport.send("/echo/k1")).toBe("dropped");
    memory.inject("echo", { kind: "keyDisabled" }, { times: 1 });
    expect(await transport.send("/echo/k1")).toMatchObject({ status: 400, body: { fault: "keyDisabled" } });
    expect(await transport.send("/echo/k1", { refused: { status: 413 } })).toMatchObject({ status: 413, headers: { "x-request-id": "req-1" } });
    memory.inject("echo", { kind: "latency", ms: 60_000 }, { times: 1 });
    const held = transport.send("/echo/k1");
    expect(memory.pending).toBe(1);
    const restore = await memory.outage();
    await expect(transport.send("/echo/k1")).rejects.toThrow("refused");
    await restore();
    expect(transport.listens).toBe(2);
    expect(memory.port).toBe(4242);
    expect(await transport.send("/echo/k1")).toMatchObject({ status: 200 });
    await memory.stop();
    void held; // the outage released it: the pipeline logged it and sent nothing
    expect(memory.requests.map((r) => `${r.operation} ${r.status} ${r.fault ?? "-"}`)).toEqual([
      "echo 200 -",
      "echo 401 -",
      "echo 0 connectionReset",
      "echo 400 keyDisabled",
      "unknown 413 -",
      "echo 0 latency",
      "echo 200 -",
    ]);
    expect(memory.pending).toBe(0);
  });
});

describe("EmulatedKey", () => {
  const at = new Date("2026-01-01T00:00:00Z");

  it("seals and opens under each version, with the AAD bound", () => {
    const key = new EmulatedKey("k1", at);
    expect(key.latest.version).toBe(1);
    expect(key.latest.createdAt).toBe(at);
    expect(key.latest.materialId).toMatch(/^[0-9a-f]{64}$/);
    const v1 = key.seal(Buffer.from("data"), Buffer.from("aad"));
    expect(v1).toHaveLength(12 + 4 + 16);
    const later = new Date("2026-02-01T00:00:00Z");
    const v2 = key.addVersion(later);
    expect(v2.version).toBe(2);
    expect(key.latest).toBe(v2);
    expect(key.versions.map((v) => v.version)).toEqual([1, 2]);
    expect(key.version(1)!.materialId).not.toBe(v2.materialId);
    expect(key.open(v1, Buffer.from("aad"), key.version(1)!)?.toString()).toBe("data");
    expect(key.open(v1, Buffer.from("aad"), v2)).toBeUndefined();
    expect(key.open(v1, Buffer.from("aaD"), key.version(1)!)).toBeUndefined();
    const tampered = Buffer.from(v1);
    tampered[13]! ^= 1;
    expect(key.open(tampered, Buffer.from("aad"), key.version(1)!)).toBeUndefined();
    expect(key.open(v1.subarray(0, 27), Buffer.from("aad"), key.version(1)!)).toBeUndefined();
  });

  it("looks versions up by number only when they exist", () => {
    const key = new EmulatedKey("k1", at);
    expect(key.version(1)).toBe(key.latest);
    for (const n of [0, 2, -1, 1.5, Number.NaN]) expect(key.version(n)).toBeUndefined();
  });

  it("destroy() zeroes every version's material", () => {
    const key = new EmulatedKey("k1", at);
    key.addVersion(at);
    key.destroy();
    for (const v of key.versions) expect(v.material.equals(Buffer.alloc(32))).toBe(true);
  });
});

async function statuses(n: number, path: string): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push((await call(url, path)).status);
  return out;
}

/** Polls until `condition` holds (the server side of a request is asynchronous to the client). */
async function waitFor(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 1000 && !condition(); i++) await new Promise((resolve) => setTimeout(resolve, 5));
  expect(condition()).toBe(true);
}
