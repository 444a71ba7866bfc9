/**
 * AWS KMS over its own wire protocol (JSON 1.1: `POST /`, `X-Amz-Target: TrentService.<Op>`,
 * `Content-Type: application/x-amz-json-1.1`), so `@aws-sdk/client-kms` runs against it unchanged.
 *
 * What it checks as the service does:
 * - **SigV4, for real**: the `Authorization` header is parsed, the canonical request is rebuilt from
 *   the signed headers and the body's hash, and the signature is recomputed with the identity's
 *   secret and compared in constant time. An unknown access key is `UnrecognizedClientException`, a
 *   wrong secret `InvalidSignatureException`, with AWS's wording. Clock skew is not checked (tests
 *   may run the emulator on a fake clock).
 * - **authorization per identity**: each identity has the IAM actions it may perform (`allow`); any
 *   other is `AccessDeniedException` with AWS's message (principal, action, key ARN), so permission
 *   errors are produced the way production produces them. `setAllowedActions` changes them at run time.
 * - **key ids in the four forms** (uuid, key ARN, `alias/<name>`, alias ARN); an ARN of another
 *   account or region is `NotFoundException`; every response names the key by its ARN.
 * - **key states**: Disabled keys refuse cryptography (`DisabledException`), keys pending deletion
 *   too (`KMSInvalidStateException`).
 * - **ciphertext blobs** are self-describing (key id and key version inside) and bind the
 *   EncryptionContext: a changed context, a flipped bit or a truncated blob is
 *   `InvalidCiphertextException`; a blob of another key than the request's `KeyId` is
 *   `IncorrectKeyException`.
 *
 * Versions are `EmulatedKey` versions; AWS's `KeyMaterialId` is the version's `materialId`
 * (returned by GenerateDataKey and Decrypt, and as `CurrentKeyMaterialId` in KeyMetadata).
 * Rotation (`RotateKeyOnDemand`) is synchronous here, asynchronous on AWS. Every rotation is
 * recorded with its date (the emulator's clock) and type, for `ListKeyRotations`: `ON_DEMAND` for
 * RotateKeyOnDemand, `AUTOMATIC` for the `rotate()` helper, which stands in for AWS's scheduled
 * rotation (the emulator does not rotate keys on its own as its clock passes the rotation period).
 *
 * Injected faults answer as AWS does: throttle → 400 `ThrottlingException` "Rate exceeded";
 * serverError → that status with `KMSInternalException`; accessDenied → `AccessDeniedException` for
 * the operation; keyDisabled → `DisabledException`; keyNotFound → `NotFoundException`.
 *
 * Request bodies are never logged: the log holds the operation, the KeyId as the request named it,
 * the status and the access key id only.
 */
import { createHash, createHmac, randomBytes, randomUUID, timingSafeEqual } from "node:crypto";
import {
  type AuthResult,
  EmulatedKey,
  Emulator,
  type EmulatorOptions,
  EmulatorReply,
  type EmulatorRequest,
  type EmulatorResponse,
  type FaultKind,
  type RoutedRequest,
  IV_BYTES,
  TAG_BYTES,
  newRequestId,
} from "./framework";

/** A credential the emulator accepts, and what it may do. */
export interface AwsIdentity {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  /** When set, requests must carry it as `X-Amz-Security-Token` (temporary credentials). */
  readonly sessionToken?: string;
  /** The IAM principal named in access-denied messages; default `arn:aws:iam::<account>:user/<accessKeyId>`. */
  readonly principal?: string;
  /** IAM actions allowed (`kms:Decrypt`, `kms:*`…), or `"*"`; default `"*"`. */
  readonly allow?: readonly string[] | "*";
}

/** The identity every emulator accepts unless `credentials` replaces it: allowed everything. */
export const AWS_EMULATOR_IDENTITY: AwsIdentity = Object.freeze({
  accessKeyId: "AKIAEMULATOR00000001",
  secretAccessKey: "emulator+secret/access+key/0000000000001",
});

export interface AwsKmsEmulatorOptions extends EmulatorOptions {
  /** Default `111122223333`. */
  readonly account?: string;
  /** The region requests must be signed for; default `us-east-1`. */
  readonly region?: string;
  /** The identities accepted; default `[AWS_EMULATOR_IDENTITY]` (allowed everything). */
  readonly credentials?: readonly AwsIdentity[];
}

/** What `createKey` made. */
export interface AwsEmulatorKey {
  /** The key id (a uuid). */
  readonly keyId: string;
  readonly arn: string;
}

/** A key as the emulator holds it, for assertions. */
export interface AwsEmulatorKeyInfo extends AwsEmulatorKey {
  readonly state: AwsKeyState;
  /** The `KeyMaterialId` of each version, oldest first; the last is current. */
  readonly keyMaterialIds: readonly string[];
  readonly rotationEnabled: boolean;
  /** Each completed rotation, oldest first, as `ListKeyRotations` lists them (the first key material is none). */
  readonly rotations: readonly AwsEmulatorRotation[];
}

/** How a key material became current: AWS's `RotationType`. */
export type AwsRotationType = "AUTOMATIC" | "ON_DEMAND";

/** One completed rotation of a key. */
export interface AwsEmulatorRotation {
  /** The key material the rotation made current. */
  readonly keyMaterialId: string;
  /** When (the emulator's clock). */
  readonly rotationDate: Date;
  readonly rotationType: AwsRotationType;
}

/** The key states the emulator models. */
export type AwsKeyState = "Enabled" | "Disabled" | "PendingDeletion";

