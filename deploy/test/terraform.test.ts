// The SDK warns once per process on Node 20 (it will require Node 22 from 2027); not under test here.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = "true";

/**
 * The Terraform modules (deploy/terraform/*) and Vault policies (deploy/vault/*.hcl) against the
 * providers' own permission lists: every file parses as HCL (@cdktf/hcl2json, Terraform's own
 * parser compiled to wasm), and what each module grants the service's identity is exactly what
 * `validatePermissions` (`kms validate`) checks, no more, no less. Likewise the optional rotation and
 * key-administration grants. No terraform binary and no cloud: the parsed JSON is read directly.
 */
import { readFileSync, readdirSync } from "node:fs";
import { join, relative } from "node:path";
import { beforeAll, describe, expect, it } from "@jest/globals";
import { parse } from "@cdktf/hcl2json";
import { AWS_ROTATION_PERMISSIONS, AWS_RUNTIME_PERMISSIONS, AWS_SHREDDING_PERMISSIONS } from "@kms/aws";
import { AZURE_ROTATION_DATA_ACTIONS, AZURE_RUNTIME_DATA_ACTIONS, AZURE_SHREDDING_DATA_ACTIONS } from "@kms/azure";
import { GCP_ROTATION_PERMISSIONS, GCP_RUNTIME_PERMISSIONS, GCP_SHREDDING_PERMISSIONS } from "@kms/gcp";
import { VAULT_ROTATION_GRANTS, VAULT_RUNTIME_GRANTS, VAULT_SHREDDING_GRANTS, type VaultPolicyGrant, vaultGrantPath } from "@kms/vault";

type Json = Record<string, unknown>;

const DEPLOY = join(__dirname, "..");
const MODULES = ["aws", "gcp", "azure"] as const;
type ModuleName = (typeof MODULES)[number];

// --- reading parsed HCL ---------------------------------------------------------------------------

