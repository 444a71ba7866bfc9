/**
 * Google Cloud KMS over gRPC, its production transport in Node: an `@grpc/grpc-js` server on
 * 127.0.0.1, over TLS, serving `google.cloud.kms.v1.KeyManagementService` and
 * `google.iam.v1.IAMPolicy` from the SDK's own shipped protos, so `@google-cloud/kms` runs against it
 * unchanged (`new KeyManagementServiceClient(emulator.clientOptions())`). `@google-cloud/kms` is an
 * optional peer: it is resolved when the emulator starts, with an error naming it when absent.
 *
 * TLS as the service has it, never plaintext: the certificate is one generated at `start()` for
 * 127.0.0.1 and localhost (unless `tls` gives one), and `clientOptions()` trusts it for that client
 * only (`sslCreds` from `createSsl(ca)`); a plaintext client, or one that does not trust `ca`, never
 * gets a call through.
 *
 * Served: Encrypt, Decrypt, GetCryptoKey, CreateCryptoKeyVersion, UpdateCryptoKeyPrimaryVersion,
 * ListCryptoKeyVersions, UpdateCryptoKeyVersion (`update_mask` `state` only: ENABLED ⇄ DISABLED),
 * DestroyCryptoKeyVersion and TestIamPermissions (on a CryptoKey); any other method is UNIMPLEMENTED
 * (answered by grpc-js, not logged). What it checks as the service does:
 * - **names**: a CryptoKey is `projects/P/locations/L/keyRings/R/cryptoKeys/K`; Encrypt takes a key or
 *   one of its versions, Decrypt only a key (the ciphertext names its version, as on Google's).
 * - **IAM per identity**: each identity holds a set of permissions; a request missing the operation's
 *   permission is PERMISSION_DENIED "Permission '<permission>' denied on resource '<name>' (or it may
 *   not exist)." — also for a key that does not exist, as on Google's; with the permission, a missing
 *   key is NOT_FOUND. The channel carries no call credentials (no token is sent), so the identity
 *   rides in the user-agent: `clientOptions(identity)` sets it; a request without it is the default
 *   identity.
 * - **version states** ENABLED / DISABLED / DESTROYED: only an ENABLED version encrypts or decrypts
 *   (else FAILED_PRECONDITION "… is not enabled, current state is: DISABLED."). Destruction is
 *   immediate here (Google schedules it 24 h ahead: DESTROY_SCHEDULED).
 * - **CRC32C**: a request checksum that is present and matches sets its `verified_*` flag; one that
 *   does not match is INVALID_ARGUMENT; response checksums are always set. `corruptResponses` flips a
 *   byte of a response's payload while keeping its checksum, and can drop a `verified_*` flag or
 *   name another key, for testing a client's checks.
 * - **ciphertexts** bind the key, the version and the additional authenticated data: any change is
 *   INVALID_ARGUMENT "Decryption failed: the ciphertext is invalid."
 *
 * The request log's `status` is the HTTP status Google maps each `google.rpc.Code` to
 * (`GRPC_HTTP_STATUS`: INVALID_ARGUMENT and FAILED_PRECONDITION are both 400). Injected faults answer:
 * throttle → RESOURCE_EXHAUSTED, serverError → UNAVAILABLE for 503 else INTERNAL, accessDenied →
 * PERMISSION_DENIED, keyDisabled → FAILED_PRECONDITION, keyNotFound → NOT_FOUND; connectionReset
 * drops the HTTP/2 connection (the client sees UNAVAILABLE "Connection dropped").
 *
 * After `outage()` is restored, grpc-js reconnects after its backoff (gax sets 1 s):
 * `clientOptions()` lowers it to `RECONNECT_BACKOFF_MS` and gives each client its own subchannel
 * pool, so one client's backoff never delays another's.
 */
import type { Http2Session } from "node:http2";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { type PackageDefinition, loadSync } from "@grpc/proto-loader";
import { crc32c } from "@kms/core";
import {
  type AuthResult,
  EmulatedKey,
  Emulator,
  type EmulatorOptions,
  EmulatorReply,
  type EmulatorRequest,
  type EmulatorResponse,
  type EmulatorTransport,
  type FaultKind,
  type RoutedRequest,
  type TransportExchange,
  IV_BYTES,
  TAG_BYTES,
} from "./framework";
import { EmulatorCertificate } from "./certificate";

/** The identity of requests that name none: allowed every permission unless changed. */
export const GCP_EMULATOR_IDENTITY = "kms-emulator@emulator-project.iam.gserviceaccount.com";

/** The user-agent product that carries the identity (`kms-emulator-identity/<identity>`). */
export const GCP_IDENTITY_USER_AGENT = "kms-emulator-identity";

/** The reconnect backoff `clientOptions()` sets, in ms (initial and maximum). */
export const RECONNECT_BACKOFF_MS = 20;

