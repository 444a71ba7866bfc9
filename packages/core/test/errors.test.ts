import { describe, expect, it } from "@jest/globals";
import { docsUrlFor, KmsError, networkFailureOf, publicPermissionReport } from "../src/errors";

describe("networkFailureOf", () => {
  it("classifies socket failures by their code: timeouts apart from unreachable", () => {
    const of = (code: string) => networkFailureOf(Object.assign(new Error(`x ${code}`), { code }));
    expect(of("ETIMEDOUT")).toEqual({ name: "ETIMEDOUT", code: "KMS_TIMEOUT" });
    expect(of("ECONNABORTED")).toEqual({ name: "ECONNABORTED", code: "KMS_TIMEOUT" });
    for (const code of ["ECONNREFUSED", "ECONNRESET", "EPIPE", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "ENETUNREACH", "ENETDOWN", "ERR_NETWORK"]) {
      expect(of(code)).toEqual({ name: code, code: "KMS_UNAVAILABLE" });
    }
  });

  it("falls back to a code named in the message (errors wrapped as text), never copying the rest", () => {
    expect(networkFailureOf(new Error("AWS SDK error wrapper for Error: connect ECONNREFUSED 127.0.0.1:1"))).toEqual({ name: "ECONNREFUSED", code: "KMS_UNAVAILABLE" });
    expect(networkFailureOf(new Error("socket hang up"))).toEqual({ name: "socket hang up", code: "KMS_UNAVAILABLE" });
    expect(networkFailureOf({ message: "read ETIMEDOUT" })).toEqual({ name: "ETIMEDOUT", code: "KMS_TIMEOUT" });
  });

  it("is undefined for anything else", () => {
    for (const error of [undefined, null, "ECONNREFUSED", 42, new Error("ThrottlingException"), { code: "ENOENT", message: "no such file" }, { code: "XECONNREFUSEDX" }]) {
      expect(networkFailureOf(error)).toBeUndefined();
    }
  });
});

describe("publicPermissionReport", () => {
  it("keeps codes, remediation and docs links; replaces the provider's message by the code's public text", () => {
    const denied = new KmsError("KMS_ACCESS_DENIED", "User arn:aws:iam::111122223333:role/app is not authorized to perform kms:Encrypt", { provider: "aws-kms" });
    const report = publicPermissionReport({
      ok: false,
      keys: [
        {
          provider: "aws-kms",
          keyId: "alias/app",
          checks: [
            { permission: "kms:DescribeKey", ok: true, docsUrl: "https://example.test/perms" },
            { permission: "kms:Encrypt", ok: false, remediation: "allow kms:Encrypt", error: denied },
          ],
        },
      ],
    });
    expect(report).toEqual({
      ok: false,
      keys: [
        {
          provider: "aws-kms",
          keyId: "alias/app",
          checks: [
            { permission: "kms:DescribeKey", ok: true, docsUrl: "https://example.test/perms" },
            {
              permission: "kms:Encrypt",
              ok: false,
              remediation: "allow kms:Encrypt",
              docsUrl: docsUrlFor("KMS_ACCESS_DENIED"),
              error: { code: "KMS_ACCESS_DENIED", message: "The key service refused access to the tenant's key" },
            },
          ],
        },
      ],
    });
    expect(JSON.stringify(report)).not.toContain("111122223333");
  });
});