function isObject(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** hcl2json gives every block as an array of bodies; an absent block is []. */
function bodies(value: unknown): Json[] {
  if (value === undefined) return [];
  if (!Array.isArray(value) || !value.every(isObject)) throw new Error(`expected a list of blocks, got ${JSON.stringify(value)}`);
  return value;
}

/** The one body of a labelled block: `one(module, "resource", "aws_kms_key", "this")`. */
function one(root: Json, ...labels: string[]): Json {
  let node: unknown = root;
  for (const label of labels) {
    if (!isObject(node) || !(label in node)) throw new Error(`no ${labels.join(".")} (missing ${label})`);
    node = node[label];
  }
  const found = bodies(node);
  if (found.length !== 1) throw new Error(`${labels.join(".")}: expected one block, found ${found.length}`);
  return found[0]!;
}

/** Every body of a labelled block type: `all(module, "resource", "azurerm_role_assignment")` → name → body. */
function all(root: Json, ...labels: string[]): Map<string, Json> {
  let node: unknown = root;
  for (const label of labels) node = isObject(node) ? node[label] : undefined;
  const out = new Map<string, Json>();
  if (!isObject(node)) return out;
  for (const [name, value] of Object.entries(node)) for (const body of bodies(value)) out.set(name, body);
  return out;
}

/**
 * A list of literal strings: permissions must be written out in the module, never computed, so that
 * this test sees exactly what Terraform will grant.
 */
function literals(value: unknown, where: string): string[] {
  if (!Array.isArray(value) || !value.every((v) => typeof v === "string" && !v.includes("${"))) {
    throw new Error(`${where}: expected a literal list of strings, got ${JSON.stringify(value)}`);
  }
  return value as string[];
}

/** Merges the parsed files of one module (a module is all the .tf files of its directory). */
function merge(target: Json, source: Json): Json {
  for (const [key, value] of Object.entries(source)) {
    const existing = target[key];
    if (Array.isArray(existing) && Array.isArray(value)) target[key] = [...existing, ...value];
    else if (isObject(existing) && isObject(value)) merge(existing, value);
    else if (existing === undefined) target[key] = value;
    else throw new Error(`${key} is defined twice`);
  }
  return target;
}

/** Sorted, without duplicates: the comparisons are of sets. */
function set(values: Iterable<string>): string[] {
  return [...new Set(values)].sort();
}

/** What a module grants beyond, and short of, what a provider checks. Empty both ways: they match. */
function permissionDiff(granted: Iterable<string>, expected: Iterable<string>): { extra: string[]; missing: string[] } {
  const g = new Set(granted);
  const e = new Set(expected);
  return { extra: set([...g].filter((p) => !e.has(p))), missing: set([...e].filter((p) => !g.has(p))) };
}

// --- what each module grants ------------------------------------------------------------------------

interface AwsStatement {
  readonly sid: string;
  readonly effect: string;
  readonly actions: string[];
  /** The principals' identifiers as written: `${var.service_principal_arns}` or a literal list. */
  readonly principals: string[];
}

/** The key policy's statements, static and dynamic ones alike. */
function awsStatements(module: Json): AwsStatement[] {
  const document = one(module, "data", "aws_iam_policy_document", "key");
  const dynamic = isObject(document.dynamic) ? bodies(document.dynamic.statement).flatMap((d) => bodies(d.content)) : [];
  return [...bodies(document.statement), ...dynamic].map((s) => {
    const sid = typeof s.sid === "string" ? s.sid : "(no sid)";
    const principals = bodies(s.principals).flatMap((p) => {
      const ids: unknown = p.identifiers;
      if (typeof ids === "string") return [ids];
      if (Array.isArray(ids) && ids.every((id) => typeof id === "string")) return ids as string[];
      throw new Error(`${sid}: unexpected principals ${JSON.stringify(ids)}`);
    });
    return { sid, effect: typeof s.effect === "string" ? s.effect : "Allow", actions: literals(s.actions, `${sid} actions`), principals };
  });
}

const AWS_PRINCIPALS = {
  service: "${var.service_principal_arns}",
  rotation: "${var.rotation_principal_arns}",
  keyAdmin: "${var.key_admin_principal_arns}",
  root: "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root",
} as const;

/** The actions the key policy allows (or denies) the principals written as `principal`. */
function awsGranted(module: Json, principal: string, effect: "Allow" | "Deny" = "Allow"): string[] {
  return set(awsStatements(module).flatMap((s) => (s.effect === effect && s.principals.includes(principal) ? s.actions : [])));
}

/** A custom role's permissions (GCP): `gcpRole(module, "runtime")`. */
function gcpRole(module: Json, name: string): string[] {
  return set(literals(one(module, "resource", "google_project_iam_custom_role", name).permissions, `google_project_iam_custom_role.${name}`));
}

/** A role definition's data actions (Azure), checking it has no control-plane actions. */
function azureRole(module: Json, name: string): string[] {
  const permissions = bodies(one(module, "resource", "azurerm_role_definition", name).permissions);
  expect(permissions).toHaveLength(1);
  expect(permissions[0]!.actions ?? []).toEqual([]);
  return set(literals(permissions[0]!.data_actions, `azurerm_role_definition.${name}`));
}

/** What a Vault policy grants: `update transit/encrypt/+`… */
function vaultGrants(policy: Json): string[] {
  return set(
    [...all(policy, "path")].flatMap(([path, body]) => literals(body.capabilities, `path "${path}"`).map((capability) => `${capability} ${path}`)),
  );
}

/** A provider's Vault grants as the policy files write them: mount `transit`, any one key name (`+`). */
function expectedVault(grants: readonly VaultPolicyGrant[]): string[] {
  return set(grants.map((g) => `${g.capability} ${vaultGrantPath(g, "transit", "+")}`));
}

// --- the files -------------------------------------------------------------------------------------

function filesIn(dir: string, extension: string): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith(extension))
    .sort()
    .map((f) => join(dir, f));
}

const TF_FILES = MODULES.flatMap((m) => filesIn(join(DEPLOY, "terraform", m), ".tf"));
const HCL_FILES = filesIn(join(DEPLOY, "vault"), ".hcl");

async function parseFile(file: string, text = readFileSync(file, "utf8")): Promise<Json> {
  return (await parse(relative(DEPLOY, file), text)) as Json;
}

