/**
 * The provider contract: what a KMS adapter implements. Core calls providers only through their
 * resilience policy, and checks what they return (data-key length, key-section limits); providers don't
 * cache, don't retry, never log or put key bytes in messages, and map their SDK's errors to
 * `KmsError` codes with the SDK error as `cause`. See docs/WRITING_A_PROVIDER.md.
 */
import type { KmsError } from "./errors";

/** Caller-supplied key/value pairs bound to a ciphertext; the same pairs are needed to decrypt. */
export type EncryptionContext = Readonly<Record<string, string>>;

/** Length in bytes of every data key (AES-256). */
export const DATA_KEY_BYTES = 32;

/**
 * A provider's own copy of a data key an SDK returned: exactly `DATA_KEY_BYTES`, in memory of its own
 * (the SDK's bytes may sit in Node's shared Buffer pool, where zeroing would be partial), the SDK's
 * copy zeroed either way. Undefined when `bytes` holds no data key.
 */
export function takeDataKey(bytes: unknown): Buffer | undefined {
  if (!(bytes instanceof Uint8Array)) return undefined;
  try {
    return bytes.length === DATA_KEY_BYTES ? copyKeyBytes(bytes) : undefined;
  } finally {
    bytes.fill(0);
  }
}

/**
 * A copy of key bytes in memory of its own: `Buffer.from(bytes)` of a small array lands in Node's
 * shared 8 KiB pool, next to unrelated buffers (where zeroing is the copy's only, and the block stays alive).
 */
export function copyKeyBytes(bytes: Uint8Array): Buffer {
  const copy = Buffer.alloc(bytes.byteLength);
  copy.set(bytes);
  return copy;
}

/** A key id short enough for a health detail (at most 120 characters). */
export function shortKeyId(keyId: string): string {
  return keyId.length <= 120 ? keyId : `${keyId.slice(0, 117)}...`;
}

export interface ProviderCapabilities {
  /** The service binds the encryption context to the wrapped key (AAD / EncryptionContext). */
  readonly encryptionContext: boolean;
  /** `rotateKey` creates a new key version. */
  readonly rotation: boolean;
  /** `generateDataKey` exists; otherwise core draws the key locally and calls `wrapDataKey`. */
  readonly generatesDataKeys: boolean;
  /** Not fit for production (the embedded `local` provider). */
  readonly insecure: boolean;
  /** What `disableKey` can do; absent or empty when the provider has no `disableKey`. */
  readonly keyDisabling?: readonly KeyDisableMode[];
}

/**
 * How `disableKey` takes a key out of use (crypto-shredding): `disable` is reversible (the key can be
 * enabled again); `schedule-destruction` starts the service's waiting period, after which the key
 * material is gone for good (AWS `ScheduleKeyDeletion`, GCP `DestroyCryptoKeyVersion`…).
 */
export type KeyDisableMode = "disable" | "schedule-destruction";

export interface DisableKeyOptions extends Cancellable {
  readonly mode: KeyDisableMode;
}

export interface DisableKeyResult {
  /** The service's request id, to match the call in its audit log (CloudTrail, Vault's audit device…). */
  readonly requestId?: string;
}

/** Options of every provider call: core's cancellation signal. */
export interface Cancellable {
  /** Aborted when core's timeout fires; pass it to the SDK call. */
  readonly signal?: AbortSignal;
}

export interface GenerateDataKeyRequest extends Cancellable {
  readonly keyId: string;
  readonly context: EncryptionContext;
}

export interface WrapDataKeyRequest extends Cancellable {
  readonly keyId: string;
  /** The 32-byte data key. Never copied into errors or logs. */
  readonly plaintextKey: Uint8Array;
  readonly context: EncryptionContext;
}

export interface UnwrapDataKeyRequest extends Cancellable {
  readonly keyId: string;
  readonly keyVersion: string;
  readonly wrappedKey: Uint8Array;
  readonly context: EncryptionContext;
}

export interface WrappedDataKey {
  readonly wrappedKey: Uint8Array;
  /** The KEK version that wrapped it ("" when the service does not expose versions). */
  readonly keyVersion: string;
}

export interface DataKey extends WrappedDataKey {
  /** The 32-byte plaintext data key. Core zeroes it once it has derived what it needs. */
  readonly plaintextKey: Uint8Array;
}