/** The operations served; any other target is `UnsupportedOperationException`. */
export const AWS_KMS_OPERATIONS = [
  "GenerateDataKey",
  "Encrypt",
  "Decrypt",
  "DescribeKey",
  "CreateKey",
  "CreateAlias",
  "ListAliases",
  "EnableKey",
  "DisableKey",
  "ScheduleKeyDeletion",
  "EnableKeyRotation",
  "DisableKeyRotation",
  "GetKeyRotationStatus",
  "RotateKeyOnDemand",
  "ListKeyRotations",
] as const;

/** One of `AWS_KMS_OPERATIONS`. */
export type AwsKmsOperation = (typeof AWS_KMS_OPERATIONS)[number];

const OPERATIONS: ReadonlySet<string> = new Set(AWS_KMS_OPERATIONS);
const JSON_TYPE = "application/x-amz-json-1.1";
const TARGET_PREFIX = "TrentService.";
const MAX_KEY_ID_CHARS = 2048;
const MAX_PLAINTEXT_BYTES = 4096;
const MAX_CIPHERTEXT_BYTES = 6144;
const SYMMETRIC_DEFAULT = "SYMMETRIC_DEFAULT";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const KEY_ARN = /^arn:aws:kms:([a-z0-9-]+):(\d{12}):key\/(.+)$/;
const ALIAS_ARN = /^arn:aws:kms:([a-z0-9-]+):(\d{12}):(alias\/.+)$/;
const ALIAS_NAME = /^alias\/[A-Za-z0-9/_-]{1,250}$/;
const ACTION = /^kms:(\*|[A-Za-z]{1,64})$/;

/**
 * Ciphertext blob: version byte ‖ key id (16 raw uuid bytes) ‖ key version (u32 BE) ‖ iv ‖ ct ‖ tag.
 * The header is in the AAD with the context, so a blob re-labelled with another version fails too.
 */
const BLOB_VERSION = 1;
const BLOB_HEADER_BYTES = 1 + 16 + 4;
const BLOB_AAD_LABEL = Buffer.from("aws-kms-emulator blob v1", "ascii");

interface KeyRecord {
  readonly key: EmulatedKey;
  readonly arn: string;
  readonly createdAt: Date;
  readonly description: string;
  state: AwsKeyState;
  deletionDate?: Date;
  rotationPeriodInDays?: number;
  /** The type of each rotation, by the key material it made current (the first material has none). */
  readonly rotationTypes: Map<string, AwsRotationType>;
}

interface AliasRecord {
  targetKeyId: string;
  readonly createdAt: Date;
  updatedAt: Date;
}

interface IdentityRecord {
  readonly accessKeyId: string;
  readonly secret: string;
  readonly sessionToken: string | undefined;
  readonly principal: string;
  allow: ReadonlySet<string> | "*";
}

/** What one request carries beyond the framework's routing: its parsed body. */
export interface AwsKmsCallState {
  /** The body as a JSON object; undefined when it is not one (answered SerializationException). */
  readonly input: Record<string, unknown> | undefined;
}

/** A routed AWS KMS request, as subclasses overriding `handle` receive it. */
export type AwsKmsRoute = RoutedRequest<AwsKmsCallState>;

type Json = Record<string, unknown>;

/** An AWS KMS emulator on 127.0.0.1. See the module comment for what it models. */
export class AwsKmsEmulator extends Emulator<AwsKmsCallState> {
  protected readonly protocol = "aws-kms";
  readonly account: string;
  readonly region: string;
  readonly #keys = new Map<string, KeyRecord>();
  readonly #aliases = new Map<string, AliasRecord>();
  readonly #identities = new Map<string, IdentityRecord>();