async function parseModule(name: ModuleName, edit?: { file: string; from: string; to: string }): Promise<Json> {
  const module: Json = {};
  for (const file of filesIn(join(DEPLOY, "terraform", name), ".tf")) {
    let text = readFileSync(file, "utf8");
    if (edit !== undefined && file.endsWith(`/${edit.file}`)) {
      if (!text.includes(edit.from)) throw new Error(`${edit.file} has no ${edit.from}`);
      text = text.replace(edit.from, edit.to);
    }
    merge(module, await parseFile(file, text));
  }
  return module;
}

const parsed = new Map<string, Json>();
const modules = new Map<ModuleName, Json>();
const mod = (name: ModuleName): Json => modules.get(name)!;
const policy = (name: string): Json => parsed.get(join(DEPLOY, "vault", name))!;

beforeAll(async () => {
  for (const file of [...TF_FILES, ...HCL_FILES]) parsed.set(file, await parseFile(file));
  for (const name of MODULES) modules.set(name, await parseModule(name));
});

describe("every file parses as HCL", () => {
  it("finds the modules' files and the Vault policies", () => {
    for (const name of MODULES) {
      expect(filesIn(join(DEPLOY, "terraform", name), ".tf").map((f) => f.slice(f.lastIndexOf("/") + 1))).toEqual(["main.tf", "outputs.tf", "variables.tf", "versions.tf"]);
    }
    expect(HCL_FILES.map((f) => f.slice(f.lastIndexOf("/") + 1))).toEqual(["kms-rotation.hcl", "kms-runtime.hcl", "kms-shred.hcl"]);
  });

  it.each([...TF_FILES, ...HCL_FILES].map((f) => [relative(DEPLOY, f)]))("%s", (file) => {
    const json = parsed.get(join(DEPLOY, file));
    expect(isObject(json) && Object.keys(json).length > 0).toBe(true);
  });

  it("the parser does reject a broken file (so the checks above can fail)", async () => {
    const text = readFileSync(join(DEPLOY, "terraform/aws/main.tf"), "utf8");
    await expect(parseFile(join(DEPLOY, "terraform/aws/broken.tf"), text.replace(/\}\s*$/, ""))).rejects.toThrow(/Unclosed configuration block|closing brace/);
    await expect(parseFile(join(DEPLOY, "vault/broken.hcl"), 'path "transit/encrypt/+" { capabilities = ["update"]')).rejects.toThrow();
  });

  it.each(MODULES)("%s: every variable has a description and a type, every output a description", (name) => {
    const variables = all(mod(name), "variable");
    const outputs = all(mod(name), "output");
    expect(variables.size).toBeGreaterThan(0);
    expect(outputs.size).toBeGreaterThan(0);
    for (const [variable, body] of variables) {
      expect([variable, typeof body.description === "string" && body.description.length > 10]).toEqual([variable, true]);
      expect([variable, typeof body.type === "string" && /^\$\{.+\}$/.test(body.type)]).toEqual([variable, true]);
    }
    for (const [output, body] of outputs) expect([output, typeof body.description === "string" && body.description.length > 10]).toEqual([output, true]);
  });

  it.each(MODULES)("%s: every variable is used and every var.* reference is declared", (name) => {
    const dir = join(DEPLOY, "terraform", name);
    const text = filesIn(dir, ".tf")
      .filter((f) => !f.endsWith("variables.tf"))
      .map((f) => readFileSync(f, "utf8"))
      .join("\n");
    const declared = set(all(mod(name), "variable").keys());
    const referenced = set([...(text + readFileSync(join(dir, "variables.tf"), "utf8")).matchAll(/\bvar\.([a-z_][a-z0-9_]*)/g)].map((m) => m[1]!));
    expect(referenced).toEqual(declared);
    for (const variable of declared) expect([variable, text.includes(`var.${variable}`)]).toEqual([variable, true]);
  });

  it.each(MODULES)("%s: pins Terraform and its provider in versions.tf", (name) => {
    const terraform = one(mod(name), "terraform");
    expect(typeof terraform.required_version).toBe("string");
    const providers = bodies(terraform.required_providers)[0]!;
    const provider = { aws: "aws", gcp: "google", azure: "azurerm" }[name];
    expect(providers[provider]).toMatchObject({ source: `hashicorp/${provider}` });
  });
});