/** The Cloud KMS permissions the emulator checks, by operation. */
export const GCP_KMS_PERMISSIONS = {
  Encrypt: "cloudkms.cryptoKeyVersions.useToEncrypt",
  Decrypt: "cloudkms.cryptoKeyVersions.useToDecrypt",
  GetCryptoKey: "cloudkms.cryptoKeys.get",
  CreateCryptoKeyVersion: "cloudkms.cryptoKeyVersions.create",
  UpdateCryptoKeyPrimaryVersion: "cloudkms.cryptoKeys.update",
  ListCryptoKeyVersions: "cloudkms.cryptoKeyVersions.list",
  UpdateCryptoKeyVersion: "cloudkms.cryptoKeyVersions.update",
  DestroyCryptoKeyVersion: "cloudkms.cryptoKeyVersions.destroy",
} as const;

/** The operations served (TestIamPermissions needs no permission). */
export type GcpKmsOperation = keyof typeof GCP_KMS_PERMISSIONS | "TestIamPermissions";

/** Google's HTTP status for each `google.rpc.Code` (the request log's `status`). */
export const GRPC_HTTP_STATUS: Readonly<Record<string, number>> = {
  OK: 200,
  CANCELLED: 499,
  INVALID_ARGUMENT: 400,
  FAILED_PRECONDITION: 400,
  OUT_OF_RANGE: 400,
  UNAUTHENTICATED: 401,
  PERMISSION_DENIED: 403,
  NOT_FOUND: 404,
  ALREADY_EXISTS: 409,
  ABORTED: 409,
  RESOURCE_EXHAUSTED: 429,
  INTERNAL: 500,
  UNKNOWN: 500,
  DATA_LOSS: 500,
  UNIMPLEMENTED: 501,
  UNAVAILABLE: 503,
  DEADLINE_EXCEEDED: 504,
};

export type GcpVersionState = "ENABLED" | "DISABLED" | "DESTROYED";

/** What to do to a response: flip one payload byte (checksum kept), drop its `verified_*` flags, or name another key's version. */
export type GcpResponseCorruption = "payloadByte" | "unverified" | "foreignName";

/** A key as the emulator holds it, for assertions. */
export interface GcpEmulatorKeyInfo {
  readonly name: string;
  /** The primary version's number. */
  readonly primary: number;
  /** Each version's state, oldest (1) first. */
  readonly versions: readonly { readonly version: number; readonly name: string; readonly state: GcpVersionState }[];
}

export interface GcpKmsEmulatorOptions extends EmulatorOptions {
  /** Used by `createKey` for short ids; default `emulator-project`, `global`, `emulator-ring`. */
  readonly project?: string;
  readonly location?: string;
  readonly keyRing?: string;
  /** Identities and their permissions (`"*"`: all); default `{ [GCP_EMULATOR_IDENTITY]: "*" }`. */
  readonly identities?: Readonly<Record<string, readonly string[] | "*">>;
}

/** The client options to reach the emulator: spread them into `new KeyManagementServiceClient(...)`. */
export interface GcpEmulatorClientOptions {
  readonly [option: string]: string | number | object | undefined;
  readonly apiEndpoint: string;
  readonly port: number;
  readonly sslCreds: grpc.ChannelCredentials;
  readonly universeDomain: string;
  readonly "grpc.initial_reconnect_backoff_ms": number;
  readonly "grpc.max_reconnect_backoff_ms": number;
  readonly "grpc.use_local_subchannel_pool": number;
  readonly "grpc.primary_user_agent"?: string;
}

/** A request as `route` parsed it: the decoded message. */
export interface GcpKmsCallState {
  readonly message: Record<string, unknown>;
}

export type GcpKmsRoute = RoutedRequest<GcpKmsCallState>;

const KMS_SERVICE = "google.cloud.kms.v1.KeyManagementService";
const IAM_SERVICE = "google.iam.v1.IAMPolicy";
const SERVED: Readonly<Record<GcpKmsOperation, string>> = {
  Encrypt: KMS_SERVICE,
  Decrypt: KMS_SERVICE,
  GetCryptoKey: KMS_SERVICE,
  CreateCryptoKeyVersion: KMS_SERVICE,
  UpdateCryptoKeyPrimaryVersion: KMS_SERVICE,
  ListCryptoKeyVersions: KMS_SERVICE,
  UpdateCryptoKeyVersion: KMS_SERVICE,
  DestroyCryptoKeyVersion: KMS_SERVICE,
  TestIamPermissions: IAM_SERVICE,
};
const SEGMENT = "[A-Za-z0-9_-]{1,63}";
const KEY_NAME = new RegExp(`^projects/${SEGMENT}/locations/${SEGMENT}/keyRings/${SEGMENT}/cryptoKeys/${SEGMENT}$`);
const VERSION_NAME = new RegExp(`^(projects/${SEGMENT}/locations/${SEGMENT}/keyRings/${SEGMENT}/cryptoKeys/${SEGMENT})/cryptoKeyVersions/([1-9][0-9]{0,8})$`);
const MAX_DATA_BYTES = 64 * 1024;
/** ListCryptoKeyVersions' largest page (Google's), and the page size when none is asked for. */
const MAX_PAGE_SIZE = 1000;
/** Ciphertext: format byte ‖ version (u32 BE) ‖ iv ‖ sealed ‖ tag; the AAD binds the key name and header too. */
const CIPHERTEXT_FORMAT = 1;
const CIPHERTEXT_HEADER_BYTES = 5;
const AAD_LABEL = Buffer.from("gcp-kms-emulator ciphertext v1", "ascii");
const INVALID_CIPHERTEXT = "Decryption failed: the ciphertext is invalid.";