  constructor(options: AwsKmsEmulatorOptions = {}) {
    super(options);
    this.account = options.account ?? "111122223333";
    this.region = options.region ?? "us-east-1";
    if (!/^\d{12}$/.test(this.account)) throw new RangeError("account must be 12 digits");
    if (!/^[a-z0-9-]{1,32}$/.test(this.region)) throw new RangeError("region must look like us-east-1");
    for (const identity of options.credentials ?? [AWS_EMULATOR_IDENTITY]) {
      if (this.#identities.has(identity.accessKeyId)) throw new RangeError(`duplicate access key id ${identity.accessKeyId}`);
      this.#identities.set(identity.accessKeyId, {
        accessKeyId: identity.accessKeyId,
        secret: identity.secretAccessKey,
        sessionToken: identity.sessionToken,
        principal: identity.principal ?? `arn:aws:iam::${this.account}:user/${identity.accessKeyId}`,
        allow: allowSet(identity.allow ?? "*"),
      });
    }
  }

  // --- test helpers -----------------------------------------------------------------------------

  /** The SDK client settings for an identity (default: the first one), e.g. `new KMSClient({ ...emulator.clientConfig(), maxAttempts: 1 })`. */
  clientConfig(accessKeyId?: string): { region: string; endpoint: string; credentials: { accessKeyId: string; secretAccessKey: string; sessionToken?: string } } {
    const identity = accessKeyId === undefined ? this.#identities.values().next().value : this.#identities.get(accessKeyId);
    if (identity === undefined) throw new RangeError(`unknown access key id ${String(accessKeyId)}`);
    const credentials = { accessKeyId: identity.accessKeyId, secretAccessKey: identity.secret };
    return {
      region: this.region,
      endpoint: this.url,
      credentials: identity.sessionToken === undefined ? credentials : { ...credentials, sessionToken: identity.sessionToken },
    };
  }

  /** Creates an enabled symmetric key (version 1), with an alias when given (`alias/name` or `name`). */
  createKey(options: { description?: string; alias?: string } = {}): AwsEmulatorKey {
    const record = this.#newKey(options.description ?? "");
    if (options.alias !== undefined) this.createAlias(options.alias, record.key.id);
    return { keyId: record.key.id, arn: record.arn };
  }

  /** Points a new alias (`alias/name` or `name`) at a key (any id form). */
  createAlias(alias: string, keyId: string): void {
    const name = alias.startsWith("alias/") ? alias : `alias/${alias}`;
    if (!ALIAS_NAME.test(name)) throw new RangeError(`invalid alias name ${name}`);
    if (this.#aliases.has(name)) throw new RangeError(`alias ${name} already exists`);
    const record = this.#helperKey(keyId);
    const now = this.now();
    this.#aliases.set(name, { targetKeyId: record.key.id, createdAt: now, updatedAt: now });
  }

  /** Disables a key (any id form): it then refuses GenerateDataKey, Encrypt and Decrypt. */
  disableKey(keyId: string): void {
    this.#setState(this.#helperKey(keyId), "Disabled");
  }

  /** Enables a disabled key (any id form). */
  enableKey(keyId: string): void {
    this.#setState(this.#helperKey(keyId), "Enabled");
  }

  /** Schedules a key's deletion (state PendingDeletion): it then refuses cryptography with KMSInvalidStateException. */
  scheduleKeyDeletion(keyId: string, days = 7): void {
    const record = this.#helperKey(keyId);
    record.state = "PendingDeletion";
    record.key.enabled = false;
    record.deletionDate = new Date(this.now().getTime() + days * 86_400_000);
  }

  /**
   * Rotates a key (any id form) now; returns the new `KeyMaterialId`. Recorded as an `AUTOMATIC`
   * rotation (AWS's scheduled one) unless `type` says otherwise; RotateKeyOnDemand records `ON_DEMAND`.
   */
  rotate(keyId: string, type: AwsRotationType = "AUTOMATIC"): string {
    if (type !== "AUTOMATIC" && type !== "ON_DEMAND") throw new RangeError(`rotation type must be AUTOMATIC or ON_DEMAND, not ${String(type)}`);
    return this.#rotateRecord(this.#helperKey(keyId), type);
  }

  /** A key's state and versions (any id form). */
  key(keyId: string): AwsEmulatorKeyInfo {
    const record = this.#helperKey(keyId);
    return {
      keyId: record.key.id,
      arn: record.arn,
      state: record.state,
      keyMaterialIds: record.key.versions.map((v) => v.materialId),
      rotationEnabled: record.rotationPeriodInDays !== undefined,
      rotations: record.key.versions.slice(1).map((v) => ({ keyMaterialId: v.materialId, rotationDate: v.createdAt, rotationType: record.rotationTypes.get(v.materialId)! })),
    };
  }

  /** Replaces the IAM actions an identity may perform (`["kms:Decrypt"]`, `["kms:*"]`, `"*"`, or `[]` for none). */
  setAllowedActions(accessKeyId: string, actions: readonly string[] | "*"): void {
    const identity = this.#identities.get(accessKeyId);
    if (identity === undefined) throw new RangeError(`unknown access key id ${accessKeyId}`);
    identity.allow = allowSet(actions);
  }

  // --- protocol ---------------------------------------------------------------------------------

  protected override responseHeaders(): Record<string, string> {
    return { "x-amzn-RequestId": newRequestId() };
  }

  protected route(req: EmulatorRequest): AwsKmsRoute {
    if (req.method !== "POST" || req.url.pathname !== "/") {
      throw new EmulatorReply(errorResponse("UnknownOperationException", undefined, 404));
    }
    const target = header(req, "x-amz-target") ?? "";
    const operation = target.startsWith(TARGET_PREFIX) ? target.slice(TARGET_PREFIX.length) : "";
    if (!OPERATIONS.has(operation)) {
      const named = /^[A-Za-z]{1,64}$/.test(operation) ? ` ${operation}` : "";
      throw new EmulatorReply(errorResponse("UnsupportedOperationException", `Operation${named} is not supported by this emulator.`));
    }
    if ((header(req, "content-type") ?? "").split(";")[0]!.trim().toLowerCase() !== JSON_TYPE) {
      throw new EmulatorReply(errorResponse("SerializationException", `Content-Type must be ${JSON_TYPE}.`));
    }
    const input = parseObject(req.body);
    const named = input?.[operation === "CreateAlias" ? "TargetKeyId" : "KeyId"];
    const keyId = typeof named === "string" && named.length > 0 && named.length <= 256 ? named : undefined;
    return { operation, ...(keyId === undefined ? {} : { keyId }), state: { input } };
  }

  protected authenticate(req: EmulatorRequest, routed: AwsKmsRoute): AuthResult {
    const verified = this.#verifySignature(req);
    if (!verified.ok) return verified;
    const identity = verified.identity;
    const action = `kms:${routed.operation}`;
    if (identity.allow !== "*" && !identity.allow.has(action) && !identity.allow.has("kms:*")) {
      return { ok: false, identity: identity.accessKeyId, response: this.#accessDenied(routed, identity.accessKeyId) };
    }
    return { ok: true, identity: identity.accessKeyId };
  }

  protected faultResponse(fault: Exclude<FaultKind, "latency" | "connectionReset">, routed: AwsKmsRoute, status: number, identity: string | undefined): EmulatorResponse {
    switch (fault) {
      case "throttle":
        return errorResponse("ThrottlingException", "Rate exceeded");
      case "serverError":
        return errorResponse("KMSInternalException", "An internal error occurred.", status);
      case "accessDenied":
        return this.#accessDenied(routed, identity);
      case "keyDisabled":
        return errorResponse("DisabledException", `${this.#resourceOf(routed)} is disabled.`);
      case "keyNotFound":
        return errorResponse("NotFoundException", this.#notFoundMessage(routed.keyId ?? this.#resourceOf(routed)));
    }
  }

  protected handle(_req: EmulatorRequest, routed: AwsKmsRoute): EmulatorResponse {
    const input = routed.state?.input;
    if (input === undefined) fail("SerializationException", "Start of structure or map found where not expected.");
    switch (routed.operation as AwsKmsOperation) {
      case "GenerateDataKey":
        return ok(this.#generateDataKey(input));
      case "Encrypt":
        return ok(this.#encrypt(input));
      case "Decrypt":
        return ok(this.#decrypt(input));
      case "DescribeKey":
        return ok({ KeyMetadata: this.#metadata(this.#resolve(input.KeyId)) });
      case "CreateKey":
        return ok({ KeyMetadata: this.#metadata(this.#createKeyOp(input)) });
      case "CreateAlias":
        this.#createAliasOp(input);
        return ok(undefined);
      case "ListAliases":
        return ok(this.#listAliases(input));
      case "EnableKey":
      case "DisableKey": {
        const record = this.#resolve(input.KeyId);
        if (record.state === "PendingDeletion") fail("KMSInvalidStateException", `${record.arn} is pending deletion.`);
        this.#setState(record, routed.operation === "EnableKey" ? "Enabled" : "Disabled");
        return ok(undefined);
      }
      case "ScheduleKeyDeletion":
        return ok(this.#scheduleKeyDeletionOp(input));
      case "EnableKeyRotation": {
        const record = this.#usable(this.#resolve(input.KeyId));
        const days = optionalInt(input, "RotationPeriodInDays", 90, 2560);
        record.rotationPeriodInDays = days ?? record.rotationPeriodInDays ?? 365;
        return ok(undefined);
      }
      case "DisableKeyRotation": {
        const record = this.#usable(this.#resolve(input.KeyId));
        delete record.rotationPeriodInDays;
        return ok(undefined);
      }
      case "GetKeyRotationStatus":
        return ok(this.#rotationStatus(this.#resolve(input.KeyId)));
      case "RotateKeyOnDemand": {
        const record = this.#usable(this.#resolve(input.KeyId));
        this.#rotateRecord(record, "ON_DEMAND");
        return ok({ KeyId: record.arn });
      }
      case "ListKeyRotations":
        return ok(this.#listKeyRotations(input));
    }
  }

  // --- operations -------------------------------------------------------------------------------

  #generateDataKey(input: Json): Json {
    const record = this.#usable(this.#resolve(input.KeyId));
    const context = encryptionContext(input);
    const spec = input.KeySpec;
    const count = input.NumberOfBytes;
    if ((spec === undefined) === (count === undefined)) fail("ValidationException", "Please specify either number of bytes or key spec.");
    let bytes: number;
    if (spec !== undefined) {
      if (spec !== "AES_256" && spec !== "AES_128") {
        fail("ValidationException", "1 validation error detected: Value at 'keySpec' failed to satisfy constraint: Member must satisfy enum value set: [AES_256, AES_128]");
      }
      bytes = spec === "AES_256" ? 32 : 16;
    } else {
      bytes = optionalInt(input, "NumberOfBytes", 1, 1024)!;
    }
    const plaintext = randomBytes(bytes);
    try {
      const version = record.key.latest;
      return {
        CiphertextBlob: this.#seal(record, version.version, plaintext, context).toString("base64"),
        Plaintext: plaintext.toString("base64"),
        KeyId: record.arn,
        KeyMaterialId: version.materialId,
      };
    } finally {
      plaintext.fill(0);
    }
  }

  #encrypt(input: Json): Json {
    const record = this.#usable(this.#resolve(input.KeyId));
    const context = encryptionContext(input);
    algorithm(input);
    const plaintext = blob(input, "Plaintext", MAX_PLAINTEXT_BYTES);
    try {
      return {
        CiphertextBlob: this.#seal(record, record.key.latest.version, plaintext, context).toString("base64"),
        KeyId: record.arn,
        EncryptionAlgorithm: SYMMETRIC_DEFAULT,
      };
    } finally {
      plaintext.fill(0);
    }
  }

  #decrypt(input: Json): Json {
    const named = input.KeyId === undefined ? undefined : this.#usable(this.#resolve(input.KeyId));
    const context = encryptionContext(input);
    algorithm(input);
    const sealed = blob(input, "CiphertextBlob", MAX_CIPHERTEXT_BYTES);
    const header = readBlobHeader(sealed);
    if (header === undefined) fail("InvalidCiphertextException");
    if (named !== undefined && named.key.id !== header.keyId) {
      fail("IncorrectKeyException", "The key ID in the request does not identify a CMK that can perform this operation.");
    }
    const embedded = named ?? this.#keys.get(header.keyId);
    if (embedded === undefined) fail("InvalidCiphertextException");
    const record = this.#usable(embedded);
    const version = record.key.version(header.version);
    if (version === undefined) fail("InvalidCiphertextException");
    const plaintext = record.key.open(sealed.subarray(BLOB_HEADER_BYTES), blobAad(sealed.subarray(0, BLOB_HEADER_BYTES), context), version);
    if (plaintext === undefined) fail("InvalidCiphertextException");
    try {
      return { KeyId: record.arn, Plaintext: plaintext.toString("base64"), EncryptionAlgorithm: SYMMETRIC_DEFAULT, KeyMaterialId: version.materialId };
    } finally {
      plaintext.fill(0);
    }
  }

  #createKeyOp(input: Json): KeyRecord {
    const description = input.Description ?? "";
    if (typeof description !== "string" || description.length > 8192) {
      fail("ValidationException", "1 validation error detected: Value at 'description' failed to satisfy constraint: Member must have length less than or equal to 8192");
    }
    const supported = (field: string, value: string) => input[field] === undefined || input[field] === value;
    if (
      !supported("KeyUsage", "ENCRYPT_DECRYPT") ||
      !supported("KeySpec", SYMMETRIC_DEFAULT) ||
      !supported("CustomerMasterKeySpec", SYMMETRIC_DEFAULT) ||
      !supported("Origin", "AWS_KMS") ||
      !(input.MultiRegion === undefined || input.MultiRegion === false)
    ) {
      fail("UnsupportedOperationException", "This emulator creates single-Region SYMMETRIC_DEFAULT ENCRYPT_DECRYPT keys with origin AWS_KMS only.");
    }
    return this.#newKey(description);
  }

  #createAliasOp(input: Json): void {
    const name = input.AliasName;
    if (typeof name !== "string" || !ALIAS_NAME.test(name)) {
      fail("ValidationException", "1 validation error detected: Value at 'aliasName' failed to satisfy constraint: Member must satisfy regular expression pattern: ^alias/[a-zA-Z0-9/_-]+$");
    }
    if (name.startsWith("alias/aws/")) fail("NotAuthorizedException", "Alias names that begin with alias/aws/ are reserved.");
    const target = input.TargetKeyId;
    // AWS: the target is a key id or key ARN, never another alias.
    if (typeof target === "string" && (target.startsWith("alias/") || ALIAS_ARN.test(target))) {
      fail("ValidationException", "Aliases must refer to keys. Not aliases");
    }
    const record = this.#resolve(target);
    if (record.state === "PendingDeletion") fail("KMSInvalidStateException", `${record.arn} is pending deletion.`);
    if (this.#aliases.has(name)) fail("AlreadyExistsException", `An alias with the name ${this.#aliasArn(name)} already exists`);
    const now = this.now();
    this.#aliases.set(name, { targetKeyId: record.key.id, createdAt: now, updatedAt: now });
  }

  #listAliases(input: Json): Json {
    const filter = input.KeyId === undefined ? undefined : this.#resolve(input.KeyId).key.id;
    const limit = optionalInt(input, "Limit", 1, 100) ?? 50;
    const start = pageStart(input.Marker);
    const all = [...this.#aliases].filter(([, a]) => filter === undefined || a.targetKeyId === filter);
    const page = all.slice(start, start + limit);
    const truncated = start + limit < all.length;
    return {
      Aliases: page.map(([name, a]) => ({
        AliasName: name,
        AliasArn: this.#aliasArn(name),
        TargetKeyId: a.targetKeyId,
        CreationDate: epochSeconds(a.createdAt),
        LastUpdatedDate: epochSeconds(a.updatedAt),
      })),
      Truncated: truncated,
      ...(truncated ? { NextMarker: String(start + limit) } : {}),
    };
  }

  /**
   * ListKeyRotations: the completed rotations, oldest first (as AWS's own examples list them),
   * `Limit` 1–1000 (default 100) per page, `Marker` from the previous page's `NextMarker`. With
   * `IncludeKeyMaterial: "ALL_KEY_MATERIAL"` the first key material is listed too, without a
   * RotationDate or RotationType. Answered in any key state (it reads metadata only).
   */
  #listKeyRotations(input: Json): Json {
    const record = this.#resolve(input.KeyId);
    const include = input.IncludeKeyMaterial ?? "ROTATIONS_ONLY";
    if (include !== "ROTATIONS_ONLY" && include !== "ALL_KEY_MATERIAL") {
      fail("ValidationException", "1 validation error detected: Value at 'includeKeyMaterial' failed to satisfy constraint: Member must satisfy enum value set: [ALL_KEY_MATERIAL, ROTATIONS_ONLY]");
    }
    const limit = optionalInt(input, "Limit", 1, 1000) ?? 100;
    const start = pageStart(input.Marker);
    const versions = record.key.versions;
    const latest = record.key.latest;
    const all = include === "ALL_KEY_MATERIAL" ? versions : versions.slice(1);
    const page = all.slice(start, start + limit);
    const truncated = start + limit < all.length;
    return {
      Rotations: page.map((v) => {
        const type = record.rotationTypes.get(v.materialId);
        return {
          KeyId: record.key.id,
          KeyMaterialId: v.materialId,
          KeyMaterialState: v === latest ? "CURRENT" : "NON_CURRENT",
          ...(type === undefined ? {} : { RotationDate: epochSeconds(v.createdAt), RotationType: type }),
        };
      }),
      Truncated: truncated,
      ...(truncated ? { NextMarker: String(start + limit) } : {}),
    };
  }

  #scheduleKeyDeletionOp(input: Json): Json {
    const record = this.#resolve(input.KeyId);
    if (record.state === "PendingDeletion") fail("KMSInvalidStateException", `${record.arn} is pending deletion.`);
    const days = optionalInt(input, "PendingWindowInDays", 7, 30) ?? 30;
    this.scheduleKeyDeletion(record.key.id, days);
    return { KeyId: record.arn, DeletionDate: epochSeconds(record.deletionDate!), KeyState: record.state, PendingWindowInDays: days };
  }

  #rotationStatus(record: KeyRecord): Json {
    const days = record.rotationPeriodInDays;
    if (days === undefined) return { KeyRotationEnabled: false, KeyId: record.arn };
    const next = new Date(record.key.latest.createdAt.getTime() + days * 86_400_000);
    return { KeyRotationEnabled: true, KeyId: record.arn, RotationPeriodInDays: days, NextRotationDate: epochSeconds(next) };
  }

  #metadata(record: KeyRecord): Json {
    return {
      AWSAccountId: this.account,
      KeyId: record.key.id,
      Arn: record.arn,
      CreationDate: epochSeconds(record.createdAt),
      Enabled: record.state === "Enabled",
      Description: record.description,
      KeyUsage: "ENCRYPT_DECRYPT",
      KeyState: record.state,
      ...(record.deletionDate === undefined ? {} : { DeletionDate: epochSeconds(record.deletionDate) }),
      Origin: "AWS_KMS",
      KeyManager: "CUSTOMER",
      CustomerMasterKeySpec: SYMMETRIC_DEFAULT,
      KeySpec: SYMMETRIC_DEFAULT,
      EncryptionAlgorithms: [SYMMETRIC_DEFAULT],
      MultiRegion: false,
      CurrentKeyMaterialId: record.key.latest.materialId,
    };
  }

  // --- keys -------------------------------------------------------------------------------------

  #newKey(description: string): KeyRecord {
    const id = randomUUID();
    const createdAt = this.now();
    const record: KeyRecord = { key: new EmulatedKey(id, createdAt), arn: this.#keyArn(id), createdAt, description, state: "Enabled", rotationTypes: new Map() };
    this.#keys.set(id, record);
    return record;
  }

  /** Adds key material, dated by the emulator's clock, and records how it came; returns its `KeyMaterialId`. */
  #rotateRecord(record: KeyRecord, type: AwsRotationType): string {
    const { materialId } = record.key.addVersion(this.now());
    record.rotationTypes.set(materialId, type);
    return materialId;
  }

  #setState(record: KeyRecord, state: "Enabled" | "Disabled"): void {
    record.state = state;
    record.key.enabled = state === "Enabled";
    delete record.deletionDate;
  }

  /** A key for a test helper, by any id form; a plain Error when there is none (a test bug). */
  #helperKey(keyId: string): KeyRecord {
    const record = this.#find(keyId);
    if (record === undefined) throw new RangeError(`no key ${keyId}`);
    return record;
  }

  /** The key a request names, as AWS resolves it, or the error AWS answers. */
  #resolve(keyId: unknown): KeyRecord {
    if (keyId === undefined || keyId === null) {
      fail("ValidationException", "1 validation error detected: Value null at 'keyId' failed to satisfy constraint: Member must not be null");
    }
    if (typeof keyId !== "string") fail("SerializationException", "KeyId must be a string.");
    if (keyId.length < 1 || keyId.length > MAX_KEY_ID_CHARS) {
      fail("ValidationException", `1 validation error detected: Value at 'keyId' failed to satisfy constraint: Member must have length between 1 and ${MAX_KEY_ID_CHARS}`);
    }
    const record = this.#find(keyId);
    if (record === undefined) fail("NotFoundException", this.#notFoundMessage(keyId));
    return record;
  }

  /** Resolves uuid, key ARN, alias and alias ARN; another account's or region's ARN is not found. */
  #find(keyId: string): KeyRecord | undefined {
    const arn = KEY_ARN.exec(keyId) ?? ALIAS_ARN.exec(keyId);
    if (arn !== null && (arn[1] !== this.region || arn[2] !== this.account)) return undefined;
    const id = arn === null ? keyId : arn[3]!;
    if (id.startsWith("alias/")) {
      const alias = this.#aliases.get(id);
      return alias === undefined ? undefined : this.#keys.get(alias.targetKeyId);
    }
    return UUID.test(id) ? this.#keys.get(id) : undefined;
  }

  /** Refuses cryptography and rotation on a key that is not Enabled, as AWS does. */
  #usable(record: KeyRecord): KeyRecord {
    if (record.state === "Disabled") fail("DisabledException", `${record.arn} is disabled.`);
    if (record.state === "PendingDeletion") fail("KMSInvalidStateException", `${record.arn} is pending deletion.`);
    return record;
  }

  #notFoundMessage(keyId: string): string {
    if (keyId.startsWith("alias/")) return `Alias ${this.#aliasArn(keyId)} is not found.`;
    if (ALIAS_ARN.test(keyId)) return `Alias ${keyId} is not found.`;
    if (UUID.test(keyId)) return `Key '${this.#keyArn(keyId)}' does not exist`;
    if (KEY_ARN.test(keyId)) return `Key '${keyId}' does not exist`;
    return `Invalid keyId ${keyId.length <= 256 ? keyId : `${keyId.slice(0, 256)}…`}`;
  }

  #keyArn(id: string): string {
    return `arn:aws:kms:${this.region}:${this.account}:key/${id}`;
  }

  #aliasArn(name: string): string {
    return `arn:aws:kms:${this.region}:${this.account}:${name}`;
  }

  /**
   * The resource an access-denied message names: the key's ARN when the request's key resolves (a
   * Decrypt without KeyId: the key inside the blob), else the ARN form of what it named, else `*`.
   */
  #resourceOf(routed: AwsKmsRoute): string {
    const input = routed.state?.input;
    if (routed.operation === "CreateAlias" && typeof input?.AliasName === "string" && ALIAS_NAME.test(input.AliasName)) {
      return this.#aliasArn(input.AliasName);
    }
    const named = input?.[routed.operation === "CreateAlias" ? "TargetKeyId" : "KeyId"];
    if (typeof named === "string" && named.length <= MAX_KEY_ID_CHARS) {
      const record = this.#find(named);
      if (record !== undefined) return record.arn;
      if (UUID.test(named)) return this.#keyArn(named);
      if (ALIAS_NAME.test(named)) return this.#aliasArn(named);
      if (KEY_ARN.test(named) || ALIAS_ARN.test(named)) return named;
    }
    if (routed.operation === "Decrypt" && named === undefined && typeof input?.CiphertextBlob === "string") {
      const header = readBlobHeader(decodeBase64(input.CiphertextBlob) ?? Buffer.alloc(0));
      if (header !== undefined) return this.#keyArn(header.keyId);
    }
    return "*";
  }

  /** AccessDeniedException naming the principal of `accessKeyId` (the identity authenticate established). */
  #accessDenied(routed: AwsKmsRoute, accessKeyId: string | undefined): EmulatorResponse {
    const principal = (accessKeyId === undefined ? undefined : this.#identities.get(accessKeyId)?.principal) ?? `arn:aws:iam::${this.account}:user/unknown`;
    const action = `kms:${routed.operation}`;
    return errorResponse(
      "AccessDeniedException",
      `User: ${principal} is not authorized to perform: ${action} on resource: ${this.#resourceOf(routed)} because no identity-based policy allows the ${action} action`,
    );
  }

  // --- ciphertext blobs -------------------------------------------------------------------------

  #seal(record: KeyRecord, version: number, plaintext: Buffer, context: ReadonlyMap<string, string>): Buffer {
    const header = Buffer.alloc(BLOB_HEADER_BYTES);
    header[0] = BLOB_VERSION;
    Buffer.from(record.key.id.replace(/-/g, ""), "hex").copy(header, 1);
    header.writeUInt32BE(version, 17);
    const keyVersion = record.key.version(version)!;
    return Buffer.concat([header, record.key.seal(plaintext, blobAad(header, context), keyVersion)]);
  }

  // --- SigV4 ------------------------------------------------------------------------------------

  /** Verifies the request's SigV4 signature (https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html). */
  #verifySignature(req: EmulatorRequest): { ok: true; identity: IdentityRecord } | { ok: false; response: EmulatorResponse; identity?: string } {
    const refuse = (type: string, message: string, identity?: string) => ({ ok: false as const, response: errorResponse(type, message), ...(identity === undefined ? {} : { identity }) });
    const authorization = header(req, "authorization");
    if (authorization === undefined) return refuse("MissingAuthenticationTokenException", "Missing Authentication Token");
    const match = /^AWS4-HMAC-SHA256 (.+)$/.exec(authorization);
    const fields = new Map<string, string>();
    for (const part of match?.[1]!.split(/,\s*/) ?? []) {
      const eq = part.indexOf("=");
      if (eq > 0) fields.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
    }
    const credential = fields.get("Credential")?.split("/");
    const signedHeaders = fields.get("SignedHeaders");
    const signature = fields.get("Signature");
    if (match === null || credential?.length !== 5 || signedHeaders === undefined || signature === undefined) {
      return refuse("IncompleteSignatureException", "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters.");
    }
    const [accessKeyId, date, region, service, terminator] = credential as [string, string, string, string, string];
    const identity = this.#identities.get(accessKeyId);
    if (identity === undefined) return refuse("UnrecognizedClientException", "The security token included in the request is invalid.");
    const amzDate = header(req, "x-amz-date") ?? "";
    if (!/^\d{8}T\d{6}Z$/.test(amzDate) || !/^\d{8}$/.test(date) || terminator !== "aws4_request") {
      return refuse("IncompleteSignatureException", "Authorization header requires a valid X-Amz-Date and credential scope.", accessKeyId);
    }
    if (!amzDate.startsWith(date)) {
      return refuse("InvalidSignatureException", `Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '${date}' != '${amzDate.slice(0, 8)}'`, accessKeyId);
    }
    if (region !== this.region) return refuse("InvalidSignatureException", "Credential should be scoped to a valid region. ", accessKeyId);
    if (service !== "kms") return refuse("InvalidSignatureException", "Credential should be scoped to correct service: 'kms'. ", accessKeyId);
    const names = signedHeaders.split(";");
    if (!names.every((name) => /^[a-z0-9-]{1,128}$/.test(name))) {
      return refuse("IncompleteSignatureException", "SignedHeaders must be lower-case header names separated by ';'.", accessKeyId);
    }
    if (!names.includes("host") || !names.includes("x-amz-date")) {
      return refuse("IncompleteSignatureException", "'Host' and 'X-Amz-Date' must be signed headers.", accessKeyId);
    }
    if (identity.sessionToken !== undefined && !secretsEqual(header(req, "x-amz-security-token") ?? "", identity.sessionToken)) {
      return refuse("UnrecognizedClientException", "The security token included in the request is invalid.", accessKeyId);
    }
    const canonicalRequest = [
      req.method,
      req.url.pathname,
      canonicalQuery(req.url.searchParams),
      names.map((name) => `${name}:${canonicalHeaderValue(Object.hasOwn(req.headers, name) ? req.headers[name] : undefined)}\n`).join(""),
      signedHeaders,
      sha256Hex(req.body),
    ].join("\n");
    const scope = `${date}/${region}/${service}/${terminator}`;
    const stringToSign = ["AWS4-HMAC-SHA256", amzDate, scope, sha256Hex(Buffer.from(canonicalRequest, "utf8"))].join("\n");
    let key: Buffer = hmac(`AWS4${identity.secret}`, date);
    for (const part of [region, service, terminator]) key = hmac(key, part);
    if (!secretsEqual(hmac(key, stringToSign).toString("hex"), signature)) {
      return refuse(
        "InvalidSignatureException",
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
        accessKeyId,
      );
    }
    return { ok: true, identity };
  }
}

