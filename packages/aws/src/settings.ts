/**
 * Settings of `providers["aws-kms"]` in configuration, and the key-id syntax AWS KMS accepts. Both
 * are checked without any network access (core calls them at start-up).
 *
 * Hand-written rather than zod: `zod` is not a dependency of this package (see the README).
 */
import type { SettingsResult } from "@kms/core";

/** Static AWS credentials. Prefer the SDK's default chain (environment, shared config, roles). */
export interface AwsStaticCredentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  /** For temporary credentials (STS). */
  readonly sessionToken?: string;
}

/** What configuration may set for the `aws-kms` provider. */
export interface AwsKmsSettings {
  /** The key's region, e.g. `us-east-1`. Required: the SDK signs requests for it. */
  readonly region: string;
  /** Another endpoint (VPC endpoint, FIPS endpoint, an emulator); default the region's public one. */
  readonly endpoint?: string;
  /** Static credentials; default the SDK's credential chain. */
  readonly credentials?: AwsStaticCredentials;
  /** Time to establish a connection before the SDK gives up (a retryable `KMS_TIMEOUT`). Default: none (core's timeout applies). */
  readonly connectionTimeoutMs?: number;
  /** Time for a whole request before the SDK gives up (the SDK reports ETIMEDOUT: a retryable `KMS_TIMEOUT`). Core's `resilience.timeoutMs` applies anyway. */
  readonly requestTimeoutMs?: number;
}

type Issue = { path: string; message: string };

const REGION = /^[a-z]{2}(-[a-z0-9]+)+-\d{1,2}$/;
const MAX_TIMEOUT_MS = 600_000;
const SETTINGS = new Set(["region", "endpoint", "credentials", "connectionTimeoutMs", "requestTimeoutMs"]);
const CREDENTIALS = new Set(["accessKeyId", "secretAccessKey", "sessionToken"]);

/** Validates raw settings; every problem is reported with its path, and no value is ever echoed. */
export function parseAwsKmsSettings(raw: unknown): SettingsResult<AwsKmsSettings> {
  const issues: Issue[] = [];
  if (!isRecord(raw)) return { ok: false, issues: [{ path: "", message: "must be an object with at least a region" }] };
  for (const key of Object.keys(raw)) {
    if (SETTINGS.has(key)) continue;
    issues.push({
      path: key,
      message:
        key === "maxAttempts"
          ? "not configurable: the SDK makes one attempt per call, and core's resilience.retry does the retrying"
          : "unknown setting (expected region, endpoint, credentials, connectionTimeoutMs, requestTimeoutMs)",
    });
  }
  const { region, endpoint, credentials, connectionTimeoutMs, requestTimeoutMs } = raw;
  if (typeof region !== "string" || !REGION.test(region)) issues.push({ path: "region", message: "must be an AWS region such as us-east-1" });
  if (endpoint !== undefined && endpointProblem(endpoint) !== undefined) issues.push({ path: "endpoint", message: endpointProblem(endpoint)! });
  if (credentials !== undefined) issues.push(...credentialIssues(credentials));
  for (const [path, value] of [["connectionTimeoutMs", connectionTimeoutMs], ["requestTimeoutMs", requestTimeoutMs]] as const) {
    if (value !== undefined && !(Number.isInteger(value) && (value as number) > 0 && (value as number) <= MAX_TIMEOUT_MS)) {
      issues.push({ path, message: `must be a whole number of milliseconds, 1 to ${MAX_TIMEOUT_MS}` });
    }
  }
  if (issues.length > 0) return { ok: false, issues };
  return {
    ok: true,
    settings: {
      region: region as string,
      ...(endpoint === undefined ? {} : { endpoint: endpoint as string }),
      ...(credentials === undefined ? {} : { credentials: credentials as unknown as AwsStaticCredentials }),
      ...(connectionTimeoutMs === undefined ? {} : { connectionTimeoutMs: connectionTimeoutMs as number }),
      ...(requestTimeoutMs === undefined ? {} : { requestTimeoutMs: requestTimeoutMs as number }),
    },
  };
}

function endpointProblem(endpoint: unknown): string | undefined {
  const rule = "must be an http(s) URL such as https://kms.us-east-1.amazonaws.com";
  if (typeof endpoint !== "string") return rule;
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    return rule;
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") return rule;
  if (url.username !== "" || url.password !== "") return "must not carry credentials: use settings.credentials or the SDK's credential chain";
  return undefined;
}

function credentialIssues(credentials: unknown): Issue[] {
  if (!isRecord(credentials)) return [{ path: "credentials", message: "must be an object with accessKeyId and secretAccessKey" }];
  const issues: Issue[] = [];
  for (const key of Object.keys(credentials)) {
    if (!CREDENTIALS.has(key)) issues.push({ path: `credentials.${key}`, message: "unknown setting (expected accessKeyId, secretAccessKey, sessionToken)" });
  }
  const { accessKeyId, secretAccessKey, sessionToken } = credentials;
  if (typeof accessKeyId !== "string" || !/^[A-Za-z0-9]{1,128}$/.test(accessKeyId)) {
    issues.push({ path: "credentials.accessKeyId", message: "must be an access key id (letters and digits)" });
  }
  if (typeof secretAccessKey !== "string" || secretAccessKey.length === 0) {
    issues.push({ path: "credentials.secretAccessKey", message: "must be a non-empty string" });
  }
  if (sessionToken !== undefined && (typeof sessionToken !== "string" || sessionToken.length === 0)) {
    issues.push({ path: "credentials.sessionToken", message: "must be a non-empty string when given" });
  }
  return issues;
}

const KEY_UUID = "(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32})";
const ALIAS = "alias/[A-Za-z0-9/_-]{1,250}";
const ARN_PREFIX = "arn:aws[a-z-]*:kms:[a-z0-9-]{1,32}:\\d{12}:";
const KEY_ID_FORMS = new RegExp(`^(?:${KEY_UUID}|${ALIAS}|${ARN_PREFIX}key/${KEY_UUID}|${ARN_PREFIX}${ALIAS})$`);

/** The four forms AWS KMS resolves, for messages. */
export const AWS_KEY_ID_RULE =
  "AWS KMS key ids are a key id (1234abcd-12ab-34cd-56ef-1234567890ab or mrk-…), a key ARN " +
  "(arn:aws:kms:<region>:<account>:key/<key id>), an alias (alias/<name>) or an alias ARN " +
  "(arn:aws:kms:<region>:<account>:alias/<name>)";

/** Why AWS KMS could never resolve `keyId`, or undefined when it has one of the four forms. */
export function awsKeyIdProblem(keyId: string): string | undefined {
  return typeof keyId === "string" && KEY_ID_FORMS.test(keyId) ? undefined : AWS_KEY_ID_RULE;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