type Json = Record<string, unknown>;

interface KeyRecord {
  readonly name: string;
  readonly key: EmulatedKey;
  readonly createdAt: Date;
  readonly states: GcpVersionState[];
  primary: number;
}

interface Corruption {
  readonly operation: "Encrypt" | "Decrypt";
  readonly how: GcpResponseCorruption;
  remaining: number;
}

/** A Cloud KMS emulator on 127.0.0.1 over gRPC. See the module comment for what it models. */
export class GcpKmsEmulator extends Emulator<GcpKmsCallState> {
  protected readonly protocol = "gcp-kms";
  readonly project: string;
  readonly location: string;
  readonly keyRing: string;
  readonly #keys = new Map<string, KeyRecord>();
  readonly #identities = new Map<string, ReadonlySet<string> | "*">();
  #corruptions: Corruption[] = [];
  #created = 0;
  readonly #certificate: EmulatorCertificate;

  constructor(options: GcpKmsEmulatorOptions = {}) {
    // The certificate is generated when the emulator first listens, unless one is given; `ca` reads it from there.
    const certificate = new EmulatorCertificate(options.tls);
    super({ ...options, tls: certificate.material });
    this.#certificate = certificate;
    this.project = options.project ?? "emulator-project";
    this.location = options.location ?? "global";
    this.keyRing = options.keyRing ?? "emulator-ring";
    for (const part of [this.project, this.location, this.keyRing]) {
      if (!new RegExp(`^${SEGMENT}$`).test(part)) throw new RangeError(`invalid resource name part ${part}`);
    }
    for (const [identity, permissions] of Object.entries(options.identities ?? { [GCP_EMULATOR_IDENTITY]: "*" })) this.setPermissions(identity, permissions);
  }

  protected override createTransport(options: EmulatorOptions): EmulatorTransport {
    return new GrpcTransport(options.maxBodyBytes ?? 1024 * 1024, options.tls!);
  }

  /** The PEM certificate clients must trust (the generated self-signed one, or the one given); after `start()`. */
  get ca(): string {
    return this.#certificate.pem(this.protocol);
  }

  // --- test helpers -----------------------------------------------------------------------------