describe("aws: the key policy grants exactly what validatePermissions checks", () => {
  it("the service's role: AWS_RUNTIME_PERMISSIONS", () => {
    expect(awsGranted(mod("aws"), AWS_PRINCIPALS.service)).toEqual(set(AWS_RUNTIME_PERMISSIONS));
  });

  it("the rotation role: AWS_ROTATION_PERMISSIONS; the key-administration role: AWS_SHREDDING_PERMISSIONS", () => {
    expect(awsGranted(mod("aws"), AWS_PRINCIPALS.rotation)).toEqual(set(AWS_ROTATION_PERMISSIONS));
    expect(awsGranted(mod("aws"), AWS_PRINCIPALS.keyAdmin)).toEqual(set(AWS_SHREDDING_PERMISSIONS));
  });

  it("denies the service the shredding actions it must never hold, and nothing it needs", () => {
    const denied = awsGranted(mod("aws"), AWS_PRINCIPALS.service, "Deny");
    expect(denied).toEqual(set(AWS_SHREDDING_PERMISSIONS.filter((a) => !(AWS_RUNTIME_PERMISSIONS as readonly string[]).includes(a))));
    expect(permissionDiff(denied, AWS_RUNTIME_PERMISSIONS).missing).toEqual(set(AWS_RUNTIME_PERMISSIONS));
  });

  it("no other principal: kms:* only for the account root (so the key is never orphaned)", () => {
    const statements = awsStatements(mod("aws"));
    for (const s of statements) expect([s.sid, s.principals.every((p) => (Object.values(AWS_PRINCIPALS) as string[]).includes(p))]).toEqual([s.sid, true]);
    expect(statements.filter((s) => s.actions.some((a) => a.includes("*")))).toEqual([
      { sid: "EnableRootAccountAdministration", effect: "Allow", actions: ["kms:*"], principals: [AWS_PRINCIPALS.root] },
    ]);
    expect(new Set(statements.map((s) => s.sid)).size).toBe(statements.length);
  });

  it("the encryption-context condition is on the data-path actions only, and kms validate's context passes it", () => {
    const envelope = awsStatements(mod("aws")).find((s) => s.sid === "ServiceEnvelopeEncryption")!;
    expect(envelope.actions).not.toContain("kms:DescribeKey");
    const document = one(mod("aws"), "data", "aws_iam_policy_document", "key");
    const withCondition = bodies(document.statement).find((s) => s.sid === "ServiceEnvelopeEncryption")!;
    const condition = bodies(isObject(withCondition.dynamic) ? withCondition.dynamic.condition : undefined).flatMap((d) => bodies(d.content));
    expect(condition).toEqual([{ test: "StringLike", variable: "kms:EncryptionContext:kms:tenant", values: "${var.tenant_context_values}" }]);
    const values = one(mod("aws"), "variable", "tenant_context_values");
    expect(values.default).toEqual(["*"]);
    expect(JSON.stringify(values.validation)).toContain("kms-validate-permissions");
  });

  it("a symmetric key with automatic rotation every 90 days by default, and an alias", () => {
    const key = one(mod("aws"), "resource", "aws_kms_key", "this");
    expect(key).toMatchObject({
      key_usage: "ENCRYPT_DECRYPT",
      customer_master_key_spec: "SYMMETRIC_DEFAULT",
      enable_key_rotation: true,
      rotation_period_in_days: "${var.rotation_period_in_days}",
      policy: "${data.aws_iam_policy_document.key.json}",
    });
    expect(one(mod("aws"), "variable", "rotation_period_in_days").default).toBe(90);
    expect(one(mod("aws"), "resource", "aws_kms_alias", "this")).toMatchObject({ target_key_id: "${aws_kms_key.this.key_id}" });
    expect(set(all(mod("aws"), "output").keys())).toEqual(expect.arrayContaining(["alias_arn", "key_arn", "kms_config"]));
  });

  it("no IAM resource of its own grants anything else", () => {
    const resourceTypes = Object.keys(isObject(mod("aws").resource) ? mod("aws").resource as Json : {});
    expect(resourceTypes.sort()).toEqual(["aws_kms_alias", "aws_kms_key"]);
  });
});

