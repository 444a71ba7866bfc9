/**
 * The certificate an emulator serves TLS with (the Azure Key Vault emulator's HTTPS, the Cloud KMS
 * emulator's gRPC): the one given, or one self-signed certificate for 127.0.0.1 and localhost,
 * generated with `selfsigned` when the emulator first listens and kept across restarts. Clients
 * trust its PEM per client; nothing turns certificate verification off.
 */
import { generate as generateCertificate } from "selfsigned";
import type { TlsMaterial } from "./framework";

export class EmulatorCertificate {
  readonly #given: TlsMaterial | (() => Promise<TlsMaterial>) | undefined;
  #current: { cert: string; key: string } | undefined;

  constructor(given: TlsMaterial | (() => Promise<TlsMaterial>) | undefined) {
    this.#given = given;
  }

  /** The certificate and its key (PEM), generated or read on the first call: an `EmulatorOptions.tls` function. */
  readonly material = async (): Promise<{ cert: string; key: string }> => {
    const given = this.#given;
    return (this.#current ??= given === undefined ? await selfSignedCertificate() : pem(typeof given === "function" ? await given() : given));
  };

  /** The PEM certificate clients must trust; throws (naming `protocol`) before the emulator first listened. */
  pem(protocol: string): string {
    if (this.#current === undefined) throw new Error(`${protocol} emulator: not started`);
    return this.#current.cert;
  }
}

function pem(tls: TlsMaterial): { cert: string; key: string } {
  return { cert: tls.cert.toString(), key: tls.key.toString() };
}

/** One self-signed certificate for 127.0.0.1 and localhost (EC P-256: quick to make), valid for a day. */
async function selfSignedCertificate(): Promise<{ cert: string; key: string }> {
  const notBeforeDate = new Date(Date.now() - 60_000);
  const notAfterDate = new Date(Date.now() + 86_400_000);
  const result = await generateCertificate([{ name: "commonName", value: "127.0.0.1" }], {
    keyType: "ec",
    curve: "P-256",
    algorithm: "sha256",
    notBeforeDate,
    notAfterDate,
    extensions: [
      { name: "basicConstraints", cA: true, critical: true },
      { name: "keyUsage", digitalSignature: true, keyCertSign: true, critical: true },
      { name: "extKeyUsage", serverAuth: true },
      { name: "subjectAltName", altNames: [{ type: 7, ip: "127.0.0.1" }, { type: 2, value: "localhost" }] },
    ],
  });
  return { cert: result.cert, key: result.private };
}