// --- helpers --------------------------------------------------------------------------------------

function allowSet(actions: readonly string[] | "*"): ReadonlySet<string> | "*" {
  if (actions === "*") return "*";
  for (const action of actions) if (!ACTION.test(action)) throw new RangeError(`not an IAM action: ${action}`);
  return new Set(actions);
}

function header(req: EmulatorRequest, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value.join(",") : value;
}

function canonicalHeaderValue(value: string | string[] | undefined): string {
  const joined = Array.isArray(value) ? value.join(",") : (value ?? "");
  return joined.trim().replace(/\s+/g, " ");
}

function canonicalQuery(params: URLSearchParams): string {
  const encode = (s: string) => encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  return [...params]
    .map(([k, v]) => [encode(k), encode(v)] as const)
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join("&");
}

function sha256Hex(data: Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

function hmac(key: string | Buffer, data: string): Buffer {
  return createHmac("sha256", key).update(data, "utf8").digest();
}

/** Constant-time equality of two secrets of any length (compares equal-length digests). */
function secretsEqual(a: string, b: string): boolean {
  const digest = (s: string) => createHash("sha256").update(s, "utf8").digest();
  return timingSafeEqual(digest(a), digest(b));
}

function errorResponse(type: string, message?: string, status = 400): EmulatorResponse {
  return {
    status,
    headers: { "content-type": JSON_TYPE, "x-amzn-ErrorType": type },
    body: message === undefined ? { __type: type } : { __type: type, message },
  };
}

/** Answers the request with an AWS error (status 400 unless given). */
function fail(type: string, message?: string, status = 400): never {
  throw new EmulatorReply(errorResponse(type, message, status));
}

function ok(body: Json | undefined): EmulatorResponse {
  return body === undefined ? { status: 200, headers: { "content-type": JSON_TYPE } } : { status: 200, headers: { "content-type": JSON_TYPE }, body };
}

/** The body as a JSON object, or undefined (not JSON, or not an object). */
function parseObject(body: Buffer): Json | undefined {
  if (body.length === 0) return {};
  try {
    const value: unknown = JSON.parse(body.toString("utf8"));
    return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Json) : undefined;
  } catch {
    return undefined;
  }
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function decodeBase64(text: string): Buffer | undefined {
  return BASE64.test(text) ? Buffer.from(text, "base64") : undefined;
}

/** A base64 blob field of 1..max bytes; AWS never echoes blob values in its messages. */
function blob(input: Json, field: string, max: number): Buffer {
  const value = input[field];
  const lower = field.charAt(0).toLowerCase() + field.slice(1);
  if (value === undefined || value === null) {
    fail("ValidationException", `1 validation error detected: Value null at '${lower}' failed to satisfy constraint: Member must not be null`);
  }
  const bytes = typeof value === "string" ? decodeBase64(value) : undefined;
  if (bytes === undefined) fail("SerializationException", `${field} must be base64-encoded binary data.`);
  if (bytes.length < 1 || bytes.length > max) {
    bytes.fill(0);
    fail("ValidationException", `1 validation error detected: Value at '${lower}' failed to satisfy constraint: Member must have length between 1 and ${max}`);
  }
  return bytes;
}

/** An optional integer field within [min, max]. */
function optionalInt(input: Json, field: string, min: number, max: number): number | undefined {
  const value = input[field];
  if (value === undefined) return undefined;
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    const lower = field.charAt(0).toLowerCase() + field.slice(1);
    fail("ValidationException", `1 validation error detected: Value at '${lower}' failed to satisfy constraint: Member must have value between ${min} and ${max}`);
  }
  return value;
}

