import { describe, expect, it } from "@jest/globals";
import { createEvidenceLog, memoryEvidenceStore, permissionsValidatedEvent } from "../src/evidence";

describe("permissionsValidatedEvent", () => {
  it("counts keys, checks and failures; the writer's extra details cannot replace the counts", () => {
    const report = {
      ok: false,
      keys: [
        { provider: "aws-kms", keyId: "alias/a", checks: [{ ok: true }, { ok: false, error: { message: "SECRET-MARKER" } }] },
        { provider: "vault", keyId: "b", checks: [{ ok: true }] },
      ],
    };
    expect(permissionsValidatedEvent(report, "kms-cli")).toEqual({
      type: "permissions.validated",
      actor: "kms-cli",
      outcome: "failure",
      details: { keys: 2, checks: 3, failed: 1 },
    });
    expect(permissionsValidatedEvent({ ok: true, keys: [] }, "admin-api", { httpRequestId: "req-1", failed: 9 })).toEqual({
      type: "permissions.validated",
      actor: "admin-api",
      outcome: "success",
      details: { httpRequestId: "req-1", keys: 0, checks: 0, failed: 0 },
    });
  });

  it("is an event the log accepts, holding none of the report's texts", async () => {
    const log = createEvidenceLog({ store: memoryEvidenceStore() });
    const report = { ok: false, keys: [{ provider: "aws-kms", keyId: "alias/a", checks: [{ ok: false, error: { message: "SECRET-MARKER" } }] }] };
    const record = await log.append(permissionsValidatedEvent(report, "kms-cli"));
    expect(record).toMatchObject({ seq: 1, type: "permissions.validated", outcome: "failure", details: { keys: 1, checks: 1, failed: 1 } });
    expect(JSON.stringify(record)).not.toMatch(/SECRET-MARKER|alias\/a|aws-kms/);
  });
});