export interface KeyDescription {
  readonly keyId: string;
  readonly enabled: boolean;
  /** The version new data keys are wrapped under. */
  readonly currentVersion: string;
  readonly createdAt?: Date;
  /** When the current version was created (for cryptoperiod checks). */
  readonly rotatedAt?: Date;
}

export interface RotationResult {
  readonly keyId: string;
  readonly previousVersion: string;
  readonly currentVersion: string;
}

export interface ProviderHealth {
  readonly healthy: boolean;
  /** True for providers that are not fit for production. */
  readonly insecure: boolean;
  /** Short, secret-free explanation for operators. */
  readonly detail?: string;
}

export interface PermissionCheck {
  /** The provider's own permission name, e.g. `kms:GenerateDataKey`. */
  readonly permission: string;
  readonly ok: boolean;
  /** What to do when it fails. */
  readonly remediation?: string;
  readonly docsUrl?: string;
  readonly error?: KmsError;
}

export interface KmsProvider {
  /** Written into every envelope; never renamed once data exists. `[a-z0-9-]{1,64}`. */
  readonly id: string;
  readonly capabilities: ProviderCapabilities;
  generateDataKey?(req: GenerateDataKeyRequest): Promise<DataKey>;
  wrapDataKey(req: WrapDataKeyRequest): Promise<WrappedDataKey>;
  unwrapDataKey(req: UnwrapDataKeyRequest): Promise<Uint8Array>;
  describeKey(keyId: string, options?: Cancellable): Promise<KeyDescription>;
  rotateKey(keyId: string, options?: Cancellable): Promise<RotationResult>;
  /**
   * Takes the whole key (every version) out of use: afterwards it neither wraps nor unwraps
   * (`KMS_KEY_DISABLED`, or `KMS_KEY_NOT_FOUND` once destroyed). Only for the modes listed in
   * `capabilities.keyDisabling`; other modes fail with `INPUT_INVALID`.
   */
  disableKey?(keyId: string, options: DisableKeyOptions): Promise<DisableKeyResult>;
  checkHealth(keyIds: readonly string[], options?: Cancellable): Promise<ProviderHealth>;
  validatePermissions(keyId: string, options?: Cancellable): Promise<PermissionCheck[]>;
  close(): Promise<void>;
}

/** The result of parsing a provider's settings from configuration. */
export type SettingsResult<S> =
  | { readonly ok: true; readonly settings: S }
  | { readonly ok: false; readonly issues: readonly { path: string; message: string }[] };

/**
 * What a provider package exports for configuration-driven set-up: the app lists the definitions it
 * installed (`createKms({ registry: [localKms, awsKms], config })`), and core turns `config.providers`
 * entries into providers only through that explicit table.
 */
export interface ProviderDefinition<S = unknown> {
  /** The provider id used in configuration and written into envelopes. */
  readonly id: string;
  /** The npm package that provides it, named in "not installed" errors. */
  readonly packageName: string;
  /** Validates raw settings (from a file or environment) without any network access. */
  parseSettings(raw: unknown): SettingsResult<S>;
  /**
   * Why this provider could never use `keyId` (its own id syntax, e.g. an ARN or a path), or
   * undefined. Checked at start-up for every configured key, so a bad id is a configuration error,
   * not a failure at the first encrypt. Core's own rules (`keyIdProblem` in envelope.ts) come first.
   */
  keyIdProblem?(keyId: string): string | undefined;
  create(settings: S): KmsProvider;
}

/** Provider ids the toolkit knows, with the package that provides each. */
export const KNOWN_PROVIDERS: Readonly<Record<string, string>> = {
  local: "@kms/core",
  "aws-kms": "@kms/aws",
  vault: "@kms/vault",
  "gcp-kms": "@kms/gcp",
  "azure-key-vault": "@kms/azure",
};

export const PROVIDER_ID_PATTERN = /^[a-z0-9-]{1,64}$/;

/** Wraps an existing provider instance as a definition (settings must be `{}`), e.g. for tests. */
export function definitionOf(provider: KmsProvider, packageName = "(provided instance)"): ProviderDefinition<Record<string, never>> {
  return {
    id: provider.id,
    packageName,
    parseSettings(raw) {
      const empty = raw === undefined || (typeof raw === "object" && raw !== null && Object.keys(raw).length === 0);
      return empty
        ? { ok: true, settings: {} }
        : { ok: false, issues: [{ path: "", message: "a provided instance takes no settings: use {}" }] };
    },
    create: () => provider,
  };
}
