/**
 * `setupTracing()`: the OpenTelemetry SDK wired for an app that uses @kms/core. Core already makes
 * every cache lookup (`kms.cache.lookup`) and KMS operation (`kms.<operation>`) a span through
 * `@opentelemetry/api`; without a registered SDK those spans cost almost nothing and go nowhere. This
 * registers a Node tracer provider (with async context propagation) that exports them over OTLP/HTTP
 * or to the console, or to any exporter you pass. Span attributes never carry a tenant id, key
 * material, plaintext or context values (core's tests check).
 */
import { context, propagation, trace } from "@opentelemetry/api";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import {
  BatchSpanProcessor,
  ConsoleSpanExporter,
  NodeTracerProvider,
  SimpleSpanProcessor,
  type SpanExporter,
} from "@opentelemetry/sdk-trace-node";

export interface TracingOptions {
  /** `service.name` of every span's resource; default `process.env.OTEL_SERVICE_NAME` or `kms`. */
  serviceName?: string;
  /**
   * Where spans go: `"otlp"` (default: OTLP/HTTP JSON to `otlpUrl`), `"console"` (each span printed
   * as it ends, for development), or your own `SpanExporter` (exported as each span ends).
   */
  exporter?: "otlp" | "console" | SpanExporter;
  /**
   * OTLP traces endpoint; default the `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` /
   * `OTEL_EXPORTER_OTLP_ENDPOINT` environment variables, else `http://localhost:4318/v1/traces`.
   */
  otlpUrl?: string;
}

export interface Tracing {
  readonly provider: NodeTracerProvider;
  /** Exports what is pending, then unregisters what `setupTracing` registered (spans go nowhere again). */
  shutdown(): Promise<void>;
}

/** Registers the OpenTelemetry SDK globally. Call once at start-up, before the first KMS call. */
export function setupTracing(options: TracingOptions = {}): Tracing {
  const exporter = options.exporter ?? "otlp";
  if (exporter !== "otlp" && exporter !== "console" && typeof (exporter as Partial<SpanExporter>)?.export !== "function") {
    throw new TypeError('exporter must be "otlp", "console" or a SpanExporter');
  }
  const processor =
    exporter === "otlp"
      ? new BatchSpanProcessor(new OTLPTraceExporter(options.otlpUrl === undefined ? {} : { url: options.otlpUrl }))
      : new SimpleSpanProcessor(exporter === "console" ? new ConsoleSpanExporter() : exporter);
  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes({ "service.name": options.serviceName ?? process.env.OTEL_SERVICE_NAME ?? "kms" }),
    spanProcessors: [processor],
  });
  provider.register();
  return {
    provider,
    async shutdown() {
      await provider.shutdown();
      trace.disable();
      context.disable();
      propagation.disable();
    },
  };
}
