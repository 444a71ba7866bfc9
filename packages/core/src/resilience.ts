/**
 * Resilience: the one policy every provider call in core goes through, one instance per provider.
 *
 * Layering, outermost first:
 *
 *     bulkhead( retry( circuitBreaker( timeout( call ) ) ) )
 *
 * - **bulkhead** (outermost) bounds concurrency toward the provider: at most `maxConcurrent`
 *   executions in flight, up to `maxQueue` more waiting in FIFO order, anything beyond rejected at
 *   once with `KMS_OVERLOADED`. A slot is held across retries and their backoff, so retries of work
 *   already admitted cannot multiply the load beyond the bound.
 * - **retry** re-runs only failures whose `retryable` is true, with full-jitter exponential backoff
 *   (`random() * min(maxDelayMs, baseDelayMs * 2^(attempt-1))`), honouring an error's `retryAfterMs`
 *   (throttling with Retry-After) up to `maxDelayMs`. `KMS_CIRCUIT_OPEN` and `KMS_OVERLOADED` are
 *   never retried: both mean "back off now", and retrying them would only add load.
 * - **circuit breaker** sits inside retry so it sees every attempt, not every execution: an outage
 *   opens it after `failureThreshold` failed attempts, and the retries in flight stop as soon as it
 *   opens (the next attempt fails fast with `KMS_CIRCUIT_OPEN`; a retry loop that sees the circuit
 *   open after a failure stops without waiting out its backoff).
 * - **timeout** (innermost) bounds each attempt, not the whole execution: after `timeoutMs` the
 *   attempt's `AbortSignal` (passed to the call, for the SDK) is aborted and the attempt fails with
 *   the retryable `KMS_TIMEOUT`, even if the call ignores the signal. A result or rejection that
 *   arrives later is swallowed, and key bytes in a late result are zeroed (see `zeroLateResult`).
 *
 * Circuit breaker rules: only failures that say the service is down (`KMS_UNAVAILABLE`,
 * `KMS_TIMEOUT`) count, and only consecutive ones: a success resets the count. Every other error
 * (access denied, not found, throttled, an unexpected provider error…) is neutral: it neither counts
 * nor resets, because it says nothing about availability (a throttled service is up, and throttling
 * must never open the circuit). When open, calls fail with `KMS_CIRCUIT_OPEN` without reaching the
 * provider until `resetAfterMs` has passed; then the circuit is half-open and exactly one trial
 * attempt goes through (concurrent ones fail fast): its success closes the circuit, its "down"
 * failure re-opens it for another `resetAfterMs`, and a neutral outcome leaves it half-open so the
 * next call becomes the trial. Results of attempts admitted before the last state change are ignored
 * by the breaker (a slow success from before the outage must not close a circuit opened since).
 *
 * Telemetry: a `kms.call` event per attempt (an attempt rejected by the open circuit is reported with
 * `code: "KMS_CIRCUIT_OPEN"` and `durationMs: 0`; an execution rejected by the bulkhead is reported
 * once with `attempt: 0`), a `circuit.state` event per transition, and one OpenTelemetry span per
 * execution named `kms.<operation>` carrying only the provider id, the operation, the attempt count
 * and on failure the error code: never an error message (it may hold secrets) or key material.
 *
 * Errors: a rejection that is not a `KmsError` becomes `KMS_PROVIDER_ERROR` with a fixed message and
 * the original as `cause` (its message is not copied: it might hold secrets). Every error thrown
 * carries `provider` (set to this policy's provider id when the provider left it unset).
 *
 * All time comes from the injected `Clock`; all randomness from the injected `random`.
 */
import { SpanStatusCode, context, trace } from "@opentelemetry/api";
import type { Span } from "@opentelemetry/api";

import { sleep, systemClock } from "./clock";
import type { Clock } from "./clock";
import { KmsError, OUTAGE_CODES, isKmsError } from "./errors";
import type { KmsErrorCode } from "./errors";
import { type ResilienceConfig, resilienceSchema } from "./config";
import type { CircuitState, KmsEvents, KmsOperation } from "./events";

/** The `resilience` section of the configuration, defaults filled in (config.ts owns the rules). */
export type ResilienceOptions = ResilienceConfig;

/** The defaults, as the configuration schema fills them in. */
export const DEFAULT_RESILIENCE: ResilienceOptions = resilienceSchema.parse({});

export interface ProviderPolicyDeps {
  events: KmsEvents;
  clock?: Clock;
  /** Uniform in [0, 1); injected so tests get deterministic backoff. */
  random?: () => number;
}

const TRACER_NAME = "@kms/core";


/** Retryable codes this policy still never retries. */
const NEVER_RETRIED: ReadonlySet<string> = new Set<KmsErrorCode>(["KMS_CIRCUIT_OPEN", "KMS_OVERLOADED"]);