  /**
   * Options for `new KeyManagementServiceClient(...)`: this emulator's address, a TLS channel that
   * trusts `ca` (and nothing else) without call credentials, so no Google credential lookup, a short
   * reconnect backoff and the identity (default: the default identity). After `start()`.
   */
  clientOptions(identity?: string): GcpEmulatorClientOptions {
    if (identity !== undefined && !this.#identities.has(identity)) throw new RangeError(`unknown identity ${identity}`);
    return {
      apiEndpoint: "127.0.0.1",
      port: this.#startedPort(),
      sslCreds: sdk().grpc.credentials.createSsl(Buffer.from(this.ca)),
      universeDomain: "googleapis.com",
      "grpc.initial_reconnect_backoff_ms": RECONNECT_BACKOFF_MS,
      "grpc.max_reconnect_backoff_ms": RECONNECT_BACKOFF_MS,
      "grpc.use_local_subchannel_pool": 1,
      ...(identity === undefined ? {} : { "grpc.primary_user_agent": `${GCP_IDENTITY_USER_AGENT}/${identity}` }),
    };
  }

  /** The full name of a key in this emulator's key ring. */
  keyName(cryptoKey: string): string {
    return `projects/${this.project}/locations/${this.location}/keyRings/${this.keyRing}/cryptoKeys/${cryptoKey}`;
  }

  /** Creates a key with an ENABLED primary version 1; `id` is a short key id or a full name (default `key-<n>`). Returns its name. */
  createKey(id?: string): string {
    const name = id?.includes("/") ? id : this.keyName(id ?? `key-${++this.#created}`);
    if (!KEY_NAME.test(name)) throw new RangeError(`invalid CryptoKey name ${name}`);
    if (this.#keys.has(name)) throw new RangeError(`key ${name} already exists`);
    const createdAt = this.now();
    this.#keys.set(name, { name, key: new EmulatedKey(name, createdAt), createdAt, states: ["ENABLED"], primary: 1 });
    return name;
  }

  /** Adds a version and makes it primary (what a rotation does); returns the new version's name. */
  rotate(keyName: string): string {
    const record = this.#helperKey(keyName);
    record.primary = this.#addVersion(record);
    return `${record.name}/cryptoKeyVersions/${record.primary}`;
  }

  /** Disables a version (default: the primary). */
  disableVersion(keyName: string, version?: number): void {
    this.#setState(keyName, version, "DISABLED");
  }

  /** Enables a disabled version (default: the primary). */
  enableVersion(keyName: string, version?: number): void {
    this.#setState(keyName, version, "ENABLED");
  }

  /** Destroys a version (default: the primary) now: its material is zeroed. */
  destroyVersion(keyName: string, version?: number): void {
    this.#setState(keyName, version, "DESTROYED");
  }

  /** A key's primary and versions. */
  key(keyName: string): GcpEmulatorKeyInfo {
    const record = this.#helperKey(keyName);
    return {
      name: record.name,
      primary: record.primary,
      versions: record.states.map((state, i) => ({ version: i + 1, name: `${record.name}/cryptoKeyVersions/${i + 1}`, state })),
    };
  }

  /** Replaces an identity's permissions (`"*"`: all, `[]`: none), adding the identity if new. */
  setPermissions(identity: string, permissions: readonly string[] | "*"): void {
    if (!/^[\x21-\x7e]{1,128}$/.test(identity)) throw new RangeError("an identity is 1-128 printable characters without spaces");
    this.#identities.set(identity, permissions === "*" ? "*" : new Set(permissions));
  }

  /** Corrupts the next `times` (default 1) successful responses of `operation`, as `how` says (default `payloadByte`). */
  corruptResponses(operation: "Encrypt" | "Decrypt", options: { times?: number; how?: GcpResponseCorruption } = {}): void {
    const times = options.times ?? 1;
    if (!(Number.isInteger(times) && times > 0)) throw new RangeError("times must be a positive integer");
    this.#corruptions.push({ operation, how: options.how ?? "payloadByte", remaining: times });
  }

  // --- protocol ---------------------------------------------------------------------------------

  protected route(req: EmulatorRequest): GcpKmsRoute {
    const operation = req.url.pathname.split("/").pop() as GcpKmsOperation;
    let message: Json;
    try {
      message = methodOf(operation).requestDeserialize(req.body);
    } catch {
      throw new EmulatorReply(status("INVALID_ARGUMENT", "Request message could not be parsed."));
    }
    const named =
      operation === "UpdateCryptoKeyVersion"
        ? (message.cryptoKeyVersion as Json | undefined)?.name
        : message[operation === "CreateCryptoKeyVersion" || operation === "ListCryptoKeyVersions" ? "parent" : operation === "TestIamPermissions" ? "resource" : "name"];
    const keyId = typeof named === "string" && named.length > 0 && named.length <= 512 ? named : undefined;
    return { operation, ...(keyId === undefined ? {} : { keyId }), state: { message } };
  }

  protected authenticate(req: EmulatorRequest, routed: GcpKmsRoute): AuthResult {
    const identity = identityOf(req);
    const permissions = this.#identities.get(identity);
    if (permissions === undefined) {
      return {
        ok: false,
        response: status("UNAUTHENTICATED", "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential."),
      };
    }
    const needed = GCP_KMS_PERMISSIONS[routed.operation as keyof typeof GCP_KMS_PERMISSIONS];
    if (needed !== undefined && permissions !== "*" && !permissions.has(needed)) {
      return { ok: false, identity, response: this.#denied(routed) };
    }
    return { ok: true, identity };
  }

  protected faultResponse(fault: Exclude<FaultKind, "latency" | "connectionReset">, routed: GcpKmsRoute, httpStatus: number): EmulatorResponse {
    switch (fault) {
      case "throttle":
        return status("RESOURCE_EXHAUSTED", "Quota exceeded for quota metric 'Cryptographic requests' and limit 'Cryptographic requests per minute'.");
      case "serverError":
        return httpStatus === 503 ? status("UNAVAILABLE", "The service is currently unavailable.") : status("INTERNAL", "Internal error encountered.");
      case "accessDenied":
        return this.#denied(routed);
      case "keyDisabled":
        return status("FAILED_PRECONDITION", `The request cannot be fulfilled. ${this.#resourceOf(routed)} is not enabled, current state is: DISABLED.`);
      case "keyNotFound":
        return status("NOT_FOUND", `${this.#resourceOf(routed)} not found.`);
    }
  }

  protected handle(_req: EmulatorRequest, routed: GcpKmsRoute, identity: string | undefined): EmulatorResponse {
    const message = routed.state!.message;
    const operation = routed.operation as GcpKmsOperation;
    const reply = (body: Json) => ({ status: 200, body: methodOf(operation).responseSerialize(body) });
    switch (operation) {
      case "Encrypt":
        return reply(this.#corrupt("Encrypt", this.#encrypt(message)));
      case "Decrypt":
        return reply(this.#corrupt("Decrypt", this.#decrypt(message)));
      case "GetCryptoKey":
        return reply(this.#cryptoKey(this.#resolveKey(message.name)));
      case "CreateCryptoKeyVersion": {
        const record = this.#resolveKey(message.parent);
        return reply(this.#versionJson(record, this.#addVersion(record)));
      }
      case "UpdateCryptoKeyPrimaryVersion": {
        const record = this.#resolveKey(message.name);
        const version = Number(message.cryptoKeyVersionId);
        const state = record.states[version - 1];
        if (!(Number.isInteger(version) && state !== undefined)) fail("NOT_FOUND", `${record.name}/cryptoKeyVersions/${String(message.cryptoKeyVersionId).slice(0, 16)} not found.`);
        if (state !== "ENABLED") fail("FAILED_PRECONDITION", `${record.name}/cryptoKeyVersions/${version} is not enabled, current state is: ${state}.`);
        record.primary = version;
        return reply(this.#cryptoKey(record));
      }
      case "ListCryptoKeyVersions":
        return reply(this.#listVersions(message));
      case "UpdateCryptoKeyVersion":
        return reply(this.#updateVersion(message));
      case "DestroyCryptoKeyVersion": {
        const { record, version } = this.#resolveVersion(message.name);
        if (record.states[version - 1] === "DESTROYED") fail("FAILED_PRECONDITION", `${record.name}/cryptoKeyVersions/${version} is already destroyed.`);
        this.#setState(record.name, version, "DESTROYED");
        return reply(this.#versionJson(record, version));
      }
      case "TestIamPermissions": {
        this.#resolveKey(message.resource);
        const held = this.#identities.get(identity ?? GCP_EMULATOR_IDENTITY);
        const asked = Array.isArray(message.permissions) ? message.permissions.filter((p): p is string => typeof p === "string") : [];
        return reply({ permissions: asked.filter((p) => held === "*" || held?.has(p) === true) });
      }
    }
  }

  // --- operations -------------------------------------------------------------------------------

  #encrypt(message: Json): Json {
    const { record, version } = this.#encryptTarget(message.name);
    const plaintext = bytesOf(message.plaintext);
    const aad = bytesOf(message.additionalAuthenticatedData);
    if (plaintext.length === 0 || plaintext.length > MAX_DATA_BYTES) fail("INVALID_ARGUMENT", "The plaintext must be between 1 and 65536 bytes.");
    if (aad.length > MAX_DATA_BYTES) fail("INVALID_ARGUMENT", "The additional authenticated data must be at most 65536 bytes.");
    const verifiedPlaintext = checkCrc(message.plaintextCrc32c, plaintext, "plaintext");
    const verifiedAad = checkCrc(message.additionalAuthenticatedDataCrc32c, aad, "additional_authenticated_data");
    this.#requireEnabled(record, version);
    const header = Buffer.alloc(CIPHERTEXT_HEADER_BYTES);
    header[0] = CIPHERTEXT_FORMAT;
    header.writeUInt32BE(version, 1);
    const ciphertext = Buffer.concat([header, record.key.seal(plaintext, ciphertextAad(record.name, header, aad), record.key.version(version))]);
    return {
      name: `${record.name}/cryptoKeyVersions/${version}`,
      ciphertext,
      ciphertextCrc32c: { value: String(crc32c(ciphertext)) },
      verifiedPlaintextCrc32c: verifiedPlaintext,
      verifiedAdditionalAuthenticatedDataCrc32c: verifiedAad,
      protectionLevel: "SOFTWARE",
    };
  }

  #decrypt(message: Json): Json {
    if (typeof message.name === "string" && VERSION_NAME.test(message.name)) {
      fail("INVALID_ARGUMENT", "Decrypt takes a CryptoKey name, not a CryptoKeyVersion name.");
    }
    const record = this.#resolveKey(message.name);
    const ciphertext = bytesOf(message.ciphertext);
    const aad = bytesOf(message.additionalAuthenticatedData);
    checkCrc(message.ciphertextCrc32c, ciphertext, "ciphertext");
    checkCrc(message.additionalAuthenticatedDataCrc32c, aad, "additional_authenticated_data");
    if (ciphertext.length < CIPHERTEXT_HEADER_BYTES + IV_BYTES + TAG_BYTES || ciphertext[0] !== CIPHERTEXT_FORMAT) fail("INVALID_ARGUMENT", INVALID_CIPHERTEXT);
    const version = ciphertext.readUInt32BE(1);
    if (record.states[version - 1] === undefined) fail("INVALID_ARGUMENT", INVALID_CIPHERTEXT);
    this.#requireEnabled(record, version);
    const header = ciphertext.subarray(0, CIPHERTEXT_HEADER_BYTES);
    const plaintext = record.key.open(ciphertext.subarray(CIPHERTEXT_HEADER_BYTES), ciphertextAad(record.name, header, aad), record.key.version(version)!);
    if (plaintext === undefined) fail("INVALID_ARGUMENT", INVALID_CIPHERTEXT);
    return { plaintext, plaintextCrc32c: { value: String(crc32c(plaintext)) }, usedPrimary: version === record.primary, protectionLevel: "SOFTWARE" };
  }

  /** One page of a key's versions, oldest first; the page token is the offset of the next page. */
  #listVersions(message: Json): Json {
    const record = this.#resolveKey(message.parent);
    const asked = Number(message.pageSize ?? 0);
    if (!Number.isInteger(asked) || asked < 0) fail("INVALID_ARGUMENT", "page_size must not be negative.");
    if (message.filter !== undefined && message.filter !== "") fail("INVALID_ARGUMENT", "This emulator does not filter ListCryptoKeyVersions.");
    const size = asked === 0 ? MAX_PAGE_SIZE : Math.min(asked, MAX_PAGE_SIZE);
    const token = typeof message.pageToken === "string" ? message.pageToken : "";
    const start = token === "" ? 0 : /^[0-9]{1,9}$/.test(token) ? Number(token) : NaN;
    if (!Number.isInteger(start) || start > record.states.length) fail("INVALID_ARGUMENT", "The page token is not valid.");
    const end = Math.min(start + size, record.states.length);
    const versions: Json[] = [];
    for (let n = start + 1; n <= end; n++) versions.push(this.#versionJson(record, n));
    return { cryptoKeyVersions: versions, nextPageToken: end < record.states.length ? String(end) : "", totalSize: record.states.length };
  }

  /** UpdateCryptoKeyVersion with `update_mask` `state`: ENABLED ⇄ DISABLED, as Google allows. */
  #updateVersion(message: Json): Json {
    const given = (message.cryptoKeyVersion ?? {}) as Json;
    const paths = ((message.updateMask as Json | undefined)?.paths ?? []) as unknown[];
    if (paths.length === 0) fail("INVALID_ARGUMENT", "The request must specify an update_mask.");
    if (paths.some((p) => p !== "state")) fail("INVALID_ARGUMENT", "This emulator updates only the state field (update_mask: state).");
    const { record, version } = this.#resolveVersion(given.name);
    const wanted = given.state;
    if (wanted !== "ENABLED" && wanted !== "DISABLED") fail("INVALID_ARGUMENT", "The state can only be updated to ENABLED or DISABLED.");
    const current = record.states[version - 1];
    if (current !== "ENABLED" && current !== "DISABLED") {
      fail("FAILED_PRECONDITION", `The request cannot be fulfilled. CryptoKeyVersion ${record.name}/cryptoKeyVersions/${version} is not enabled or disabled, current state is: ${current}.`);
    }
    record.states[version - 1] = wanted;
    return this.#versionJson(record, version);
  }

  /** Applies the first pending corruption of `operation` to a response about to be sent. */
  #corrupt(operation: "Encrypt" | "Decrypt", response: Json): Json {
    const corruption = this.#corruptions.find((c) => c.operation === operation && c.remaining > 0);
    if (corruption === undefined) return response;
    corruption.remaining -= 1;
    this.#corruptions = this.#corruptions.filter((c) => c.remaining > 0);
    switch (corruption.how) {
      case "payloadByte": {
        const field = operation === "Encrypt" ? "ciphertext" : "plaintext";
        const bytes = Buffer.from(response[field] as Buffer);
        bytes[bytes.length - 1]! ^= 0x01;
        return { ...response, [field]: bytes };
      }
      case "unverified":
        return operation === "Encrypt" ? { ...response, verifiedPlaintextCrc32c: false, verifiedAdditionalAuthenticatedDataCrc32c: false } : { ...response, plaintextCrc32c: null };
      case "foreignName":
        return { ...response, name: `${this.keyName("another-key")}/cryptoKeyVersions/1` };
    }
  }

  #cryptoKey(record: KeyRecord): Json {
    return {
      name: record.name,
      primary: this.#versionJson(record, record.primary),
      purpose: "ENCRYPT_DECRYPT",
      createTime: timestamp(record.createdAt),
      versionTemplate: { protectionLevel: "SOFTWARE", algorithm: "GOOGLE_SYMMETRIC_ENCRYPTION" },
      labels: {},
    };
  }

  #versionJson(record: KeyRecord, version: number): Json {
    return {
      name: `${record.name}/cryptoKeyVersions/${version}`,
      state: record.states[version - 1],
      protectionLevel: "SOFTWARE",
      algorithm: "GOOGLE_SYMMETRIC_ENCRYPTION",
      createTime: timestamp(record.key.version(version)!.createdAt),
    };
  }

  // --- helpers ------------------------------------------------------------------------------------

  #addVersion(record: KeyRecord): number {
    record.states.push("ENABLED");
    return record.key.addVersion(this.now()).version;
  }

  #encryptTarget(name: unknown): { record: KeyRecord; version: number } {
    if (typeof name === "string" && VERSION_NAME.test(name)) return this.#resolveVersion(name);
    const record = this.#resolveKey(name);
    return { record, version: record.primary };
  }

  #resolveKey(name: unknown): KeyRecord {
    if (typeof name !== "string" || !KEY_NAME.test(name)) fail("INVALID_ARGUMENT", "The resource name is not a valid CryptoKey name.");
    const record = this.#keys.get(name);
    if (record === undefined) fail("NOT_FOUND", `CryptoKey ${name} not found.`);
    return record;
  }

  #resolveVersion(name: unknown): { record: KeyRecord; version: number } {
    const match = typeof name === "string" ? VERSION_NAME.exec(name) : null;
    if (match === null) fail("INVALID_ARGUMENT", "The resource name is not a valid CryptoKeyVersion name.");
    const record = this.#resolveKey(match[1]);
    const version = Number(match[2]);
    if (record.states[version - 1] === undefined) fail("NOT_FOUND", `CryptoKeyVersion ${name as string} not found.`);
    return { record, version };
  }

  #requireEnabled(record: KeyRecord, version: number): void {
    const state = record.states[version - 1];
    if (state !== "ENABLED") {
      fail("FAILED_PRECONDITION", `The request cannot be fulfilled. CryptoKeyVersion ${record.name}/cryptoKeyVersions/${version} is not enabled, current state is: ${state}.`);
    }
  }

