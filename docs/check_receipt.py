"""Checks an ivan receipt offline (docs/LOG.md): its signature, its entry's inclusion
under a signed checkpoint and, optionally, that checkpoint's consistency with an older
one. From RFC 9162 and the C2SP formats alone. Arguments: RECEIPT.jws RECEIPT_JWKS.json
LOG_VKEY PROOF.json [OLD_CHECKPOINT.txt CONSISTENCY.json] (files)."""
import base64, hashlib, json, sys
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

fail = lambda why: sys.exit(f"FAILED: {why}")
b64url = lambda s: base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
node = lambda left, right: hashlib.sha256(b"\x01" + left + right).digest()

def receipt_claims(jws, jwks):  # ES256 compact JWS (RFC 7515), key by kid
    head, body, sig = jws.strip().split(".")
    kid = json.loads(b64url(head))["kid"]
    jwk = next((k for k in jwks["keys"] if k["kid"] == kid), None) or fail(f"no key {kid}")
    x, y = (int.from_bytes(b64url(jwk[c]), "big") for c in ("x", "y"))
    key = ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
    raw = b64url(sig)
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    key.verify(der, f"{head}.{body}".encode(), ec.ECDSA(hashes.SHA256()))  # raises if forged
    return json.loads(b64url(body))

def open_checkpoint(note, vkey):  # C2SP signed note by the log's Ed25519 key
    name, key_id, key = vkey.split("+", 2)
    key = base64.b64decode(key)
    if key[0] != 1:
        fail("the log key is not an Ed25519 note key")
    text, sigs = note.split("\n\n", 1)
    text += "\n"
    for line in sigs.splitlines():
        if line.startswith(f"\u2014 {name} "):
            blob = base64.b64decode(line.rsplit(" ", 1)[1])
            if blob[:4].hex() == key_id:
                ed25519.Ed25519PublicKey.from_public_bytes(key[1:]).verify(blob[4:], text.encode())
                origin, size, root = text.splitlines()[:3]
                if origin != name:
                    fail(f"the checkpoint names the log {origin}, not {name}")
                return int(size), base64.b64decode(root)
    fail("the checkpoint carries no signature by the log's key")

def included(index, size, leaf, proof, root):  # RFC 9162 2.1.3.2
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root

def consistent(first, second, first_root, second_root, proof):  # RFC 9162 2.1.4.2
    if first == second:
        return not proof and first_root == second_root
    if first == 0 or first > second or not proof:
        return False
    if first & (first - 1) == 0:
        proof = [first_root] + proof
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node(c, fr), node(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == first_root and sr == second_root

args = sys.argv[1:]
load = lambda path: json.load(open(path))
claims = receipt_claims(open(args[0]).read(), load(args[1]))
vkey, proof = open(args[2]).read().strip(), load(args[3])
size, root = open_checkpoint(proof["checkpoint"], vkey)
leaf = hashlib.sha256(b"\x00" + bytes.fromhex(claims["entry_hash"])).digest()
path = [base64.b64decode(h) for h in proof["proof"]]
if size != proof["tree_size"] or not included(claims["log_seq"] - 1, size, leaf, path, root):
    fail(f"entry {claims['log_seq']} is not proven in the checkpoint of {size} entries")
print(f"receipt {claims['sub']}: entry {claims['log_seq']} is in the log of {size} entries")
if len(args) == 6:
    old_size, old_root = open_checkpoint(open(args[4]).read(), vkey)
    c = load(args[5])
    path = [base64.b64decode(h) for h in c["proof"]]
    if (c["first"], c["second"]) != (old_size, size) or not consistent(old_size, size, old_root, root, path):
        fail(f"the checkpoint of {size} entries does not extend the one of {old_size}")
    print(f"the checkpoint of {size} entries extends the one of {old_size}")
