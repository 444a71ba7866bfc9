/**
 * The `permissions.validated` record, one definition for every writer (the server's
 * `POST /admin/validate-kms`, `kms validate --evidence`): the outcome and counts only, never a
 * provider's message, a key id or a request id of the provider.
 */
import type { EvidenceEvent } from "../types";

/** What the record needs of a permission report: core's `PermissionReport` or its public form. */
export interface PermissionReportCounts {
  readonly ok: boolean;
  readonly keys: readonly { readonly checks: readonly { readonly ok: boolean }[] }[];
}

/** The event for one finished validation; `extra` adds the writer's own details (the server's `httpRequestId`). */
export function permissionsValidatedEvent(report: PermissionReportCounts, actor: string, extra: Readonly<Record<string, string | number | boolean>> = {}): EvidenceEvent {
  const checks = report.keys.flatMap((k) => k.checks);
  return {
    type: "permissions.validated",
    actor,
    outcome: report.ok ? "success" : "failure",
    details: { ...extra, keys: report.keys.length, checks: checks.length, failed: checks.filter((c) => !c.ok).length },
  };
}
