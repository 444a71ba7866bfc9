/**
 * @kms/rotation: automated key rotation, envelope re-wrap, crypto-shredding and the tamper-evident
 * evidence log with export. See README.md and docs/ROTATION.md.
 */
export type { EvidenceEvent, EvidenceEventType, EvidenceFilter, EvidenceLog, EvidenceRecord, LockLease, LockProvider } from "./types";
export {
  DEFAULT_CRYPTOPERIOD_MS,
  createRotationScheduler,
  kmsEventOf,
  type KeyAgeSummary,
  type PassSummary,
  type RotationEvent,
  type RotationScheduler,
  type RotationSchedulerOptions,
  type RotationStatus,
  type TenantKey,
  type TenantKeySource,
} from "./scheduler";
export { embeddedLocks, postgresLocks, redisLocks, type PostgresLocksOptions, type PostgresLocksPool, type RedisCommandable, type RedisLocksOptions } from "./locks";
export {
  canonicalJson,
  createEvidenceLog,
  CSV_COLUMNS,
  DEFAULT_EVIDENCE_FILE,
  defaultEvidenceFile,
  EVIDENCE_FORMAT_VERSION,
  exportEvidence,
  fromCsv,
  GENESIS_HASH,
  hashRecord,
  memoryEvidenceStore,
  MIN_HMAC_KEY_BYTES,
  openFileEvidenceStore,
  pgEvidenceStore,
  readEvidenceFile,
  verifyEvidence,
  verifyExport,
  type EvidenceExport,
  type EvidenceFailure,
  type EvidenceLogOptions,
  type EvidenceManifest,
  type EvidenceStore,
  type EvidenceVerification,
  type ExportedFilter,
  type ExportFormat,
  type ExportOptions,
  type ExportVerification,
  type FileEvidenceStore,
  type FileEvidenceStoreOptions,
  type FileRecovery,
  type ManifestFailure,
  type MemoryEvidenceStore,
  type PgEvidenceStore,
  type PgEvidenceStoreOptions,
  type PgPoolOrClient,
  type PgQueryable,
  type VerifyOptions,
} from "./evidence";
export {
  rewrapEnvelopes,
  type EnvelopeKey,
  type RewrapCheckpoint,
  type RewrapOptions,
  type RewrapProgress,
  type RewrapReport,
  type StoredEnvelope,
} from "./rewrap";
export { shredTenantKey, type ShredOptions, type ShredResult } from "./shred";