describe("gcp: the custom roles hold exactly what validatePermissions checks", () => {
  it("the runtime role: GCP_RUNTIME_PERMISSIONS, bound on the key to each service account", () => {
    expect(gcpRole(mod("gcp"), "runtime")).toEqual(set(GCP_RUNTIME_PERMISSIONS));
    expect(one(mod("gcp"), "resource", "google_kms_crypto_key_iam_member", "runtime")).toMatchObject({
      crypto_key_id: "${google_kms_crypto_key.this.id}",
      role: "${google_project_iam_custom_role.runtime.name}",
      for_each: "${local.service_members}",
    });
  });

  it("the rotation role: GCP_ROTATION_PERMISSIONS; the shredding role: GCP_SHREDDING_PERMISSIONS", () => {
    expect(gcpRole(mod("gcp"), "rotation")).toEqual(set(GCP_ROTATION_PERMISSIONS));
    expect(gcpRole(mod("gcp"), "key_admin")).toEqual(set(GCP_SHREDDING_PERMISSIONS));
  });

  it("every binding is on the key, of one of its custom roles; no predefined role, no project-wide grant", () => {
    const resources = mod("gcp").resource as Json;
    const iamTypes = Object.keys(resources).filter((t) => t.includes("_iam_") && t !== "google_project_iam_custom_role");
    expect(iamTypes).toEqual(["google_kms_crypto_key_iam_member"]);
    const bindings = all(mod("gcp"), "resource", "google_kms_crypto_key_iam_member");
    expect(set(bindings.keys())).toEqual(set(all(mod("gcp"), "resource", "google_project_iam_custom_role").keys()));
    for (const [name, binding] of bindings) {
      expect(binding.crypto_key_id).toBe("${google_kms_crypto_key.this.id}");
      expect(String(binding.role)).toMatch(new RegExp(`^\\$\\{google_project_iam_custom_role\\.${name}(\\[0\\])?\\.name\\}$`));
    }
  });

  it("an ENCRYPT_DECRYPT key rotated every rotation_period_days (90 by default), protected from destroy", () => {
    const key = one(mod("gcp"), "resource", "google_kms_crypto_key", "this");
    expect(key).toMatchObject({ purpose: "ENCRYPT_DECRYPT", rotation_period: "${var.rotation_period_days * 86400}s", lifecycle: [{ prevent_destroy: true }] });
    expect(one(mod("gcp"), "variable", "rotation_period_days").default).toBe(90);
    expect(90 * 86400).toBe(7_776_000);
  });
});

describe("azure: the custom role definitions hold exactly what validatePermissions checks", () => {
  it("the runtime role: AZURE_RUNTIME_DATA_ACTIONS, assigned on the key to each service identity", () => {
    expect(azureRole(mod("azure"), "runtime")).toEqual(set(AZURE_RUNTIME_DATA_ACTIONS));
    expect(one(mod("azure"), "resource", "azurerm_role_assignment", "runtime")).toMatchObject({
      scope: "${azurerm_key_vault_key.this.resource_versionless_id}",
      role_definition_id: "${azurerm_role_definition.runtime.role_definition_resource_id}",
    });
  });

  it("the rotation role: AZURE_ROTATION_DATA_ACTIONS; the shredding role: AZURE_SHREDDING_DATA_ACTIONS", () => {
    expect(azureRole(mod("azure"), "rotation")).toEqual(set(AZURE_ROTATION_DATA_ACTIONS));
    expect(azureRole(mod("azure"), "key_admin")).toEqual(set(AZURE_SHREDDING_DATA_ACTIONS));
  });

  it("every assignment but the deployer's is of its own custom role, on the key", () => {
    const assignments = all(mod("azure"), "resource", "azurerm_role_assignment");
    expect(set(assignments.keys())).toEqual(set(["deployer", ...all(mod("azure"), "resource", "azurerm_role_definition").keys()]));
    for (const [name, assignment] of assignments) {
      if (name === "deployer") {
        // Terraform's own identity, on the vault, to create the key: never the service's.
        expect(assignment).toMatchObject({ role_definition_name: "Key Vault Crypto Officer", principal_id: "${data.azurerm_client_config.current.object_id}" });
        continue;
      }
      expect(assignment.scope).toBe("${azurerm_key_vault_key.this.resource_versionless_id}");
      expect(String(assignment.role_definition_id)).toMatch(new RegExp(`^\\$\\{azurerm_role_definition\\.${name}(\\[0\\])?\\.role_definition_resource_id\\}$`));
    }
  });

  it("an RBAC vault with purge protection, and an RSA wrap/unwrap key with a rotation policy (90 days by default)", () => {
    expect(one(mod("azure"), "resource", "azurerm_key_vault", "this")).toMatchObject({ enable_rbac_authorization: true, purge_protection_enabled: true });
    const key = one(mod("azure"), "resource", "azurerm_key_vault_key", "this");
    expect(key).toMatchObject({ key_type: "${var.key_type}", key_opts: ["wrapKey", "unwrapKey"] });
    const rotation = bodies(key.rotation_policy);
    expect(rotation).toHaveLength(1);
    expect(bodies(rotation[0]!.automatic)).toEqual([{ time_after_creation: "P${var.rotation_period_days}D" }]);
    expect(one(mod("azure"), "variable", "rotation_period_days").default).toBe(90);
    expect(one(mod("azure"), "variable", "key_size").default).toBe(3072);
  });
});

