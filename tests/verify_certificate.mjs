// An independent check of a deletion certificate, written from RFC 8785 and the certificate's
// documented layout alone, with nothing but Node's standard library: if the service's canonical
// form drifted from JCS, this verifier and the service would disagree.
//
//   node tests/verify_certificate.mjs CERTIFICATE.json PUBLIC_KEY.pem
//
// Prints "valid" and exits 0, or prints "invalid: why" and exits 1.
import { createHash, createPublicKey, verify } from "node:crypto";
import { readFileSync } from "node:fs";

// RFC 8785: keys sorted by UTF-16 code units (what Array.prototype.sort compares), no whitespace,
// primitives exactly as JSON.stringify writes them (ECMAScript's number serialisation).
function canonical(value) {
  if (value === null || typeof value !== "object") {
    if (typeof value === "number" && !Number.isFinite(value)) throw new Error("non-finite number");
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  const keys = Object.keys(value).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`).join(",")}}`;
}

function check(doc, pem) {
  const body = doc?.certificate;
  if (body === null || typeof body !== "object") return "no certificate object";
  if (doc.algorithm !== "Ed25519") return "algorithm is not Ed25519";
  if (body.type !== "unlearn/deletion-certificate") return "not a deletion certificate";
  if (body.format !== 2) return `format ${body.format} is not RFC 8785 (format 2)`;
  const key = createPublicKey(pem);
  const kid = createHash("sha256").update(key.export({ type: "spki", format: "der" })).digest("hex");
  if (doc.key_id !== kid || body.issuer?.key_id !== kid) return "signed with another key";
  const signature = Buffer.from(String(doc.signature), "base64");
  const data = Buffer.from(canonical(body), "utf8");
  return verify(null, data, key, signature) ? null : "the signature does not match the content";
}

const [docPath, keyPath] = process.argv.slice(2);
let why;
try {
  why = check(JSON.parse(readFileSync(docPath, "utf8")), readFileSync(keyPath, "utf8"));
} catch (err) {
  why = String(err.message ?? err);
}
console.log(why === null ? "valid" : `invalid: ${why}`);
process.exit(why === null ? 0 : 1);