  #helperKey(keyName: string): KeyRecord {
    const record = this.#keys.get(keyName.includes("/") ? keyName : this.keyName(keyName));
    if (record === undefined) throw new RangeError(`no key ${keyName}`);
    return record;
  }

  #setState(keyName: string, version: number | undefined, state: GcpVersionState): void {
    const record = this.#helperKey(keyName);
    const n = version ?? record.primary;
    const current = record.states[n - 1];
    if (current === undefined) throw new RangeError(`no version ${n} of ${record.name}`);
    if (current === "DESTROYED") throw new RangeError(`version ${n} of ${record.name} is destroyed`);
    record.states[n - 1] = state;
    if (state === "DESTROYED") record.key.version(n)!.material.fill(0);
  }

  #denied(routed: GcpKmsRoute): EmulatorResponse {
    const permission = GCP_KMS_PERMISSIONS[routed.operation as keyof typeof GCP_KMS_PERMISSIONS] ?? "cloudkms.cryptoKeys.getIamPolicy";
    return status("PERMISSION_DENIED", `Permission '${permission}' denied on resource '${this.#resourceOf(routed)}' (or it may not exist).`);
  }

  /** The resource a request names, printable-checked (it is echoed in messages, as Google does). */
  #resourceOf(routed: GcpKmsRoute): string {
    return routed.keyId !== undefined && /^[\x21-\x7e]{1,512}$/.test(routed.keyId) ? routed.keyId : "(unnamed resource)";
  }

  #startedPort(): number {
    if (this.port === 0) throw new Error("gcp-kms emulator: not started");
    return this.port;
  }
}