describe("vault: the policies grant exactly what validatePermissions checks", () => {
  it("kms-runtime.hcl: VAULT_RUNTIME_GRANTS", () => {
    expect(vaultGrants(policy("kms-runtime.hcl"))).toEqual(expectedVault(VAULT_RUNTIME_GRANTS));
  });

  it("kms-rotation.hcl: VAULT_ROTATION_GRANTS; kms-shred.hcl: VAULT_SHREDDING_GRANTS", () => {
    expect(vaultGrants(policy("kms-rotation.hcl"))).toEqual(expectedVault(VAULT_ROTATION_GRANTS));
    expect(vaultGrants(policy("kms-shred.hcl"))).toEqual(expectedVault(VAULT_SHREDDING_GRANTS));
  });

  it("the runtime policy has no create, no delete and nothing on the rotate or config paths", () => {
    const grants = vaultGrants(policy("kms-runtime.hcl"));
    expect(grants.filter((g) => /^(create|delete|sudo|list) /.test(g) || /\/(rotate|config)$/.test(g))).toEqual([]);
  });
});

describe("the comparison catches a module that drifts", () => {
  it("permissionDiff names what is extra and what is missing", () => {
    expect(permissionDiff(["a", "b", "c"], ["b", "c", "d"])).toEqual({ extra: ["a"], missing: ["d"] });
    expect(permissionDiff(["b", "a"], ["a", "b"])).toEqual({ extra: [], missing: [] });
  });

  it("aws: an extra action for the service, or one taken away, fails the comparison", async () => {
    const extra = await parseModule("aws", { file: "main.tf", from: 'actions   = ["kms:DescribeKey", "kms:ListKeyRotations"]', to: 'actions   = ["kms:DescribeKey", "kms:ListKeyRotations", "kms:ReEncryptFrom"]' });
    expect(permissionDiff(awsGranted(extra, AWS_PRINCIPALS.service), AWS_RUNTIME_PERMISSIONS)).toEqual({ extra: ["kms:ReEncryptFrom"], missing: [] });
    const fewer = await parseModule("aws", { file: "main.tf", from: '"kms:GenerateDataKey", "kms:Encrypt", "kms:Decrypt"]', to: '"kms:GenerateDataKey", "kms:Decrypt"]' });
    expect(permissionDiff(awsGranted(fewer, AWS_PRINCIPALS.service), AWS_RUNTIME_PERMISSIONS)).toEqual({ extra: [], missing: ["kms:Encrypt"] });
  });

  it("aws: a statement granting the service through another principal expression is refused, not missed", async () => {
    const sneaky = await parseModule("aws", {
      file: "main.tf",
      from: "      identifiers = var.rotation_principal_arns",
      to: "      identifiers = concat(var.rotation_principal_arns, var.service_principal_arns)",
    });
    const statement = awsStatements(sneaky).find((s) => s.sid === "KeyRotation")!;
    expect(statement.principals.every((p) => (Object.values(AWS_PRINCIPALS) as string[]).includes(p))).toBe(false);
  });

  it("aws: actions computed instead of written out cannot be compared, and say so", async () => {
    const computed = await parseModule("aws", { file: "main.tf", from: 'actions   = ["kms:DescribeKey", "kms:ListKeyRotations"]', to: "actions   = local.describe" });
    expect(() => awsStatements(computed)).toThrow(/ServiceDescribeKey actions: expected a literal list/);
  });

  it("gcp: a predefined-role-sized grant fails the comparison", async () => {
    const extra = await parseModule("gcp", { file: "main.tf", from: '"cloudkms.cryptoKeys.get"]', to: '"cloudkms.cryptoKeys.get", "cloudkms.cryptoKeys.list"]' });
    expect(permissionDiff(gcpRole(extra, "runtime"), GCP_RUNTIME_PERMISSIONS)).toEqual({ extra: ["cloudkms.cryptoKeys.list"], missing: [] });
  });

  it("azure: an extra data action (Crypto User's keys/update/action) fails the comparison", async () => {
    const extra = await parseModule("azure", {
      file: "main.tf",
      from: '"Microsoft.KeyVault/vaults/keys/unwrap/action"]',
      to: '"Microsoft.KeyVault/vaults/keys/unwrap/action", "Microsoft.KeyVault/vaults/keys/update/action"]',
    });
    expect(permissionDiff(azureRole(extra, "runtime"), AZURE_RUNTIME_DATA_ACTIONS)).toEqual({ extra: ["Microsoft.KeyVault/vaults/keys/update/action"], missing: [] });
  });

  it("vault: a runtime policy with create on encrypt fails the comparison", async () => {
    const file = join(DEPLOY, "vault/kms-runtime.hcl");
    const text = readFileSync(file, "utf8").replace('path "transit/encrypt/+" {\n  capabilities = ["update"]', 'path "transit/encrypt/+" {\n  capabilities = ["create", "update"]');
    expect(permissionDiff(vaultGrants(await parseFile(file, text)), expectedVault(VAULT_RUNTIME_GRANTS))).toEqual({ extra: ["create transit/encrypt/+"], missing: [] });
  });
});

