import { generate } from "selfsigned";

/** A certificate for 127.0.0.1 made by the test (not by an emulator), for the emulators' `tls` option. */
export async function givenCertificate(): Promise<{ cert: string; key: string }> {
  const given = await generate([{ name: "commonName", value: "127.0.0.1" }], {
    keyType: "ec",
    curve: "P-256",
    algorithm: "sha256",
    extensions: [{ name: "subjectAltName", altNames: [{ type: 7, ip: "127.0.0.1" }] }],
  });
  return { cert: given.cert, key: given.private };
}