// --- gRPC transport -----------------------------------------------------------------------------

type UnaryCall = grpc.ServerUnaryCall<Buffer, Buffer>;

/**
 * Serves the methods of `SERVED` with raw (undecoded) messages: the pipeline sees the request's
 * bytes as its body, and `route` decodes them. A response whose `grpc-status` header is set (see
 * `status`) is sent as that gRPC status; any other as the message in its body.
 */
class GrpcTransport implements EmulatorTransport {
  #server: grpc.Server | undefined;
  readonly #maxMessageBytes: number;
  readonly #tls: NonNullable<EmulatorOptions["tls"]>;

  constructor(maxMessageBytes: number, tls: NonNullable<EmulatorOptions["tls"]>) {
    this.#maxMessageBytes = maxMessageBytes;
    this.#tls = tls;
  }

  async listen(port: number, serve: (exchange: TransportExchange) => Promise<void>): Promise<number> {
    sdk(); // loaded before listening: a missing @google-cloud/kms fails start(), naming the package
    const server = new grpc.Server({ "grpc.max_receive_message_length": this.#maxMessageBytes });
    for (const service of [KMS_SERVICE, IAM_SERVICE]) {
      const definition: Record<string, grpc.MethodDefinition<Buffer, Buffer>> = {};
      const handlers: grpc.UntypedServiceImplementation = {};
      for (const [operation, owner] of Object.entries(SERVED)) {
        if (owner !== service) continue;
        const identity = (bytes: Buffer) => bytes;
        definition[operation] = {
          path: `/${service}/${operation}`,
          requestStream: false,
          responseStream: false,
          requestSerialize: identity,
          requestDeserialize: identity,
          responseSerialize: identity,
          responseDeserialize: identity,
        };
        handlers[operation] = (call: UnaryCall, callback: grpc.sendUnaryData<Buffer>) => void serve(this.#exchange(call, callback));
      }
      server.addService(definition, handlers);
    }
    const tls = typeof this.#tls === "function" ? await this.#tls() : this.#tls;
    // No client certificate is asked for (`false`): callers are told apart by the identity they name.
    const credentials = grpc.ServerCredentials.createSsl(null, [{ cert_chain: Buffer.from(tls.cert), private_key: Buffer.from(tls.key) }], false);
    const bound = await new Promise<number>((resolve, reject) => server.bindAsync(`127.0.0.1:${port}`, credentials, (error, p) => (error ? reject(error) : resolve(p))));
    this.#server = server;
    return bound;
  }

  /**
   * Drops every connection and call in flight, as an outage does. Each HTTP/2 session is destroyed
   * first, without an error code: `forceShutdown` alone sends GOAWAY with CANCEL, which a call racing
   * the shutdown reports as CANCELLED instead of the UNAVAILABLE a dead server gives.
   */
  async close(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    if (server === undefined) return;
    for (const session of sessionsOf(server)) session.destroy();
    server.forceShutdown();
  }

  #exchange(call: UnaryCall, callback: grpc.sendUnaryData<Buffer>): TransportExchange {
    const headers: Record<string, string> = {};
    for (const [key, value] of Object.entries(call.metadata.getMap())) if (typeof value === "string") headers[key] = value;
    let answered = false;
    return {
      request: { method: "POST", url: new URL(call.getPath(), "http://127.0.0.1"), headers, body: call.request },
      gone: () => answered || call.cancelled || this.#server === undefined,
      drop: () => {
        answered = true;
        // grpc-js exposes no socket: close the call's HTTP/2 session (its connection), as a reset does.
        const session = (call as unknown as { call?: { stream?: { session?: Http2Session } } }).call?.stream?.session;
        if (session !== undefined) session.destroy();
        else callback({ code: grpc.status.UNAVAILABLE, details: "Connection dropped" });
      },
      reply: (response) => {
        answered = true;
        const code = response.headers?.["grpc-status"];
        if (code === undefined || code === "0") callback(null, response.body as Buffer);
        else callback({ code: Number(code), details: response.headers?.["grpc-message"] ?? "" });
      },
    };
  }
}

/**
 * The server's open HTTP/2 sessions. grpc-js (1.14) keeps them in a private `sessions` map and has no
 * public way to reach a connection; without it, `close()` falls back to `forceShutdown` alone.
 */
function sessionsOf(server: grpc.Server): Http2Session[] {
  const sessions = (server as unknown as { sessions?: unknown }).sessions;
  return sessions instanceof Map ? [...(sessions.keys() as Iterable<Http2Session>)] : [];
}

// --- protos and wire helpers --------------------------------------------------------------------

interface Sdk {
  /** The service definitions, from the protos `@google-cloud/kms` ships (and google-gax's, for IAM). */
  readonly definition: PackageDefinition;
  /**
   * The grpc-js instance the client uses (google-gax's): channel credentials from another copy of
   * grpc-js would be refused by the client's channel.
   */
  readonly grpc: typeof grpc;
}

let loaded: Sdk | undefined;

/** `@google-cloud/kms` and what the emulator takes from it, loaded once per process on first use (about 150 ms). */
function sdk(): Sdk {
  if (loaded !== undefined) return loaded;
  let kmsEntry: string;
  try {
    kmsEntry = require.resolve("@google-cloud/kms");
  } catch {
    throw new Error("gcp-kms emulator: it needs @google-cloud/kms (its protos and client): install it as a devDependency (pnpm add -D @google-cloud/kms)");
  }
  const gax = createRequire(kmsEntry)("google-gax") as { grpc: typeof grpc };
  const gaxEntry = createRequire(kmsEntry).resolve("google-gax");
  const definition = loadSync(["google/cloud/kms/v1/service.proto", "google/iam/v1/iam_policy.proto"], {
    includeDirs: [join(dirname(kmsEntry), "..", "protos"), join(dirname(gaxEntry), "..", "protos")],
    longs: String,
    enums: String,
    defaults: false,
    oneofs: true,
  });
  loaded = { definition, grpc: gax.grpc };
  return loaded;
}

/** How one served method's messages are decoded and encoded (from the protos). */
function methodOf(operation: GcpKmsOperation): { requestDeserialize(bytes: Buffer): Json; responseSerialize(message: Json): Buffer } {
  const service = sdk().definition[SERVED[operation]] as Record<string, { requestDeserialize(bytes: Buffer): Json; responseSerialize(message: Json): Buffer }> | undefined;
  const method = service?.[operation];
  if (method === undefined) throw new Error(`gcp-kms emulator: no ${operation} in the protos`);
  return method;
}

/** A gRPC status answer, logged under Google's HTTP status for the code. */
function status(code: keyof typeof grpc.status, message: string): EmulatorResponse {
  return { status: GRPC_HTTP_STATUS[code] ?? 500, headers: { "grpc-status": String(grpc.status[code]), "grpc-message": message } };
}

function fail(code: keyof typeof grpc.status, message: string): never {
  throw new EmulatorReply(status(code, message));
}

/** The identity a request carries in its user-agent (`kms-emulator-identity/<identity>`), else the default. */
function identityOf(req: EmulatorRequest): string {
  const token = String(req.headers["user-agent"] ?? "")
    .split(" ")
    .find((part) => part.startsWith(`${GCP_IDENTITY_USER_AGENT}/`));
  return token === undefined ? GCP_EMULATOR_IDENTITY : token.slice(GCP_IDENTITY_USER_AGENT.length + 1);
}

function bytesOf(value: unknown): Buffer {
  return Buffer.isBuffer(value) ? value : Buffer.alloc(0);
}

/** Whether a request checksum (an Int64Value) was present and matched; INVALID_ARGUMENT when it did not match. */
function checkCrc(wrapper: unknown, data: Buffer, field: string): boolean {
  if (typeof wrapper !== "object" || wrapper === null) return false;
  const value = (wrapper as { value?: unknown }).value;
  if (Number(value ?? 0) !== crc32c(data)) fail("INVALID_ARGUMENT", `The checksum in field ${field}_crc32c did not match the data in field ${field}.`);
  return true;
}

function ciphertextAad(keyName: string, header: Buffer, aad: Buffer): Buffer {
  const name = Buffer.from(keyName, "utf8");
  const u32 = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n);
    return b;
  };
  return Buffer.concat([AAD_LABEL, u32(name.length), name, header, u32(aad.length), aad]);
}

function timestamp(date: Date): Json {
  const ms = date.getTime();
  return { seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 };
}
