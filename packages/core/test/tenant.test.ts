import { describe, expect, it } from "@jest/globals";
import { parseTenantIdAsUuid } from "../src/tenant";

describe("parseTenantIdAsUuid", () => {
  it.each([
    ["7C9E6679-7425-40DE-944B-E07FC1F90AE7", "7c9e6679-7425-40de-944b-e07fc1f90ae7"],
    ["{7c9e6679-7425-40de-944b-e07fc1f90ae7}", "7c9e6679-7425-40de-944b-e07fc1f90ae7"],
    ["urn:uuid:7c9e6679-7425-40de-944b-e07fc1f90ae7", "7c9e6679-7425-40de-944b-e07fc1f90ae7"],
    ["7c9e6679742540de944be07fc1f90ae7", "7c9e6679-7425-40de-944b-e07fc1f90ae7"],
  ])("normalises the UUID %s", (input, expected) => {
    expect(parseTenantIdAsUuid(input)).toEqual({ tenantId: expected, isUuid: true });
  });

  it.each(["acme", "tenant-42", "7c9e6679-7425-40de-944b", "{7c9e6679-7425-40de-944b-e07fc1f90ae7"])(
    "falls back to the string itself for %s",
    (input) => {
      expect(parseTenantIdAsUuid(` ${input} `)).toEqual({ tenantId: input, isUuid: false });
    },
  );
});
