import { createKms, type CreateKmsOptions } from "../../src/client";
import { ManualClock } from "../../src/clock";
import type { KmsConfigInput } from "../../src/config";
import type { KmsEvent } from "../../src/events";
import { definitionOf } from "../../src/provider";
import { FakeProvider } from "./fake-provider";

/** A client over a FakeProvider with a manual clock and a recorded event log. */
export function fakeKms(config: Partial<KmsConfigInput> = {}, options: Partial<CreateKmsOptions> = {}) {
  const provider = new FakeProvider();
  const clock = new ManualClock();
  const events: KmsEvent[] = [];
  const kms = createKms({
    registry: [definitionOf(provider)],
    config: {
      providers: { fake: {} },
      tenants: { defaultKey: { provider: "fake", keyId: "default" } },
      resilience: { retry: { maxAttempts: 1, baseDelayMs: 0, maxDelayMs: 0 } },
      ...config,
    },
    env: {},
    clock,
    random: () => 0,
    onEvent: (e) => events.push(e),
    ...options,
  });
  return { kms, provider, clock, events };
}
