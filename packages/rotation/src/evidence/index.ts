export { createEvidenceLog, type EvidenceLogOptions, type EvidenceStore } from "./log";
export { memoryEvidenceStore, type MemoryEvidenceStore } from "./memory-store";
export { DEFAULT_EVIDENCE_FILE, defaultEvidenceFile, openFileEvidenceStore, readEvidenceFile, type FileEvidenceStore, type FileEvidenceStoreOptions, type FileRecovery } from "./file-store";
export { pgEvidenceStore, type PgEvidenceStore, type PgEvidenceStoreOptions, type PgPoolOrClient, type PgQueryable } from "./pg-store";
export { verifyEvidence, type EvidenceFailure, type EvidenceVerification, type VerifyOptions } from "./verify";
export {
  CSV_COLUMNS,
  exportEvidence,
  fromCsv,
  verifyExport,
  type EvidenceExport,
  type EvidenceManifest,
  type ExportedFilter,
  type ExportFormat,
  type ExportOptions,
  type ExportVerification,
  type ManifestFailure,
} from "./export";
export { canonicalJson, EVIDENCE_FORMAT_VERSION, GENESIS_HASH, hashRecord, MIN_HMAC_KEY_BYTES } from "./record";
export { permissionsValidatedEvent, type PermissionReportCounts } from "./permissions";