describe("the READMEs", () => {
  const readme = (path: string) => readFileSync(join(DEPLOY, path), "utf8");

  it.each([
    ["terraform/aws/README.md", [...AWS_RUNTIME_PERMISSIONS, ...AWS_ROTATION_PERMISSIONS, ...AWS_SHREDDING_PERMISSIONS]],
    ["terraform/gcp/README.md", [...GCP_RUNTIME_PERMISSIONS, ...GCP_ROTATION_PERMISSIONS, ...GCP_SHREDDING_PERMISSIONS]],
    ["terraform/azure/README.md", [...AZURE_RUNTIME_DATA_ACTIONS, ...AZURE_ROTATION_DATA_ACTIONS, ...AZURE_SHREDDING_DATA_ACTIONS]],
  ] as const)("%s says what each permission it grants is for, and documents every input and output", (path, permissions) => {
    const text = readme(path);
    for (const permission of permissions) expect([permission, text.includes(`\`${permission}\``)]).toEqual([permission, true]);
    const name = path.split("/")[1] as ModuleName;
    for (const variable of all(mod(name), "variable").keys()) expect([variable, text.includes(`\`${variable}\``)]).toEqual([variable, true]);
    for (const output of all(mod(name), "output").keys()) expect([output, text.includes(`\`${output}\``)]).toEqual([output, true]);
    expect(text).toContain("kms validate");
  });

  it("deploy/README.md points at every module and Vault policy", () => {
    const text = readme("README.md");
    for (const path of ["terraform/aws", "terraform/gcp", "terraform/azure", "vault/kms-runtime.hcl", "vault/kms-rotation.hcl", "vault/kms-shred.hcl"]) {
      expect([path, text.includes(path)]).toEqual([path, true]);
    }
  });
});