export class ProviderPolicy {
  readonly #providerId: string;
  readonly #options: ResilienceOptions;
  readonly #events: KmsEvents;
  readonly #clock: Clock;
  readonly #random: () => number;
  readonly #breaker: CircuitBreaker;
  readonly #bulkhead: Bulkhead;
  #lastError: { code: string; at: number } | undefined;

  constructor(providerId: string, options: ResilienceOptions, deps: ProviderPolicyDeps) {
    validateOptions(providerId, options);
    this.#providerId = providerId;
    this.#options = options;
    this.#events = deps.events;
    this.#clock = deps.clock ?? systemClock;
    this.#random = deps.random ?? Math.random;
    this.#breaker = new CircuitBreaker(options.circuitBreaker, this.#clock, (from, to) => {
      if (this.#events.active) this.#events.emit({ type: "circuit.state", provider: providerId, from, to });
    });
    this.#bulkhead = new Bulkhead(options.bulkhead.maxConcurrent, options.bulkhead.maxQueue);
  }

  get circuitState(): CircuitState {
    return this.#breaker.state;
  }

  /** The most recent failed operation's code and time (clock ms), if any. */
  get lastError(): { code: string; at: number } | undefined {
    return this.#lastError;
  }

  /** Calls holding a bulkhead slot, and calls queued for one. */
  get load(): { inFlight: number; queued: number } {
    return { inFlight: this.#bulkhead.inFlight, queued: this.#bulkhead.queued };
  }

  /**
   * Runs `call` under the policy. `call` gets the attempt's AbortSignal (pass it to the SDK) and may
   * be invoked several times (retries), so it must be safe to repeat.
   */
  async execute<T>(operation: KmsOperation, call: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const span = trace.getTracer(TRACER_NAME).startSpan(`kms.${operation}`, {
      attributes: { "kms.provider": this.#providerId, "kms.operation": operation },
    });
    const progress = { attempts: 0 };
    const started = this.#clock.now();
    let code: string | undefined;
    try {
      return await this.#bulkheaded(operation, call, span, progress);
    } catch (error) {
      code = isKmsError(error) ? error.code : "KMS_PROVIDER_ERROR";
      span.setAttribute("kms.error.code", code);
      span.setStatus({ code: SpanStatusCode.ERROR, message: code });
      this.#lastError = { code, at: this.#clock.now() };
      throw error;
    } finally {
      span.setAttribute("kms.outcome", code === undefined ? "success" : "error");
      span.setAttribute("kms.attempts", progress.attempts);
      span.end();
      if (this.#events.active) {
        this.#events.emit({
          type: "kms.operation",
          provider: this.#providerId,
          operation,
          outcome: code === undefined ? "success" : "error",
          ...(code === undefined ? {} : { code }),
          attempts: progress.attempts,
          durationMs: this.#clock.now() - started,
        });
      }
    }
  }

  async #bulkheaded<T>(
    operation: KmsOperation,
    call: (signal: AbortSignal) => Promise<T>,
    span: Span,
    progress: { attempts: number },
  ): Promise<T> {
    let release: () => void;
    try {
      release = await this.#bulkhead.acquire(this.#providerId);
    } catch (error) {
      this.#emitCall(operation, "error", (error as KmsError).code, 0, 0);
      throw error;
    }
    try {
      return await this.#retrying(operation, call, span, progress);
    } finally {
      release();
    }
  }

  async #retrying<T>(
    operation: KmsOperation,
    call: (signal: AbortSignal) => Promise<T>,
    span: Span,
    progress: { attempts: number },
  ): Promise<T> {
    const { maxAttempts } = this.#options.retry;
    for (let attempt = 1; ; attempt++) {
      progress.attempts = attempt;
      try {
        return await this.#attempt(operation, call, span, attempt);
      } catch (error) {
        const kmsError = error as KmsError; // #attempt only throws normalized KmsErrors
        if (!kmsError.retryable || NEVER_RETRIED.has(kmsError.code) || attempt >= maxAttempts) throw kmsError;
        // The breaker opened (maybe on this very failure): the next attempt would fail fast anyway,
        // so fail fast now instead of after the backoff.
        if (this.#breaker.rejectsNow()) throw this.#circuitOpenError(kmsError);
        await sleep(this.#clock, this.#backoffMs(attempt, kmsError));
      }
    }
  }

  /** One attempt: circuit breaker around timeout around the call. Throws only normalized KmsErrors. */
  async #attempt<T>(
    operation: KmsOperation,
    call: (signal: AbortSignal) => Promise<T>,
    span: Span,
    attempt: number,
  ): Promise<T> {
    const ticket = this.#breaker.admit();
    if (ticket === undefined) {
      const error = this.#circuitOpenError(undefined);
      this.#emitCall(operation, "error", error.code, attempt, 0);
      throw error;
    }
    const started = this.#clock.now();
    try {
      const value = await this.#withTimeout(operation, call, span);
      this.#breaker.onSuccess(ticket);
      this.#emitCall(operation, "success", undefined, attempt, this.#clock.now() - started);
      return value;
    } catch (raw) {
      const error = this.#normalize(operation, raw);
      this.#breaker.onFailure(ticket, error.code);
      this.#emitCall(operation, "error", error.code, attempt, this.#clock.now() - started);
      throw error;
    }
  }

  #withTimeout<T>(operation: KmsOperation, call: (signal: AbortSignal) => Promise<T>, span: Span): Promise<T> {
    const controller = new AbortController();
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const cancelTimer = this.#clock.setTimer(this.#options.timeoutMs, () => {
        if (settled) return;
        settled = true;
        const error = new KmsError(
          "KMS_TIMEOUT",
          `${this.#providerId} ${operation} timed out after ${this.#options.timeoutMs} ms`,
          { provider: this.#providerId },
        );
        controller.abort(error);
        reject(error);
      });
      let pending: Promise<T>;
      try {
        // The span is the active one while the SDK runs, so its own instrumentation nests under it.
        pending = Promise.resolve(context.with(trace.setSpan(context.active(), span), call, undefined, controller.signal));
      } catch (error) {
        pending = Promise.reject(error); // a call that throws synchronously fails like a rejection
      }
      // Both handlers are always attached, so a late rejection is swallowed, never unhandled.
      pending.then(
        (value) => {
          if (settled) return zeroLateResult(value);
          settled = true;
          cancelTimer();
          resolve(value);
        },
        (error: unknown) => {
          if (settled) return;
          settled = true;
          cancelTimer();
          reject(error);
        },
      );
    });
  }

  #backoffMs(failedAttempt: number, error: KmsError): number {
    const { baseDelayMs, maxDelayMs } = this.#options.retry;
    const ceiling = Math.min(maxDelayMs, baseDelayMs * 2 ** (failedAttempt - 1));
    const delay = this.#random() * ceiling;
    const retryAfterMs = (error as { retryAfterMs?: unknown }).retryAfterMs;
    if (typeof retryAfterMs === "number" && Number.isFinite(retryAfterMs) && retryAfterMs > 0) {
      return Math.max(delay, Math.min(retryAfterMs, maxDelayMs));
    }
    return delay;
  }

  /** A KmsError with `provider` set; anything else becomes KMS_PROVIDER_ERROR without its message. */
  #normalize(operation: KmsOperation, error: unknown): KmsError {
    if (isKmsError(error)) {
      if (error.provider === undefined) {
        // Keep the provider's own error object (identity, extra fields such as retryAfterMs).
        try {
          Object.defineProperty(error, "provider", { value: this.#providerId });
        } catch {
          // A frozen error keeps what it has.
        }
      }
      return error;
    }
    return new KmsError("KMS_PROVIDER_ERROR", `${this.#providerId} ${operation} failed unexpectedly`, {
      provider: this.#providerId,
      cause: error,
    });
  }

  #circuitOpenError(cause: KmsError | undefined): KmsError {
    return new KmsError("KMS_CIRCUIT_OPEN", `${this.#providerId} circuit is open; failing fast`, {
      provider: this.#providerId,
      ...(cause === undefined ? {} : { cause }),
    });
  }

  #emitCall(
    operation: KmsOperation,
    outcome: "success" | "error",
    code: string | undefined,
    attempt: number,
    durationMs: number,
  ): void {
    if (!this.#events.active) return;
    this.#events.emit({
      type: "kms.call",
      provider: this.#providerId,
      operation,
      outcome,
      ...(code === undefined ? {} : { code }),
      attempt,
      durationMs,
    });
  }
}