function algorithm(input: Json): void {
  const value = input.EncryptionAlgorithm;
  if (value !== undefined && value !== SYMMETRIC_DEFAULT) fail("InvalidKeyUsageException", "The key does not support this encryption algorithm.");
}

/** The EncryptionContext as a map (own string pairs only); anything else is a SerializationException. */
function encryptionContext(input: Json): ReadonlyMap<string, string> {
  const value = input.EncryptionContext;
  const out = new Map<string, string>();
  if (value === undefined || value === null) return out;
  if (typeof value !== "object" || Array.isArray(value)) fail("SerializationException", "EncryptionContext must be a map of strings.");
  for (const [k, v] of Object.entries(value)) {
    if (typeof v !== "string") fail("SerializationException", "EncryptionContext must be a map of strings.");
    out.set(k, v);
  }
  return out;
}

/**
 * The AAD of a blob: a label, the blob header, then the context pairs sorted by the UTF-8 bytes of
 * their keys, every field prefixed with its u32 BE length, so no two contexts encode alike.
 */
function blobAad(header: Buffer, context: ReadonlyMap<string, string>): Buffer {
  const pairs = [...context].map(([k, v]) => [Buffer.from(k, "utf8"), Buffer.from(v, "utf8")] as const).sort((a, b) => Buffer.compare(a[0], b[0]));
  const parts: Buffer[] = [BLOB_AAD_LABEL, header, u32(pairs.length)];
  for (const [k, v] of pairs) parts.push(u32(k.length), k, u32(v.length), v);
  return Buffer.concat(parts);
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

/** The key id and version a blob names, or undefined when it cannot be one of ours. */
function readBlobHeader(sealed: Buffer): { keyId: string; version: number } | undefined {
  if (sealed.length < BLOB_HEADER_BYTES + IV_BYTES + TAG_BYTES || sealed[0] !== BLOB_VERSION) return undefined;
  const hex = sealed.toString("hex", 1, 17);
  const keyId = `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  return { keyId, version: sealed.readUInt32BE(17) };
}

/** Where a page starts: a list's `Marker` is the previous page's `NextMarker` (an offset here). */
function pageStart(marker: unknown): number {
  if (marker === undefined) return 0;
  if (typeof marker !== "string" || !/^\d{1,9}$/.test(marker)) fail("InvalidMarkerException", "Invalid marker.");
  return Number(marker);
}

function epochSeconds(date: Date): number {
  return date.getTime() / 1000;
}
