import { afterAll, beforeAll, beforeEach, describe, expect, it, jest } from "@jest/globals";
import { SpanStatusCode, context, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";

import { ManualClock } from "../src/clock";
import { KmsError, isKmsError } from "../src/errors";
import type { KmsErrorCode } from "../src/errors";
import { KmsEvents } from "../src/events";
import type { KmsEvent } from "../src/events";
import { DEFAULT_RESILIENCE, ProviderPolicy } from "../src/resilience";
import type { ResilienceOptions } from "../src/resilience";

// ---------------------------------------------------------------------------------------------
// Helpers

const PROVIDER = "aws";

interface Deferred<T> {
  promise: Promise<T>;
  resolve: (value: T) => void;
  reject: (error: unknown) => void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

interface Tracked<T> {
  done: boolean;
  value: T | undefined;
  error: unknown;
}

/** Observes a promise without awaiting it (and without leaving its rejection unhandled). */
function track<T>(promise: Promise<T>): Tracked<T> {
  const state: Tracked<T> = { done: false, value: undefined, error: undefined };
  promise.then(
    (value) => {
      state.done = true;
      state.value = value;
    },
    (error: unknown) => {
      state.done = true;
      state.error = error;
    },
  );
  return state;
}

function codeOf(error: unknown): string | undefined {
  return isKmsError(error) ? error.code : undefined;
}

function options(overrides: {
  timeoutMs?: number;
  retry?: Partial<ResilienceOptions["retry"]>;
  circuitBreaker?: Partial<ResilienceOptions["circuitBreaker"]>;
  bulkhead?: Partial<ResilienceOptions["bulkhead"]>;
} = {}): ResilienceOptions {
  return {
    timeoutMs: overrides.timeoutMs ?? 1000,
    retry: { maxAttempts: 3, baseDelayMs: 50, maxDelayMs: 1000, ...overrides.retry },
    circuitBreaker: { failureThreshold: 5, resetAfterMs: 10_000, ...overrides.circuitBreaker },
    bulkhead: { maxConcurrent: 8, maxQueue: 8, ...overrides.bulkhead },
  };
}

function setup(opts: ResilienceOptions = options(), random: () => number = () => 0.5) {
  const clock = new ManualClock();
  const events = new KmsEvents();
  const seen: KmsEvent[] = [];
  events.on((event) => seen.push(event));
  const policy = new ProviderPolicy(PROVIDER, opts, { events, clock, random });
  const callEvents = () => seen.filter((e): e is Extract<KmsEvent, { type: "kms.call" }> => e.type === "kms.call");
  const circuitEvents = () =>
    seen
      .filter((e): e is Extract<KmsEvent, { type: "circuit.state" }> => e.type === "circuit.state")
      .map((e) => `${e.from}->${e.to}`);
  return { clock, events, seen, policy, callEvents, circuitEvents };
}

const kmsError = (code: KmsErrorCode, message = "boom") => new KmsError(code, message, { provider: PROVIDER });

/** A call that fails with a fresh error from `errors` in turn, then succeeds with `value`. */
function scripted<T>(errors: unknown[], value: T) {
  const calls: number[] = [];
  return {
    calls,
    fn: (clock: ManualClock) => async (_signal: AbortSignal) => {
      calls.push(clock.now());
      const next = errors[calls.length - 1];
      if (next !== undefined) throw next;
      return value;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// OpenTelemetry: one in-memory exporter for the whole file.

const exporter = new InMemorySpanExporter();
const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
const contextManager = new AsyncLocalStorageContextManager();

beforeAll(() => {
  contextManager.enable();
  context.setGlobalContextManager(contextManager);
  trace.setGlobalTracerProvider(tracerProvider);
});

afterAll(async () => {
  await tracerProvider.shutdown();
  trace.disable();
  context.disable();
});

beforeEach(() => exporter.reset());

// ---------------------------------------------------------------------------------------------

describe("ProviderPolicy: basics", () => {
  it("DEFAULT_RESILIENCE has the documented values", () => {
    expect(DEFAULT_RESILIENCE).toEqual({
      timeoutMs: 2000,
      retry: { maxAttempts: 3, baseDelayMs: 50, maxDelayMs: 1000 },
      circuitBreaker: { failureThreshold: 5, resetAfterMs: 10_000 },
      bulkhead: { maxConcurrent: 64, maxQueue: 1000 },
    });
    expect(() => new ProviderPolicy(PROVIDER, DEFAULT_RESILIENCE, { events: new KmsEvents() })).not.toThrow();
  });

  it("rejects invalid options with KMS_CONFIG_INVALID", () => {
    const bad = options({ retry: { maxAttempts: 0 }, bulkhead: { maxConcurrent: 1.5 } });
    let thrown: unknown;
    try {
      new ProviderPolicy(PROVIDER, bad, { events: new KmsEvents() });
    } catch (error) {
      thrown = error;
    }
    expect(codeOf(thrown)).toBe("KMS_CONFIG_INVALID");
    expect((thrown as Error).message).toContain("retry.maxAttempts");
    expect((thrown as Error).message).toContain("bulkhead.maxConcurrent");
  });

  it("returns the call's result, emits one success event with the measured duration, leaves no timer", async () => {
    const { clock, policy, callEvents } = setup();
    let calls = 0;
    const result = track(
      policy.execute("generateDataKey", async () => {
        calls++;
        await new Promise<void>((resolve) => clock.setTimer(30, resolve));
        return "ok";
      }),
    );
    await clock.advance(30);
    expect(result).toEqual({ done: true, value: "ok", error: undefined });
    expect(calls).toBe(1);
    expect(callEvents()).toEqual([
      { type: "kms.call", provider: PROVIDER, operation: "generateDataKey", outcome: "success", attempt: 1, durationMs: 30 },
    ]);
    expect(clock.pendingTimers).toBe(0);
    expect(policy.circuitState).toBe("closed");
  });

  it("emits one kms.operation event per execute, after retries, with attempts and the whole duration", async () => {
    const { clock, policy, seen } = setup(options({ retry: { maxAttempts: 3 }, bulkhead: { maxConcurrent: 1, maxQueue: 0 } }));
    const operations = () => seen.filter((e) => e.type === "kms.operation");
    const script = scripted([kmsError("KMS_THROTTLED"), kmsError("KMS_THROTTLED")], "ok");
    const retried = track(policy.execute("generateDataKey", script.fn(clock)));
    const refused = track(policy.execute("generateDataKey", async () => "x")); // the one slot is taken
    await clock.advance(75); // backoffs of 25 and 50 ms at random=0.5
    expect(retried.value).toBe("ok");
    expect(codeOf(refused.error)).toBe("KMS_OVERLOADED");
    const failed = track(policy.execute("unwrapDataKey", async () => Promise.reject(kmsError("KMS_ACCESS_DENIED"))));
    await clock.advance(0);
    expect(codeOf(failed.error)).toBe("KMS_ACCESS_DENIED");
    expect(operations()).toEqual([
      { type: "kms.operation", provider: PROVIDER, operation: "generateDataKey", outcome: "error", code: "KMS_OVERLOADED", attempts: 0, durationMs: 0 },
      { type: "kms.operation", provider: PROVIDER, operation: "generateDataKey", outcome: "success", attempts: 3, durationMs: 75 },
      { type: "kms.operation", provider: PROVIDER, operation: "unwrapDataKey", outcome: "error", code: "KMS_ACCESS_DENIED", attempts: 1, durationMs: 0 },
    ]);
  });

  it("builds no event when nobody listens", async () => {
    const clock = new ManualClock();
    const events = new KmsEvents();
    const emit = jest.spyOn(events, "emit");
    const policy = new ProviderPolicy(PROVIDER, options({ circuitBreaker: { failureThreshold: 1 } }), {
      events,
      clock,
      random: () => 0,
    });
    await expect(policy.execute("describeKey", async () => "x")).resolves.toBe("x");
    await expect(
      policy.execute("describeKey", async () => {
        throw kmsError("KMS_UNAVAILABLE");
      }),
    ).rejects.toMatchObject({ code: "KMS_CIRCUIT_OPEN" });
    expect(policy.circuitState).toBe("open");
    expect(emit).not.toHaveBeenCalled();
  });
});

describe("ProviderPolicy: timeout", () => {
  it("aborts the attempt's signal and fails with KMS_TIMEOUT after timeoutMs, even if the call ignores it", async () => {
    const { clock, policy, callEvents } = setup(options({ timeoutMs: 500, retry: { maxAttempts: 1 } }));
    const signals: AbortSignal[] = [];
    const result = track(
      policy.execute("unwrapDataKey", (signal) => {
        signals.push(signal);
        return new Promise<string>(() => {}); // never settles, ignores the signal
      }),
    );
    await clock.advance(499);
    expect(result.done).toBe(false);
    expect(signals).toHaveLength(1);
    expect(signals[0]!.aborted).toBe(false);

    await clock.advance(1);
    expect(result.done).toBe(true);
    expect(codeOf(result.error)).toBe("KMS_TIMEOUT");
    expect((result.error as KmsError).retryable).toBe(true);
    expect((result.error as KmsError).provider).toBe(PROVIDER);
    expect(signals[0]!.aborted).toBe(true);
    expect(signals[0]!.reason).toBe(result.error);
    expect(callEvents()).toEqual([
      { type: "kms.call", provider: PROVIDER, operation: "unwrapDataKey", outcome: "error", code: "KMS_TIMEOUT", attempt: 1, durationMs: 500 },
    ]);
    expect(clock.pendingTimers).toBe(0);
  });

  it("retries timeouts (a retryable failure), each attempt with its own aborted signal", async () => {
    const { clock, policy } = setup(options({ timeoutMs: 100, retry: { maxAttempts: 3 } }), () => 0.5);
    const signals: AbortSignal[] = [];
    const result = track(
      policy.execute("wrapDataKey", (signal) => {
        signals.push(signal);
        return new Promise<string>(() => {});
      }),
    );
    // 100 (timeout) + 25 (backoff) + 100 + 50 + 100 = 375
    await clock.advance(374);
    expect(result.done).toBe(false);
    await clock.advance(1);
    expect(codeOf(result.error)).toBe("KMS_TIMEOUT");
    expect(signals).toHaveLength(3);
    expect(new Set(signals).size).toBe(3);
    expect(signals.every((s) => s.aborted)).toBe(true);
  });

  it("swallows a late result or rejection: no unhandled rejection, no change to the outcome", async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on("unhandledRejection", onUnhandled);
    try {
      const { clock, policy } = setup(options({ timeoutMs: 100, retry: { maxAttempts: 1 } }));
      const late = deferred<string>();
      const lateOk = deferred<string>();
      const first = track(policy.execute("unwrapDataKey", () => late.promise));
      const second = track(policy.execute("unwrapDataKey", () => lateOk.promise));
      await clock.advance(100);
      expect(codeOf(first.error)).toBe("KMS_TIMEOUT");
      expect(codeOf(second.error)).toBe("KMS_TIMEOUT");
      late.reject(new Error("late failure"));
      lateOk.resolve("late value");
      await clock.advance(0);
      await new Promise<void>((resolve) => setImmediate(resolve));
      expect(codeOf(first.error)).toBe("KMS_TIMEOUT");
      expect(second.value).toBeUndefined();
      expect(unhandled).toEqual([]);
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
  });

  it("zeroes the data key in a result that arrives after the timeout (unwrapped bytes or a generated key)", async () => {
    const { clock, policy } = setup(options({ timeoutMs: 100, retry: { maxAttempts: 1 } }));
    const unwrapped = deferred<Buffer>();
    const generated = deferred<{ plaintextKey: Buffer; wrappedKey: Buffer; keyVersion: string }>();
    const first = track(policy.execute("unwrapDataKey", () => unwrapped.promise));
    const second = track(policy.execute("generateDataKey", () => generated.promise));
    await clock.advance(100);
    expect(codeOf(first.error)).toBe("KMS_TIMEOUT");
    expect(codeOf(second.error)).toBe("KMS_TIMEOUT");
    const lateKey = Buffer.alloc(32, 0xab);
    const lateDataKey = { plaintextKey: Buffer.alloc(32, 0xcd), wrappedKey: Buffer.alloc(48, 0xef), keyVersion: "1" };
    unwrapped.resolve(lateKey);
    generated.resolve(lateDataKey);
    await new Promise<void>((resolve) => setImmediate(resolve));
    expect(lateKey.equals(Buffer.alloc(32))).toBe(true);
    expect(lateDataKey.plaintextKey.equals(Buffer.alloc(32))).toBe(true);
    expect(lateDataKey.wrappedKey.equals(Buffer.alloc(48, 0xef))).toBe(true); // not secret: left as is
  });

  it("does not touch a result that arrives in time", async () => {
    const { policy } = setup(options({ timeoutMs: 100, retry: { maxAttempts: 1 } }));
    const key = Buffer.alloc(32, 0xab);
    await expect(policy.execute("unwrapDataKey", async () => key)).resolves.toBe(key);
    expect(key.equals(Buffer.alloc(32, 0xab))).toBe(true);
  });
});

describe("ProviderPolicy: retry", () => {
  it("retries a retryable error with full-jitter backoff (25, 50, 100 ms at random=0.5) and succeeds when the fault clears", async () => {
    const { clock, policy, callEvents } = setup(options({ retry: { maxAttempts: 4 } }), () => 0.5);
    const t0 = clock.now();
    const script = scripted(
      [kmsError("KMS_UNAVAILABLE"), kmsError("KMS_THROTTLED"), kmsError("KMS_UNAVAILABLE")],
      "done",
    );
    const result = track(policy.execute("generateDataKey", script.fn(clock)));
    await clock.advance(0);
    expect(script.calls).toEqual([t0]);
    await clock.advance(24);
    expect(script.calls).toHaveLength(1);
    await clock.advance(1);
    expect(script.calls).toEqual([t0, t0 + 25]);
    await clock.advance(49);
    expect(script.calls).toHaveLength(2);
    await clock.advance(1);
    expect(script.calls).toEqual([t0, t0 + 25, t0 + 75]);
    await clock.advance(100);
    expect(script.calls).toEqual([t0, t0 + 25, t0 + 75, t0 + 175]);
    expect(result).toEqual({ done: true, value: "done", error: undefined });
    expect(callEvents().map((e) => [e.attempt, e.outcome, e.code])).toEqual([
      [1, "error", "KMS_UNAVAILABLE"],
      [2, "error", "KMS_THROTTLED"],
      [3, "error", "KMS_UNAVAILABLE"],
      [4, "success", undefined],
    ]);
  });

  it("caps the backoff at maxDelayMs and throws the last error after maxAttempts", async () => {
    const { clock, policy } = setup(
      options({ retry: { maxAttempts: 4, baseDelayMs: 400, maxDelayMs: 500 } }),
      () => 0.75,
    );
    const t0 = clock.now();
    const errors = [kmsError("KMS_UNAVAILABLE"), kmsError("KMS_UNAVAILABLE"), kmsError("KMS_UNAVAILABLE"), kmsError("KMS_UNAVAILABLE")];
    const script = scripted(errors, "never");
    const result = track(policy.execute("describeKey", script.fn(clock)));
    await clock.advance(10_000);
    // delays: 0.75 * min(500, 400) = 300, then 0.75 * min(500, 800) = 375, then 0.75 * min(500, 1600) = 375
    expect(script.calls.map((t) => t - t0)).toEqual([0, 300, 675, 1050]);
    expect(result.error).toBe(errors[3]);
  });

  it("retries immediately when random() is 0", async () => {
    const { clock, policy } = setup(options({ retry: { maxAttempts: 3 } }), () => 0);
    const script = scripted([kmsError("KMS_UNAVAILABLE"), kmsError("KMS_UNAVAILABLE")], 7);
    const result = track(policy.execute("describeKey", script.fn(clock)));
    await clock.advance(0);
    expect(script.calls).toEqual([clock.now(), clock.now(), clock.now()]);
    expect(result.value).toBe(7);
  });

  it.each<KmsErrorCode>([
    "KMS_ACCESS_DENIED",
    "KMS_KEY_NOT_FOUND",
    "KMS_KEY_DISABLED",
    "ENVELOPE_AUTH_FAILED",
    "KMS_PROVIDER_ERROR",
  ])("does not retry %s: exactly one call", async (code) => {
    const { clock, policy } = setup(options({ retry: { maxAttempts: 5 } }));
    const error = kmsError(code);
    const script = scripted([error, error, error, error, error], "never");
    const result = track(policy.execute("unwrapDataKey", script.fn(clock)));
    await clock.advance(10_000);
    expect(script.calls).toHaveLength(1);
    expect(result.error).toBe(error);
    expect(codeOf(result.error)).toBe(code);
  });

  it.each<KmsErrorCode>(["KMS_CIRCUIT_OPEN", "KMS_OVERLOADED"])(
    "never retries %s even though it is retryable",
    async (code) => {
      const { clock, policy } = setup(options({ retry: { maxAttempts: 5 } }));
      const error = kmsError(code);
      expect(error.retryable).toBe(true);
      const script = scripted([error, error, error], "never");
      const result = track(policy.execute("unwrapDataKey", script.fn(clock)));
      await clock.advance(10_000);
      expect(script.calls).toHaveLength(1);
      expect(codeOf(result.error)).toBe(code);
    },
  );

  it("honours an error's own retryable=false over its code's default", async () => {
    const { clock, policy } = setup(options({ retry: { maxAttempts: 5 } }));
    const error = new KmsError("KMS_THROTTLED", "quota exhausted for the day", { provider: PROVIDER, retryable: false });
    const script = scripted([error, error], "never");
    const result = track(policy.execute("unwrapDataKey", script.fn(clock)));
    await clock.advance(10_000);
    expect(script.calls).toHaveLength(1);
    expect(result.error).toBe(error);
  });

  it("maps a non-KmsError to KMS_PROVIDER_ERROR without its message, keeps it as cause, does not retry", async () => {
    const { clock, policy, callEvents } = setup(options({ retry: { maxAttempts: 5 } }));
    const original = new Error("connect to https://vault:8200 with token s.SECRET-TOKEN-123 failed");
    const script = scripted([original, original], "never");
    const result = track(policy.execute("wrapDataKey", script.fn(clock)));
    await clock.advance(10_000);
    expect(script.calls).toHaveLength(1);
    const error = result.error as KmsError;
    expect(isKmsError(error)).toBe(true);
    expect(error.code).toBe("KMS_PROVIDER_ERROR");
    expect(error.provider).toBe(PROVIDER);
    expect(error.retryable).toBe(false);
    expect(error.message).toContain(`${PROVIDER} wrapDataKey failed unexpectedly`);
    expect(error.message).not.toContain("SECRET-TOKEN-123");
    expect(JSON.stringify(error)).not.toContain("SECRET-TOKEN-123");
    expect(error.cause).toBe(original);
    expect(callEvents().map((e) => e.code)).toEqual(["KMS_PROVIDER_ERROR"]);
  });

  it("treats a call that throws synchronously like a rejection", async () => {
    const { clock, policy } = setup();
    const result = track(
      policy.execute("describeKey", () => {
        throw new TypeError("bad");
      }),
    );
    await clock.advance(0);
    expect(codeOf(result.error)).toBe("KMS_PROVIDER_ERROR");
    expect(clock.pendingTimers).toBe(0);
  });

  it("sets provider on a provider's KmsError that lacks it, keeping the same error object", async () => {
    const { clock, policy } = setup(options({ retry: { maxAttempts: 1 } }));
    const error = new KmsError("KMS_KEY_NOT_FOUND", "no such key");
    const result = track(
      policy.execute("describeKey", async () => {
        throw error;
      }),
    );
    await clock.advance(0);
    expect(result.error).toBe(error);
    expect(error.provider).toBe(PROVIDER);
    expect(error.toJSON().provider).toBe(PROVIDER);
  });

  it("waits at least an error's retryAfterMs before retrying", async () => {
    const { clock, policy } = setup(options({ retry: { maxAttempts: 3 } }), () => 0.5);
    const t0 = clock.now();
    const throttled = Object.assign(kmsError("KMS_THROTTLED"), { retryAfterMs: 300 });
    const script = scripted([throttled], "ok");
    const result = track(policy.execute("generateDataKey", script.fn(clock)));
    await clock.advance(299);
    expect(script.calls).toEqual([t0]);
    await clock.advance(1);
    expect(script.calls).toEqual([t0, t0 + 300]);
    expect(result.value).toBe("ok");
  });

  it("caps retryAfterMs at maxDelayMs, and ignores it when the jittered delay is already longer", async () => {
    const { clock, policy } = setup(options({ retry: { maxAttempts: 3, baseDelayMs: 400, maxDelayMs: 1000 } }), () => 0.5);
    const t0 = clock.now();
    const script = scripted(
      [
        Object.assign(kmsError("KMS_THROTTLED"), { retryAfterMs: 60_000 }), // -> capped at 1000
        Object.assign(kmsError("KMS_THROTTLED"), { retryAfterMs: 10 }), // jitter 0.5 * 800 = 400 wins
      ],
      "ok",
    );
    const result = track(policy.execute("generateDataKey", script.fn(clock)));
    await clock.advance(5_000);
    expect(script.calls.map((t) => t - t0)).toEqual([0, 1000, 1400]);
    expect(result.value).toBe("ok");
  });

  it("holds its bulkhead slot across retries and their backoff", async () => {
    const { clock, policy } = setup(options({ retry: { maxAttempts: 2 }, bulkhead: { maxConcurrent: 1, maxQueue: 1 } }), () => 0.5);
    const first = scripted([kmsError("KMS_UNAVAILABLE")], "first");
    const second = scripted([], "second");
    const a = track(policy.execute("describeKey", first.fn(clock)));
    const b = track(policy.execute("describeKey", second.fn(clock)));
    await clock.advance(24); // first is in its 25 ms backoff
    expect(first.calls).toHaveLength(1);
    expect(second.calls).toHaveLength(0);
    await clock.advance(1);
    expect(a.value).toBe("first");
    expect(second.calls).toHaveLength(1);
    expect(b.value).toBe("second");
  });
});

describe("ProviderPolicy: circuit breaker", () => {
  const down = () => kmsError("KMS_UNAVAILABLE", "service unavailable");

  async function failTimes(policy: ProviderPolicy, clock: ManualClock, n: number, make: () => unknown = down) {
    for (let i = 0; i < n; i++) {
      const result = track(
        policy.execute("unwrapDataKey", async () => {
          throw make();
        }),
      );
      await clock.advance(0);
      expect(result.done).toBe(true);
    }
  }

  it("opens after failureThreshold consecutive outage failures, then fails fast without calling the provider", async () => {
    const { clock, policy, circuitEvents, callEvents } = setup(
      options({ retry: { maxAttempts: 1 }, circuitBreaker: { failureThreshold: 3, resetAfterMs: 1000 } }),
    );
    await failTimes(policy, clock, 2);
    expect(policy.circuitState).toBe("closed");
    await failTimes(policy, clock, 1);
    expect(policy.circuitState).toBe("open");
    expect(circuitEvents()).toEqual(["closed->open"]);

    let calls = 0;
    const rejected = track(
      policy.execute("unwrapDataKey", async () => {
        calls++;
        return "x";
      }),
    );
    await clock.advance(0);
    expect(calls).toBe(0);
    expect(codeOf(rejected.error)).toBe("KMS_CIRCUIT_OPEN");
    expect((rejected.error as KmsError).provider).toBe(PROVIDER);
    expect(callEvents().at(-1)).toEqual({
      type: "kms.call",
      provider: PROVIDER,
      operation: "unwrapDataKey",
      outcome: "error",
      code: "KMS_CIRCUIT_OPEN",
      attempt: 1,
      durationMs: 0,
    });
  });

  it("stays open until resetAfterMs, then lets exactly one trial through; its success closes the circuit", async () => {
    const { clock, policy, circuitEvents } = setup(
      options({ retry: { maxAttempts: 3 }, circuitBreaker: { failureThreshold: 2, resetAfterMs: 1000 } }),
      () => 0, // no backoff: the retry happens at once
    );
    await failTimes(policy, clock, 1); // 2 attempts (retry stops when the breaker opens) → open
    expect(policy.circuitState).toBe("open");
    const openedAt = clock.now();

    await clock.advance(999);
    let calls = 0;
    const early = track(policy.execute("unwrapDataKey", async () => ++calls));
    await clock.advance(0);
    expect(codeOf(early.error)).toBe("KMS_CIRCUIT_OPEN");
    expect(calls).toBe(0);

    await clock.advance(1);
    expect(clock.now() - openedAt).toBe(1000);
    expect(policy.circuitState).toBe("half-open");

    const trial = deferred<string>();
    let trialCalls = 0;
    let otherCalls = 0;
    const first = track(
      policy.execute("unwrapDataKey", () => {
        trialCalls++;
        return trial.promise;
      }),
    );
    const second = track(
      policy.execute("unwrapDataKey", async () => {
        otherCalls++;
        return "other";
      }),
    );
    await clock.advance(0);
    expect(trialCalls).toBe(1);
    expect(otherCalls).toBe(0);
    expect(codeOf(second.error)).toBe("KMS_CIRCUIT_OPEN"); // concurrent with the trial: not retried
    expect(first.done).toBe(false);

    trial.resolve("recovered");
    await clock.advance(0);
    expect(first.value).toBe("recovered");
    expect(policy.circuitState).toBe("closed");
    expect(circuitEvents()).toEqual(["closed->open", "open->half-open", "half-open->closed"]);

    const after = track(policy.execute("unwrapDataKey", async () => "fine"));
    await clock.advance(0);
    expect(after.value).toBe("fine");
  });

  it("re-opens for another resetAfterMs when the trial fails", async () => {
    const { clock, policy, circuitEvents } = setup(
      options({ timeoutMs: 200, retry: { maxAttempts: 1 }, circuitBreaker: { failureThreshold: 1, resetAfterMs: 1000 } }),
    );
    await failTimes(policy, clock, 1);
    await clock.advance(1000);
    expect(policy.circuitState).toBe("half-open");

    // The trial times out: a timeout counts as an outage failure.
    const trial = track(policy.execute("unwrapDataKey", () => new Promise<string>(() => {})));
    await clock.advance(200);
    expect(codeOf(trial.error)).toBe("KMS_TIMEOUT");
    expect(policy.circuitState).toBe("open");

    let calls = 0;
    await clock.advance(999);
    const rejected = track(policy.execute("unwrapDataKey", async () => ++calls));
    await clock.advance(0);
    expect(codeOf(rejected.error)).toBe("KMS_CIRCUIT_OPEN");
    expect(calls).toBe(0);
    await clock.advance(1);
    expect(policy.circuitState).toBe("half-open");
    const ok = track(policy.execute("unwrapDataKey", async () => ++calls));
    await clock.advance(0);
    expect(ok.value).toBe(1);
    expect(circuitEvents()).toEqual([
      "closed->open",
      "open->half-open",
      "half-open->open",
      "open->half-open",
      "half-open->closed",
    ]);
  });

  it("stops retrying as soon as the circuit opens (2 calls at threshold 2, not maxAttempts 5)", async () => {
    const { clock, policy } = setup(
      options({ retry: { maxAttempts: 5 }, circuitBreaker: { failureThreshold: 2, resetAfterMs: 1000 } }),
    );
    const errors = [down(), down(), down(), down(), down()];
    const script = scripted(errors, "never");
    const result = track(policy.execute("generateDataKey", script.fn(clock)));
    await clock.advance(100);
    expect(script.calls).toHaveLength(2);
    expect(codeOf(result.error)).toBe("KMS_CIRCUIT_OPEN");
    expect((result.error as KmsError).cause).toBe(errors[1]);
  });

  it("counts only consecutive outages: a success resets the count", async () => {
    const { clock, policy, circuitEvents } = setup(
      options({ retry: { maxAttempts: 1 }, circuitBreaker: { failureThreshold: 3 } }),
    );
    await failTimes(policy, clock, 2);
    await expect(policy.execute("describeKey", async () => "ok")).resolves.toBe("ok");
    await failTimes(policy, clock, 2);
    expect(policy.circuitState).toBe("closed");
    await failTimes(policy, clock, 1);
    expect(policy.circuitState).toBe("open");
    expect(circuitEvents()).toEqual(["closed->open"]);
  });

  it("is not opened by throttling or other client errors, which neither count nor reset", async () => {
    const { clock, policy, circuitEvents } = setup(
      options({ retry: { maxAttempts: 1 }, circuitBreaker: { failureThreshold: 3 } }),
    );
    for (const code of ["KMS_THROTTLED", "KMS_ACCESS_DENIED", "KMS_KEY_NOT_FOUND", "KMS_KEY_DISABLED", "KMS_PROVIDER_ERROR"] as const) {
      await failTimes(policy, clock, 5, () => kmsError(code));
    }
    await failTimes(policy, clock, 5, () => new Error("unexpected"));
    expect(policy.circuitState).toBe("closed");
    expect(circuitEvents()).toEqual([]);

    await failTimes(policy, clock, 2);
    await failTimes(policy, clock, 3, () => kmsError("KMS_THROTTLED")); // does not reset the 2 outages
    expect(policy.circuitState).toBe("closed");
    await failTimes(policy, clock, 1);
    expect(policy.circuitState).toBe("open");
  });

  it("with throttling retried to exhaustion, the circuit stays closed", async () => {
    const { clock, policy } = setup(options({ retry: { maxAttempts: 3 }, circuitBreaker: { failureThreshold: 2 } }));
    let calls = 0;
    for (let i = 0; i < 4; i++) {
      const result = track(
        policy.execute("generateDataKey", async () => {
          calls++;
          throw kmsError("KMS_THROTTLED");
        }),
      );
      await clock.advance(1000);
      expect(codeOf(result.error)).toBe("KMS_THROTTLED");
    }
    expect(calls).toBe(12);
    expect(policy.circuitState).toBe("closed");
  });

  it("leaves the circuit half-open when the trial's failure says nothing about availability", async () => {
    const { clock, policy, circuitEvents } = setup(
      options({ retry: { maxAttempts: 1 }, circuitBreaker: { failureThreshold: 1, resetAfterMs: 1000 } }),
    );
    await failTimes(policy, clock, 1);
    await clock.advance(1000);
    await failTimes(policy, clock, 1, () => kmsError("KMS_ACCESS_DENIED"));
    expect(policy.circuitState).toBe("half-open");
    const next = track(policy.execute("unwrapDataKey", async () => "ok")); // becomes the trial
    await clock.advance(0);
    expect(next.value).toBe("ok");
    expect(circuitEvents()).toEqual(["closed->open", "open->half-open", "half-open->closed"]);
  });

  it("ignores a slow success from before the circuit opened", async () => {
    const { clock, policy } = setup(
      options({ retry: { maxAttempts: 1 }, circuitBreaker: { failureThreshold: 1, resetAfterMs: 1000 } }),
    );
    const slow = deferred<string>();
    const slowResult = track(policy.execute("unwrapDataKey", () => slow.promise));
    await failTimes(policy, clock, 1);
    expect(policy.circuitState).toBe("open");
    slow.resolve("late but fine");
    await clock.advance(0);
    expect(slowResult.value).toBe("late but fine");
    expect(policy.circuitState).toBe("open");
  });
});

describe("ProviderPolicy: bulkhead", () => {
  it("runs at most maxConcurrent, queues maxQueue FIFO, rejects overflow at once with KMS_OVERLOADED", async () => {
    const { clock, policy, callEvents } = setup(options({ bulkhead: { maxConcurrent: 2, maxQueue: 2 } }));
    const started: string[] = [];
    const gates = new Map<string, Deferred<string>>();
    const run = (name: string) =>
      track(
        policy.execute("unwrapDataKey", () => {
          started.push(name);
          const gate = deferred<string>();
          gates.set(name, gate);
          return gate.promise;
        }),
      );
    const a = run("a");
    const b = run("b");
    const c = run("c");
    const d = run("d");
    const e = run("e");
    await clock.advance(0);
    expect(started).toEqual(["a", "b"]);
    expect(policy.load).toEqual({ inFlight: 2, queued: 2 });
    expect(codeOf(e.error)).toBe("KMS_OVERLOADED");
    expect((e.error as KmsError).provider).toBe(PROVIDER);
    expect((e.error as KmsError).retryable).toBe(true);
    expect(callEvents().filter((ev) => ev.code === "KMS_OVERLOADED")).toEqual([
      { type: "kms.call", provider: PROVIDER, operation: "unwrapDataKey", outcome: "error", code: "KMS_OVERLOADED", attempt: 0, durationMs: 0 },
    ]);
    expect([a, b, c, d].some((t) => t.done)).toBe(false);

    gates.get("b")!.resolve("B");
    await clock.advance(0);
    expect(b.value).toBe("B");
    expect(started).toEqual(["a", "b", "c"]);
    expect(policy.load).toEqual({ inFlight: 2, queued: 1 });

    // Queue has room again: a new call waits behind d.
    const f = run("f");
    gates.get("a")!.resolve("A");
    await clock.advance(0);
    expect(started).toEqual(["a", "b", "c", "d"]);

    gates.get("c")!.reject(kmsError("KMS_ACCESS_DENIED")); // a failure releases its slot too
    await clock.advance(0);
    expect(started).toEqual(["a", "b", "c", "d", "f"]);
    expect(codeOf(c.error)).toBe("KMS_ACCESS_DENIED");

    gates.get("d")!.resolve("D");
    gates.get("f")!.resolve("F");
    await clock.advance(0);
    expect([a.value, d.value, f.value]).toEqual(["A", "D", "F"]);

    expect(policy.load).toEqual({ inFlight: 0, queued: 0 });
    // Everything released: full capacity is available again.
    const again = [run("g"), run("h"), run("i"), run("j")];
    await clock.advance(0);
    expect(started.slice(-2)).toEqual(["g", "h"]);
    expect(again.every((t) => !t.done)).toBe(true);
  });

  it("with maxQueue 0, rejects everything beyond maxConcurrent without calling the provider", async () => {
    const { clock, policy } = setup(options({ bulkhead: { maxConcurrent: 1, maxQueue: 0 } }));
    let calls = 0;
    const gate = deferred<string>();
    const first = track(
      policy.execute("describeKey", () => {
        calls++;
        return gate.promise;
      }),
    );
    const second = track(
      policy.execute("describeKey", async () => {
        calls++;
        return "x";
      }),
    );
    await clock.advance(0);
    expect(calls).toBe(1);
    expect(codeOf(second.error)).toBe("KMS_OVERLOADED");
    gate.resolve("ok");
    await clock.advance(0);
    expect(first.value).toBe("ok");
  });
});

describe("ProviderPolicy: OpenTelemetry spans", () => {
  it("records one span per execute with provider, operation and attempts, the call running inside it", async () => {
    const { clock, policy } = setup(options({ retry: { maxAttempts: 3 } }), () => 0);
    const activeSpanIds: (string | undefined)[] = [];
    const script = scripted([kmsError("KMS_UNAVAILABLE")], "ok");
    const inner = script.fn(clock);
    const result = track(
      policy.execute("generateDataKey", (signal) => {
        activeSpanIds.push(trace.getActiveSpan()?.spanContext().spanId);
        return inner(signal);
      }),
    );
    await clock.advance(0);
    expect(result.value).toBe("ok");
    const spans = exporter.getFinishedSpans();
    expect(spans).toHaveLength(1);
    const span = spans[0]!;
    expect(span.name).toBe("kms.generateDataKey");
    expect(span.instrumentationScope.name).toBe("@kms/core");
    expect(span.attributes).toEqual({ "kms.provider": PROVIDER, "kms.operation": "generateDataKey", "kms.outcome": "success", "kms.attempts": 2 });
    expect(span.status.code).toBe(SpanStatusCode.UNSET);
    expect(activeSpanIds).toEqual([span.spanContext().spanId, span.spanContext().spanId]);
  });

  it.each([
    ["a non-KmsError", () => new Error("password=hunter2-SECRET"), "KMS_PROVIDER_ERROR"],
    [
      "a KmsError",
      () => new KmsError("KMS_ACCESS_DENIED", "denied for token hunter2-SECRET", { provider: PROVIDER }),
      "KMS_ACCESS_DENIED",
    ],
  ] as const)("records only the code of %s: status ERROR, no exception event, no secret", async (_label, make, code) => {
    const { clock, policy } = setup(options({ retry: { maxAttempts: 3 } }));
    const result = track(
      policy.execute("unwrapDataKey", async () => {
        throw make();
      }),
    );
    await clock.advance(0);
    expect(codeOf(result.error)).toBe(code);
    const [span] = exporter.getFinishedSpans();
    expect(span).toBeDefined();
    expect(span!.name).toBe("kms.unwrapDataKey");
    expect(span!.attributes).toEqual({
      "kms.provider": PROVIDER,
      "kms.operation": "unwrapDataKey",
      "kms.outcome": "error",
      "kms.attempts": 1,
      "kms.error.code": code,
    });
    expect(span!.status).toEqual({ code: SpanStatusCode.ERROR, message: code });
    expect(span!.events).toEqual([]);
    const recorded = JSON.stringify({ attributes: span!.attributes, status: span!.status, events: span!.events });
    expect(recorded).not.toContain("hunter2");
    for (const value of Object.values(span!.attributes)) expect(String(value)).not.toContain("SECRET");
  });

  it("records retries exhausted, circuit-open and overload failures with their codes", async () => {
    const { clock, policy } = setup(
      options({
        timeoutMs: 100,
        retry: { maxAttempts: 3 },
        circuitBreaker: { failureThreshold: 3, resetAfterMs: 1000 },
        bulkhead: { maxConcurrent: 1, maxQueue: 0 },
      }),
    );
    const timedOut = track(policy.execute("wrapDataKey", () => new Promise<string>(() => {})));
    await clock.advance(1000);
    expect(codeOf(timedOut.error)).toBe("KMS_TIMEOUT");
    expect(policy.circuitState).toBe("open");

    const fastFail = track(policy.execute("wrapDataKey", async () => "x"));
    await clock.advance(0);
    expect(codeOf(fastFail.error)).toBe("KMS_CIRCUIT_OPEN");

    await clock.advance(1000); // half-open
    const gate = deferred<string>();
    const holder = track(policy.execute("describeKey", () => gate.promise));
    const overloaded = track(policy.execute("describeKey", async () => "y"));
    await clock.advance(0);
    expect(codeOf(overloaded.error)).toBe("KMS_OVERLOADED");
    gate.resolve("held");
    await clock.advance(0);
    expect(holder.value).toBe("held");

    const summary = exporter
      .getFinishedSpans()
      .map((s) => [s.name, s.attributes["kms.attempts"], s.attributes["kms.error.code"], s.status.code]);
    expect(summary).toEqual([
      ["kms.wrapDataKey", 3, "KMS_TIMEOUT", SpanStatusCode.ERROR],
      ["kms.wrapDataKey", 1, "KMS_CIRCUIT_OPEN", SpanStatusCode.ERROR],
      ["kms.describeKey", 0, "KMS_OVERLOADED", SpanStatusCode.ERROR],
      ["kms.describeKey", 1, undefined, SpanStatusCode.UNSET],
    ]);
  });
});
