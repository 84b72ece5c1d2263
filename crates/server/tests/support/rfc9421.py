"""Agent request signatures made and checked by an independent RFC 9421 implementation (the
PyPI package http-message-signatures, with cryptography for Ed25519), so that the tests do not
check Mandate's signatures against Mandate's own reading of the RFC.

    python3 rfc9421.py sign|verify  < request.json  > answer.json

sign reads
    {"method": "POST", "url": "https://host/v1/claims?x=1", "headers": {"X-Client-Id": "cli_…"},
     "body": <base64>, "seed": <base64 of the 32-byte Ed25519 private key>, "created": <Unix s>,
     "nonce": "…", "covered": ["@method", "@target-uri", "content-digest", "x-client-id"],
     "label": <optional; the library's default otherwise>}
and answers {"key_id": "ed25519:<base64>", "headers": {…}}: the given headers plus
Content-Digest (SHA-256 computed here, only when the body is not empty), Signature-Input and
Signature. The key id is the public key in Mandate's written form.

verify reads the same request fields plus "public_key" ("ed25519:<base64>", also the expected
keyid) and "required" (components the signature must cover), and answers
{"verified": true, "label": …, "covered": [names…], "parameters": {…}} or
{"verified": false, "error": "…"}. A body, or a Content-Digest sent without one, must match
its SHA-256 digest, computed here.

Exit status: 0 with an answer; 3 when the packages are not installed; anything else is a
failure of this driver.
"""

import base64
import datetime
import hashlib
import hmac
import json
import sys

try:
    import http_sf
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    from http_message_signatures import (
        HTTPMessageSigner,
        HTTPMessageSignaturesException,
        HTTPMessageVerifier,
        MappingKeyResolver,
        algorithms,
    )
    from http_sf.compat import Dictionary
except ImportError as error:
    print(f"{error} (from the PyPI package http-message-signatures)", file=sys.stderr)
    sys.exit(3)

KEY_PREFIX = "ed25519:"


class Request:
    """The message interface the library reads: method, absolute URL, headers."""

    def __init__(self, given):
        self.method = given["method"]
        self.url = given["url"]
        self.headers = dict(given.get("headers", {}))
        self.body = base64.b64decode(given.get("body", ""), validate=True)


def header(headers, name):
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def sha256_digest_field(body):
    return str(Dictionary({"sha-256": hashlib.sha256(body).digest()}))


def sign(given):
    request = Request(given)
    private_key = Ed25519PrivateKey.from_private_bytes(base64.b64decode(given["seed"], validate=True))
    public_bytes = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    key_id = KEY_PREFIX + base64.b64encode(public_bytes).decode()
    if request.body:
        request.headers["Content-Digest"] = sha256_digest_field(request.body)
    signer = HTTPMessageSigner(
        signature_algorithm=algorithms.ED25519,
        key_resolver=MappingKeyResolver(public_keys={}, private_keys={key_id: private_key}),
    )
    signer.sign(
        request,
        key_id=key_id,
        created=datetime.datetime.fromtimestamp(given["created"], tz=datetime.timezone.utc),
        nonce=given["nonce"],
        label=given.get("label"),
        covered_component_ids=tuple(given["covered"]),
        # Sign the digest computed above as it is, instead of having the library make its own.
        use_existing_digest="Content-Digest" in request.headers,
    )
    return {"key_id": key_id, "headers": request.headers}


def check_digest(request):
    """RFC 9530, checked here with hashlib rather than by either implementation under test."""
    field = header(request.headers, "content-digest")
    if field is None:
        return None if not request.body else "the body has no Content-Digest"
    members = http_sf.parse(field.encode(), tltype="dictionary")
    member = members.get("sha-256")
    if member is None:
        return "Content-Digest has no sha-256"
    if not hmac.compare_digest(member[0], hashlib.sha256(request.body).digest()):
        return "Content-Digest does not match the body"
    return None


def verify(given):
    request = Request(given)
    key_id = given["public_key"]
    if not key_id.startswith(KEY_PREFIX):
        raise ValueError("public_key must be ed25519:<base64>")
    public_key = Ed25519PublicKey.from_public_bytes(
        base64.b64decode(key_id[len(KEY_PREFIX):], validate=True)
    )
    verifier = HTTPMessageVerifier(
        signature_algorithm=algorithms.ED25519,
        key_resolver=MappingKeyResolver(public_keys={key_id: public_key}, private_keys={}),
    )
    try:
        (result,) = verifier.verify(
            request,
            require_components=tuple(given.get("required", ())),
            body=request.body,
        )
    except HTTPMessageSignaturesException as error:
        # A failed Ed25519 check surfaces as an exception without a message.
        return {"verified": False, "error": str(error) or "the signature does not verify"}
    digest_error = check_digest(request)
    if digest_error is not None:
        return {"verified": False, "error": digest_error}
    covered = [
        name[1:-1] if name.startswith('"') and name.endswith('"') else name
        for name in result.covered_components
        if name != '"@signature-params"'
    ]
    return {
        "verified": True,
        "label": result.label,
        "covered": covered,
        "parameters": result.parameters,
    }


def main():
    commands = {"sign": sign, "verify": verify}
    if len(sys.argv) != 2 or sys.argv[1] not in commands:
        print("usage: rfc9421.py sign|verify < request.json", file=sys.stderr)
        sys.exit(2)
    answer = commands[sys.argv[1]](json.load(sys.stdin))
    json.dump(answer, sys.stdout)
    print()


if __name__ == "__main__":
    main()
