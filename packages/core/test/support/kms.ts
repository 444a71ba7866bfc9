import { createKms, type CreateKmsOptions } from "../../src/client";
import { ManualClock } from "../../src/clock";
import type { KmsConfigInput } from "../../src/config";
import type { KmsEvent } from "../../src/events";
import { definitionOf } from "../../src/provider";
import { FakeProvider } from "./fake-provider";

/**
 * A client over a FakeProvider with a manual clock and a recorded event log; pass `shared` for
 * several clients over one provider and clock (instances of one deployment).
 */
export function fakeKms(
  config: Partial<KmsConfigInput> = {},
  options: Partial<CreateKmsOptions> = {},
  shared: { provider?: FakeProvider; clock?: ManualClock } = {},
) {
  const provider = shared.provider ?? new FakeProvider();
  const clock = shared.clock ?? new ManualClock();
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