/**
 * Consecutive-failure circuit breaker. Each admitted attempt gets a ticket (the state generation it
 * was admitted in); outcomes reported with a stale ticket are ignored.
 */
class CircuitBreaker {
  #state: CircuitState = "closed";
  #generation = 0;
  #failures = 0;
  #openedAt = 0;
  #trialInFlight = false;
  #cancelResetTimer: (() => void) | undefined;
  readonly #options: ResilienceOptions["circuitBreaker"];
  readonly #clock: Clock;
  readonly #onTransition: (from: CircuitState, to: CircuitState) => void;

  constructor(
    options: ResilienceOptions["circuitBreaker"],
    clock: Clock,
    onTransition: (from: CircuitState, to: CircuitState) => void,
  ) {
    this.#options = options;
    this.#clock = clock;
    this.#onTransition = onTransition;
  }

  get state(): CircuitState {
    return this.#state;
  }

  /** Would an attempt made now be rejected? (No side effects.) */
  rejectsNow(): boolean {
    if (this.#state === "open") return !this.#resetDue();
    return this.#state === "half-open" && this.#trialInFlight;
  }

  /** Admits an attempt and returns its ticket, or `undefined` when it must fail fast. */
  admit(): number | undefined {
    if (this.#state === "open") {
      if (!this.#resetDue()) return undefined;
      this.#transition("half-open");
    }
    if (this.#state === "half-open") {
      if (this.#trialInFlight) return undefined;
      this.#trialInFlight = true;
    }
    return this.#generation;
  }

  onSuccess(ticket: number): void {
    if (ticket !== this.#generation) return;
    if (this.#state === "half-open") this.#transition("closed");
    else this.#failures = 0;
  }

  onFailure(ticket: number, code: string): void {
    if (ticket !== this.#generation) return;
    const outage = OUTAGE_CODES.has(code);
    if (this.#state === "half-open") {
      if (outage) this.#transition("open");
      else this.#trialInFlight = false; // neutral: the next call becomes the trial
      return;
    }
    if (outage && ++this.#failures >= this.#options.failureThreshold) this.#transition("open");
  }

  #resetDue(): boolean {
    return this.#clock.now() - this.#openedAt >= this.#options.resetAfterMs;
  }

  #transition(to: CircuitState): void {
    const from = this.#state;
    this.#state = to;
    this.#generation++;
    this.#failures = 0;
    this.#trialInFlight = false;
    this.#cancelResetTimer?.();
    this.#cancelResetTimer = undefined;
    if (to === "open") {
      this.#openedAt = this.#clock.now();
      // Move to half-open on time, so `circuitState` (health, metrics) is right even with no traffic.
      this.#cancelResetTimer = this.#clock.setTimer(this.#options.resetAfterMs, () => {
        this.#cancelResetTimer = undefined;
        if (this.#state === "open") this.#transition("half-open");
      });
    }
    this.#onTransition(from, to);
  }
}

/** Bounded concurrency with a bounded FIFO queue; a released slot is handed to the oldest waiter. */
class Bulkhead {
  #active = 0;
  readonly #waiters: (() => void)[] = [];
  #head = 0;
  readonly #maxConcurrent: number;
  readonly #maxQueue: number;

  constructor(maxConcurrent: number, maxQueue: number) {
    this.#maxConcurrent = maxConcurrent;
    this.#maxQueue = maxQueue;
  }

  /** Calls holding a slot. */
  get inFlight(): number {
    return this.#active;
  }

  /** Calls waiting for a slot. */
  get queued(): number {
    return this.#waiters.length - this.#head;
  }

  /** Resolves with an idempotent release function; rejects at once with KMS_OVERLOADED when full. */
  acquire(providerId: string): Promise<() => void> {
    if (this.#active < this.#maxConcurrent) {
      this.#active++;
      return Promise.resolve(this.#releaser());
    }
    if (this.#waiters.length - this.#head >= this.#maxQueue) {
      return Promise.reject(
        new KmsError("KMS_OVERLOADED", `${providerId}: too many concurrent KMS calls; request rejected`, {
          provider: providerId,
        }),
      );
    }
    return new Promise((resolve) => {
      // The slot is handed over by the releaser, so `#active` already counts this waiter.
      this.#waiters.push(() => resolve(this.#releaser()));
    });
  }

  #releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (this.#head < this.#waiters.length) {
        const next = this.#waiters[this.#head]!;
        this.#head++;
        if (this.#head > 1024 && this.#head * 2 > this.#waiters.length) {
          this.#waiters.splice(0, this.#head);
          this.#head = 0;
        }
        next();
      } else {
        this.#active--;
      }
    };
  }
}

/** Options given directly (not through `createKms`) get the configuration's checks too. */
function validateOptions(providerId: string, options: ResilienceOptions): void {
  const parsed = resilienceSchema.safeParse(options);
  if (parsed.success) return;
  const problems = parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`);
  throw new KmsError("KMS_CONFIG_INVALID", `Invalid resilience options for ${providerId}: ${problems.join("; ")}`, {
    provider: providerId,
  });
}

/**
 * Nobody will ever use a result that arrives after its attempt timed out, so plaintext data keys in
 * it are wiped at once instead of lingering until garbage collection: an unwrapped key (bytes) or a
 * generated one (`plaintextKey`).
 */
function zeroLateResult(value: unknown): void {
  if (value instanceof Uint8Array) value.fill(0);
  else if (typeof value === "object" && value !== null) {
    const key = (value as { plaintextKey?: unknown }).plaintextKey;
    if (key instanceof Uint8Array) key.fill(0);
  }
}
