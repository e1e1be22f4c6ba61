#!/usr/bin/env python3
"""Independent verifier of Keyfold audit exports, written from
docs/audit-log.md alone, with Python's standard library only (3.11+).

    KEYFOLD_AUDIT_DUMP=/tmp/x cargo test -p keyfold-audit --test vectors
    python3 crates/audit/tools/independent_verify.py /tmp/x
    python3 crates/audit/tools/independent_verify.py /tmp/x --kept /tmp/x/kept-checkpoint.jsonl

The argument is an export (the layout of `keyfold audit export`, docs
section 7): `keys.json` and one directory per log. For every log it checks
what docs section 8 lists: the strict JSON form, indices, size bounds, the
hash chain, Ed25519 (verify_strict) checkpoint signatures under the key of
`keys.json`, the Merkle root at every checkpoint, truncation, an inclusion
proof of every entry in the newest checkpoint and, with --kept, a
consistency proof from a kept checkpoint; then the semantic checks of
section 9 (document hashes, admin quorum of policy updates, request and
message hashes, approval signatures and nonces, the time rules (entry
times never go back; request times and evaluation times at most 300 s
before the entry that records them and not after it; decisions never go
back in time), the request state machine (a failed request's sessions are
aborted), signer sets, wallet signatures: ECDSA secp256k1 with SHA-256 or Keccak-256
prehash and BIP32 child keys, Ed25519), and the cross-check of the signer
logs' contributions against the coordinator's log.

The risk events too: risk trees (document hash, version, the admin quorum
of the policy in force on every later tree), risk decisions and risk
refusals (the engine's steps, one seq numbering for both kinds: taken in
seq order whatever their log order, no seq missing or repeated; a decision
under a tree recorded before it, its score and action those of its detail;
a refusal's input a refusal record whose code is the event's and a
device-signature refusal code), freezes (a lift names two distinct
officers and a freeze in force), reviews and customer-auth changes (a
known action; a device for the device actions).

Policy versions installed in shadow: an install verified as a policy
update would be (document hash, admin quorum of the policy in force, a
version above it); a removal or an end only of the shadow installed, an
end only once a version at least the shadow's is in force.

What it does NOT do: re-evaluate policy decisions (that needs the policy
engine of docs/policy.md; the recorded outcome is trusted and only its
policy version and its consistency with `detail` are checked), recompute
risk decisions (that needs the risk engine of docs/risk.md: the recorded
features and detail are trusted), and full validation of policy documents
and risk trees (only `version`, `[admins]` are read).
"""
import argparse
import hashlib
import hmac
import json
import os
import re
import sys
import tomllib


class Fail(Exception):
    pass


def sha256(b):
    return hashlib.sha256(b).digest()


# --------------------------------------------------------------------------
# Canonical encoding primitives (docs section 3.1)
# --------------------------------------------------------------------------

def u8(v): return v.to_bytes(1, 'big')
def u16(v): return v.to_bytes(2, 'big')
def u32(v): return v.to_bytes(4, 'big')
def u64(v): return v.to_bytes(8, 'big')
def i64(v): return v.to_bytes(8, 'big', signed=True)
def byt(b): return u32(len(b)) + b
def st(s): return byt(s.encode('utf-8'))
def opt_st(s): return b'\x00' if s is None else b'\x01' + st(s)
def opt_byt(b): return b'\x00' if b is None else b'\x01' + byt(b)
def lst(xs): return u32(len(xs)) + b''.join(st(x) for x in xs)


MAX_STRING, MAX_DOCUMENT, MAX_BYTES, MAX_LIST = 4096, 1 << 20, 1024, 1024
MAX_LINE, MAX_LOG_ID = 8 << 20, 256
OUTCOMES = {'allow': 1, 'need_approvals': 2, 'time_lock': 3, 'deny': 4}
MODES = {'full': 1, 'presignature': 2, 'hsm': 3}

# Event types: code and members in declared order (docs section 3.3).
# str/doc = string (4096 / 1 MiB bound), opt_* = null or value, hash = 32
# bytes as 64 hex, bytes = hex (<= 1024 bytes), list = array of str.
EVENTS = {
    'key_created': (1, [('key_id', 'str'), ('curve', 'str'), ('tier', 'str'), ('t', 'u16'),
                        ('n', 'u16'), ('participants', 'list'), ('public_key', 'bytes'),
                        ('chain_code', 'opt_bytes')]),
    'policy_version': (2, [('version', 'u64'), ('document_hash', 'hash'), ('document', 'doc'),
                           ('update', 'opt_doc')]),
    'sign_request': (3, [('request_id', 'str'), ('key_id', 'str'), ('request', 'doc'),
                         ('request_hash', 'hash'), ('message_hash', 'hash'),
                         ('hash_alg', 'opt_str'), ('derivation_path', 'opt_str')]),
    'approval': (4, [('request_id', 'str'), ('approval', 'str')]),
    'decision': (5, [('request_id', 'str'), ('policy_version', 'u64'), ('evaluated_at', 'u64'),
                     ('outcome', 'outcome'), ('rule', 'opt_str'), ('detail', 'doc')]),
    'signing_session': (6, [('request_id', 'str'), ('session_id', 'str'), ('signers', 'list'),
                            ('mode', 'mode')]),
    'signature': (7, [('request_id', 'str'), ('key_id', 'str'), ('public_key', 'bytes'),
                      ('signature', 'bytes')]),
    'aborted': (8, [('request_id', 'str'), ('session_id', 'str'), ('blamed', 'opt_str'),
                    ('reason', 'str')]),
    'request_failed': (9, [('request_id', 'str'), ('reason', 'str')]),
    'request_closed': (11, [('request_id', 'str'), ('state', 'str'), ('by', 'opt_str'),
                            ('reason', 'str')]),
    'client_token': (12, [('token_id', 'u64'), ('name', 'str'), ('action', 'str')]),
    'chain_transaction': (13, [('request_id', 'str'), ('chain', 'str'), ('action', 'str'),
                               ('tx_hash', 'str'), ('raw_tx', 'opt_bytes'),
                               ('block_number', 'opt_u64'), ('confirmations', 'u64')]),
    'contribution': (10, [('request_id', 'str'), ('key_id', 'str'), ('request_hash', 'hash'),
                          ('message_hash', 'hash'), ('policy_version', 'u64'),
                          ('signers', 'list'), ('mode', 'mode')]),
    'risk_tree': (14, [('version', 'u64'), ('document_hash', 'hash'), ('document', 'doc'),
                       ('update', 'opt_doc')]),
    'risk_decision': (15, [('request_id', 'str'), ('seq', 'u64'), ('tree_version', 'u64'),
                           ('input', 'doc'), ('features', 'doc'), ('score', 'u64'),
                           ('action', 'str'), ('detail', 'doc')]),
    'freeze': (16, [('freeze_id', 'str'), ('action', 'str'), ('scope', 'str'), ('subject', 'str'),
                    ('reason', 'str'), ('request_id', 'opt_str'), ('by', 'list'),
                    ('lift', 'opt_doc')]),
    'review': (17, [('request_id', 'str'), ('officer', 'str'), ('verdict', 'str'),
                    ('signed', 'doc')]),
    'risk_refusal': (18, [('request_id', 'str'), ('seq', 'u64'), ('input', 'doc'),
                          ('code', 'str')]),
    'customer_auth': (19, [('customer', 'str'), ('action', 'str'), ('device', 'opt_str'),
                           ('detail', 'str')]),
    'schedule': (20, [('schedule_id', 'str'), ('action', 'str'), ('occurrence', 'opt_u64'),
                      ('detail', 'doc')]),
    'escrow': (22, [('escrow_id', 'str'), ('action', 'str'), ('detail', 'doc')]),
    'policy_shadow': (21, [('version', 'u64'), ('document_hash', 'hash'), ('document', 'doc'),
                           ('update', 'opt_doc'), ('action', 'str')]),
}
HEX = re.compile(r'(?:[0-9a-f]{2})*')


def is_int(v, lo, hi):
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def check_value(name, kind, v):
    """Type and bounds of one member; returns its canonical encoding."""
    def bad(why):
        raise Fail(f'member {name}: {why}')
    if kind.startswith('opt_'):
        if v is None:
            return b'\x00'
        return b'\x01' + check_value(name, kind[4:], v)
    if kind in ('str', 'doc'):
        if not isinstance(v, str):
            bad('not a string')
        b = v.encode('utf-8')  # a lone surrogate escape fails here, as in serde_json
        if len(b) > (MAX_STRING if kind == 'str' else MAX_DOCUMENT):
            bad('too long')
        return byt(b)
    if kind == 'u16':
        if not is_int(v, 0, 0xffff):
            bad('not a u16')
        return u16(v)
    if kind == 'u64':
        if not is_int(v, 0, 2**64 - 1):
            bad('not a u64')
        return u64(v)
    if kind in ('hash', 'bytes'):
        if not isinstance(v, str) or not HEX.fullmatch(v):
            bad('not lowercase hex')
        b = bytes.fromhex(v)
        if kind == 'hash':
            if len(b) != 32:
                bad('not 32 bytes')
            return b
        if len(b) > MAX_BYTES:
            bad('too long')
        return byt(b)
    if kind == 'list':
        if not isinstance(v, list) or len(v) > MAX_LIST:
            bad('not a list of at most 1024 strings')
        return u32(len(v)) + b''.join(check_value(name, 'str', x) for x in v)
    if kind == 'outcome':
        if v not in OUTCOMES:
            bad('unknown outcome')
        return u8(OUTCOMES[v])
    if kind == 'mode':
        if v not in MODES:
            bad('unknown mode')
        return u8(MODES[v])
    raise AssertionError(kind)


def no_duplicates(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            raise Fail(f'duplicate member {k}')
        d[k] = v
    return d


def strict_json(line):
    """Parses a line and requires it to be the exact compact serde_json form."""
    try:
        v = json.loads(line, object_pairs_hook=no_duplicates,
                       parse_float=lambda s: (_ for _ in ()).throw(Fail('float')),
                       parse_constant=lambda s: (_ for _ in ()).throw(Fail(s)))
    except (ValueError, UnicodeDecodeError) as e:
        raise Fail(f'not JSON: {e}')
    again = json.dumps(v, separators=(',', ':'), ensure_ascii=False).encode('utf-8')
    if again != line:
        raise Fail('line is not in canonical form')
    return v


def keys_are(obj, names, what):
    if not isinstance(obj, dict) or list(obj) != names:
        raise Fail(f'{what}: members must be exactly {names} in this order')


def entry_bytes(e):
    """Canonical bytes of a parsed entry (docs section 3.2)."""
    keys_are(e, ['index', 'time', 'prev_hash', 'event'], 'entry')
    if not is_int(e['index'], 0, 2**64 - 1) or not is_int(e['time'], -2**63, 2**63 - 1):
        raise Fail('bad index or time')
    prev = check_value('prev_hash', 'hash', e['prev_hash'])
    ev = e['event']
    if not isinstance(ev, dict) or ev.get('type') not in EVENTS:
        raise Fail('unknown event type')
    code, members = EVENTS[ev['type']]
    keys_are(ev, ['type'] + [m for m, _ in members], ev['type'])
    body = b''.join(check_value(m, k, ev[m]) for m, k in members)
    return (byt(b'keyfold/audit/entry') + u16(2) + u64(e['index']) + i64(e['time'])
            + prev + u16(code) + body)


def checkpoint_bytes(c):
    return (byt(b'keyfold/audit/checkpoint') + u16(1) + st(c['log_id']) + u64(c['tree_size'])
            + bytes.fromhex(c['root_hash']) + i64(c['time']))


# --------------------------------------------------------------------------
# Merkle tree, RFC 6962 / RFC 9162 (docs section 4)
# --------------------------------------------------------------------------

def leaf_hash(d): return sha256(b'\x00' + d)
def node_hash(l, r): return sha256(b'\x01' + l + r)


def split(n):
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(leaves):
    if not leaves:
        return sha256(b'')
    if len(leaves) == 1:
        return leaves[0]
    k = split(len(leaves))
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def path(m, d):
    """RFC 6962 2.1.1 PATH(m, D[n])."""
    if len(d) <= 1:
        return []
    k = split(len(d))
    if m < k:
        return path(m, d[:k]) + [mth(d[k:])]
    return path(m - k, d[k:]) + [mth(d[:k])]


def proof(m, d):
    """RFC 6962 2.1.2 PROOF(m, D[n]); empty for m == 0 or m == n."""
    def sub(m, d, b):
        n = len(d)
        if m == n:
            return [] if b else [mth(d)]
        k = split(n)
        if m <= k:
            return sub(m, d[:k], b) + [mth(d[k:])]
        return sub(m - k, d[k:], False) + [mth(d[:k])]
    return sub(m, d, True) if 0 < m < len(d) else []


def verify_inclusion(leaf, index, size, p, root):
    """RFC 9162 2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for h in p:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(h, r)
            while fn & 1 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, h)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(m, n, r1, r2, p):
    """RFC 9162 2.1.4.2 (plus: m == n needs an empty proof and equal roots,
    m == 0 an empty proof)."""
    if m > n:
        return False
    if m == n:
        return not p and r1 == r2
    if m == 0:
        return not p
    if not p:
        return False
    if m & (m - 1) == 0:
        p = [r1] + p
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = p[0]
    for c in p[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while fn & 1 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == r1 and sr == r2


# --------------------------------------------------------------------------
# Ed25519 (RFC 8032), with ed25519-dalek's verify_strict rules
# --------------------------------------------------------------------------

EP = 2**255 - 19
EL = 2**252 + 27742317777372353535851937790883648493
ED = -121665 * pow(121666, EP - 2, EP) % EP
SQRT_M1 = pow(2, (EP - 1) // 4, EP)


def ed_add(P, Q):
    x1, y1, z1, t1 = P
    x2, y2, z2, t2 = Q
    a = (y1 - x1) * (y2 - x2) % EP
    b = (y1 + x1) * (y2 + x2) % EP
    c = 2 * t1 * t2 * ED % EP
    d = 2 * z1 * z2 % EP
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % EP, g * h % EP, f * g % EP, e * h % EP)


def ed_mul(s, P):
    Q = (0, 1, 1, 0)
    while s:
        if s & 1:
            Q = ed_add(Q, P)
        P = ed_add(P, P)
        s >>= 1
    return Q


def ed_eq(P, Q):
    return (P[0] * Q[2] - Q[0] * P[2]) % EP == 0 and (P[1] * Q[2] - Q[1] * P[2]) % EP == 0


def ed_decode(b):
    """Point decompression as curve25519-dalek does it: y is taken modulo p
    (a non-canonical y >= p is not refused), and x = 0 with the sign bit set
    is accepted."""
    if len(b) != 32:
        return None
    y = int.from_bytes(b, 'little') & ((1 << 255) - 1)
    sign = b[31] >> 7
    y %= EP
    x2 = (y * y - 1) * pow(ED * y * y + 1, EP - 2, EP) % EP
    x = pow(x2, (EP + 3) // 8, EP)
    if (x * x - x2) % EP:
        x = x * SQRT_M1 % EP
    if (x * x - x2) % EP:
        return None
    if (x & 1) != sign:
        x = EP - x if x else 0
    return (x, y, 1, x * y % EP)


def ed_encode(P):
    zi = pow(P[2], EP - 2, EP)
    x, y = P[0] * zi % EP, P[1] * zi % EP
    return (y | ((x & 1) << 255)).to_bytes(32, 'little')


EB = ed_decode(bytes.fromhex('5866666666666666666666666666666666666666666666666666666666666666'))
IDENTITY = (0, 1, 1, 0)


def small_order(P):
    return ed_eq(ed_mul(8, P), IDENTITY)


def ed25519_verify(pk, msg, sig, strict=True):
    """strict: ed25519-dalek verify_strict (canonical S, R and A not of small
    order, R compared byte for byte with the recomputed [S]B - [k]A).
    Not strict: dalek's `verify` (the policy crate's approval and admin checks)."""
    if len(pk) != 32 or len(sig) != 64:
        return False
    A = ed_decode(pk)
    R = ed_decode(sig[:32])
    s = int.from_bytes(sig[32:], 'little')
    if A is None or s >= EL:
        return False
    if strict and (R is None or small_order(R) or small_order(A)):
        return False
    k = int.from_bytes(hashlib.sha512(sig[:32] + pk + msg).digest(), 'little') % EL
    neg_a = ((-A[0]) % EP, A[1], A[2], (-A[3]) % EP)
    return ed_encode(ed_add(ed_mul(s, EB), ed_mul(k, neg_a))) == sig[:32]


# --------------------------------------------------------------------------
# secp256k1: SEC1 points, ECDSA prehash verification, BIP32 CKDpub; Keccak-256
# --------------------------------------------------------------------------

KP = 2**256 - 2**32 - 977
KN = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141
KG = (0x79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798,
      0x483ada7726a3c4655da4fbfc0e1108a8fd17b448a68554199c47d08ffb10d4b8)


def k_add(P, Q):
    if P is None:
        return Q
    if Q is None:
        return P
    if P[0] == Q[0] and (P[1] + Q[1]) % KP == 0:
        return None
    if P == Q:
        lam = 3 * P[0] * P[0] * pow(2 * P[1], KP - 2, KP) % KP
    else:
        lam = (Q[1] - P[1]) * pow(Q[0] - P[0], KP - 2, KP) % KP
    x = (lam * lam - P[0] - Q[0]) % KP
    return (x, (lam * (P[0] - x) - P[1]) % KP)


def k_mul(s, P):
    Q = None
    while s:
        if s & 1:
            Q = k_add(Q, P)
        P = k_add(P, P)
        s >>= 1
    return Q


def sec1_decode(b):
    """A SEC1 point (33 bytes compressed or 65 uncompressed), or None."""
    if len(b) == 33 and b[0] in (2, 3):
        x = int.from_bytes(b[1:], 'big')
        if x >= KP:
            return None
        y = pow((x**3 + 7) % KP, (KP + 1) // 4, KP)
        if (y * y - x**3 - 7) % KP:
            return None
        if (y & 1) != (b[0] & 1):
            y = KP - y
        return (x, y)
    if len(b) == 65 and b[0] == 4:
        x, y = int.from_bytes(b[1:33], 'big'), int.from_bytes(b[33:], 'big')
        if x >= KP or y >= KP or (y * y - x**3 - 7) % KP:
            return None
        return (x, y)
    return None


def sec1_compressed(P):
    return bytes([2 + (P[1] & 1)]) + P[0].to_bytes(32, 'big')


def ecdsa_verify(pk, digest, sig):
    """Returns None if valid, else why not. Low-S is required."""
    Q = sec1_decode(pk)
    if Q is None:
        return 'public key is not a secp256k1 point'
    if len(sig) != 64:
        return 'signature is not 64 bytes of r || s'
    r, s = int.from_bytes(sig[:32], 'big'), int.from_bytes(sig[32:], 'big')
    if not (0 < r < KN and 0 < s < KN):
        return 'signature is not 64 bytes of r || s'
    if s > KN // 2:
        return 'ECDSA signature is not low-S'
    e = int.from_bytes(digest, 'big') % KN
    w = pow(s, KN - 2, KN)
    X = k_add(k_mul(e * w % KN, KG), k_mul(r * w % KN, Q))
    if X is None or X[0] % KN != r:
        return 'ECDSA signature does not verify under the wallet key'
    return None


def bip32_child(pk, chain_code, path):
    """Non-hardened BIP32 CKDpub along `path` from (pk, chain_code)."""
    if len(path) > 255:
        raise Fail('derivation path deeper than 255')
    K = sec1_decode(pk)
    if K is None:
        raise Fail('wallet key is not a secp256k1 point')
    c = chain_code
    for i in path:
        I = hmac.new(c, sec1_compressed(K) + i.to_bytes(4, 'big'), hashlib.sha512).digest()
        il = int.from_bytes(I[:32], 'big')
        if il >= KN:
            raise Fail(f'deriving child {i}: invalid tweak')
        K = k_add(k_mul(il, KG), K)
        if K is None:
            raise Fail(f'deriving child {i}: point at infinity')
        c = I[32:]
    return sec1_compressed(K)


def keccak256(data):
    """Keccak-256 (the original Keccak padding 0x01, as Ethereum uses; not SHA3-256)."""
    RC = [0x0000000000000001, 0x0000000000008082, 0x800000000000808A, 0x8000000080008000,
          0x000000000000808B, 0x0000000080000001, 0x8000000080008081, 0x8000000000008009,
          0x000000000000008A, 0x0000000000000088, 0x0000000080008009, 0x000000008000000A,
          0x000000008000808B, 0x800000000000008B, 0x8000000000008089, 0x8000000000008003,
          0x8000000000008002, 0x8000000000000080, 0x000000000000800A, 0x800000008000000A,
          0x8000000080008081, 0x8000000000008080, 0x0000000080000001, 0x8000000080008008]
    ROT = [[0, 36, 3, 41, 18], [1, 44, 10, 45, 2], [62, 6, 43, 15, 61],
           [28, 55, 25, 21, 56], [27, 20, 39, 8, 14]]
    M = 2**64 - 1
    rotl = lambda v, n: ((v << n) | (v >> (64 - n))) & M if n else v
    rate = 136
    msg = bytearray(data) + b'\x01'
    while len(msg) % rate:
        msg.append(0)
    msg[-1] |= 0x80
    A = [[0] * 5 for _ in range(5)]
    for off in range(0, len(msg), rate):
        block = msg[off:off + rate]
        for i in range(rate // 8):
            A[i % 5][i // 5] ^= int.from_bytes(block[8 * i:8 * i + 8], 'little')
        for rnd in range(24):
            C = [A[x][0] ^ A[x][1] ^ A[x][2] ^ A[x][3] ^ A[x][4] for x in range(5)]
            D = [C[(x - 1) % 5] ^ rotl(C[(x + 1) % 5], 1) for x in range(5)]
            A = [[A[x][y] ^ D[x] for y in range(5)] for x in range(5)]
            B = [[0] * 5 for _ in range(5)]
            for x in range(5):
                for y in range(5):
                    B[y][(2 * x + 3 * y) % 5] = rotl(A[x][y], ROT[x][y])
            A = [[B[x][y] ^ (~B[(x + 1) % 5][y] & B[(x + 2) % 5][y]) for y in range(5)]
                 for x in range(5)]
            A[0][0] ^= RC[rnd]
    return b''.join(A[i % 5][i // 5].to_bytes(8, 'little') for i in range(4))


# --------------------------------------------------------------------------
# keyfold-policy layouts (docs section 9.1)
# --------------------------------------------------------------------------

def be8_str(s):
    b = s.encode('utf-8') if isinstance(s, str) else s
    return len(b).to_bytes(8, 'big') + b


def parse_amount(v):
    if is_int(v, 0, 2**63 - 1):
        return v
    if isinstance(v, str) and v.isdigit() and v.isascii() and int(v) < 2**128:
        return int(v)
    raise Fail(f'bad amount {v!r}')


def parse_request(text):
    try:
        r = json.loads(text)
    except ValueError as e:
        raise Fail(f'request does not parse: {e}')
    need = ['id', 'wallet', 'tier', 'asset', 'amount', 'destination', 'initiator', 'time',
            'payload']
    if not isinstance(r, dict) or any(k not in r for k in need):
        raise Fail('request does not parse: missing member')
    if r['tier'] not in ('hot', 'cold') or not is_int(r['time'], 0, 2**64 - 1):
        raise Fail('request does not parse: tier or time')
    r['amount'] = parse_amount(r['amount'])
    p = r['payload']
    if p == {'kind': 'typed_transfer'}:
        r['raw'] = None
    elif isinstance(p, dict) and p.get('kind') == 'raw_bytes' and isinstance(p.get('bytes'), list):
        r['raw'] = bytes(p['bytes'])
    elif isinstance(p, dict) and p.get('kind') == 'chain_transaction':
        # A payout: the unsigned chain transaction is what the key signs.
        allowed = {'kind', 'chain', 'chain_id', 'token_contract', 'source', 'fee_cap', 'tx'}
        if set(p) - allowed or not all(k in p for k in ('chain', 'source', 'fee_cap', 'tx')):
            raise Fail('request does not parse: chain_transaction members')
        if not isinstance(p['chain'], str) or not isinstance(p['source'], str):
            raise Fail('request does not parse: chain or source')
        if 'chain_id' in p and not is_int(p['chain_id'], 0, 2**64 - 1):
            raise Fail('request does not parse: chain_id')
        if 'token_contract' in p and not isinstance(p['token_contract'], str):
            raise Fail('request does not parse: token_contract')
        try:
            tx = bytes.fromhex(p['tx'])
        except (TypeError, ValueError):
            raise Fail('request does not parse: tx is not hex')
        r['raw'] = None
        r['chain_tx'] = {'chain': p['chain'], 'chain_id': p.get('chain_id'),
                         'token_contract': p.get('token_contract'), 'source': p['source'],
                         'fee_cap': parse_amount(p['fee_cap']), 'tx': tx}
    else:
        raise Fail('request does not parse: payload')
    risk = r.get('risk')
    if risk is not None:
        # The risk engine's facts on a customer payout: appended to the
        # canonical hash as b'R', score, action, KYC tier (one byte each).
        actions = ['allow', 'step_up', 'review', 'freeze', 'deny']
        tiers = ['none', 'basic', 'full']
        if (not isinstance(risk, dict) or set(risk) != {'score', 'action', 'kyc_tier'}
                or not is_int(risk['score'], 0, 255) or risk['action'] not in actions
                or risk['kyc_tier'] not in tiers):
            raise Fail('request does not parse: risk')
        r['risk_bytes'] = bytes([0x52, risk['score'], actions.index(risk['action']),
                                 tiers.index(risk['kyc_tier'])])
    origin = r.get('origin')
    if origin is not None:
        # Where the request comes from (a schedule's occurrence, a released
        # conditional payout): appended as b'O' and one byte.
        origins = ['direct', 'scheduled', 'conditional']
        if origin not in origins:
            raise Fail('request does not parse: origin')
        r['origin_bytes'] = bytes([0x4f, origins.index(origin)])
    return r


def request_hash(r):
    h = b'keyfold-policy/request/v1\x00' + be8_str(r['id']) + be8_str(r['wallet'])
    h += bytes([0 if r['tier'] == 'hot' else 1]) + be8_str(r['asset'])
    h += r['amount'].to_bytes(16, 'big') + be8_str(r['destination']) + be8_str(r['initiator'])
    h += r['time'].to_bytes(8, 'big')
    c = r.get('chain_tx')
    if c is not None:
        h += b'\x02' + be8_str(c['chain'])
        h += b'\x00' if c['chain_id'] is None else b'\x01' + c['chain_id'].to_bytes(8, 'big')
        h += b'\x00' if c['token_contract'] is None else b'\x01' + be8_str(c['token_contract'])
        h += be8_str(c['source']) + c['fee_cap'].to_bytes(16, 'big') + be8_str(c['tx'])
    else:
        h += b'\x00' if r['raw'] is None else b'\x01' + be8_str(r['raw'])
    h += r.get('risk_bytes', b'') + r.get('origin_bytes', b'')
    return sha256(h)


def signing_message(r):
    if r['raw'] is not None:
        return r['raw']
    if r.get('chain_tx') is not None:
        return r['chain_tx']['tx']
    return (b'keyfold/transfer-intent/v1\x00' + be8_str(r['id']) + be8_str(r['wallet'])
            + be8_str(r['asset']) + r['amount'].to_bytes(16, 'big') + be8_str(r['destination']))


def hex_n(v, n, what):
    try:
        b = bytes.fromhex(v)
    except (TypeError, ValueError):
        raise Fail(f'{what} is not hex')
    if len(b) != n:
        raise Fail(f'{what} is not {n} bytes')
    return b


def parse_approval(text):
    try:
        a = json.loads(text)
    except ValueError as e:
        raise Fail(f'approval does not parse: {e}')
    names = ['request_hash', 'policy_version', 'decision', 'expires_at', 'nonce', 'approver',
             'signature']
    if not isinstance(a, dict) or sorted(a) != sorted(names):
        raise Fail('approval does not parse: members')
    if a['decision'] not in ('approve', 'reject'):
        raise Fail('approval does not parse: decision')
    return {
        'request_hash': hex_n(a['request_hash'], 32, 'request_hash'),
        'policy_version': a['policy_version'], 'decision': a['decision'],
        'expires_at': a['expires_at'], 'nonce': hex_n(a['nonce'], 16, 'nonce'),
        'approver': hex_n(a['approver'], 32, 'approver'),
        'signature': hex_n(a['signature'], 64, 'signature'),
    }


def approval_bytes(a):
    return (b'keyfold-policy/approval/v1\x00' + a['request_hash'] + u64(a['policy_version'])
            + bytes([1 if a['decision'] == 'approve' else 2]) + u64(a['expires_at']) + a['nonce'])


def parse_path(p):
    parts = p.split('/')
    if parts[0] != 'm':
        raise Fail(f'derivation path {p} does not start with m')
    out = []
    for x in parts[1:]:
        # Rust's u32::from_str: optional '+', decimal digits.
        if not re.fullmatch(r'\+?[0-9]+', x) or int(x) >= 2**31:
            raise Fail(f'derivation path {p}: {x} is not a non-hardened index')
        out.append(int(x))
    return out


# --------------------------------------------------------------------------
# One log: integrity (docs section 8)
# --------------------------------------------------------------------------

def lines_of(data):
    """(line, terminated) pairs."""
    out = []
    while data:
        i = data.find(b'\n')
        if i < 0:
            out.append((data, False))
            break
        out.append((data[:i], True))
        data = data[i + 1:]
    return out


def parse_checkpoint_line(line):
    cp = strict_json(line)
    keys_are(cp, ['checkpoint', 'public_key', 'signature'], 'signed checkpoint')
    c = cp['checkpoint']
    keys_are(c, ['log_id', 'tree_size', 'root_hash', 'time'], 'checkpoint')
    if (not isinstance(c['log_id'], str) or len(c['log_id'].encode()) > MAX_LOG_ID
            or not is_int(c['tree_size'], 0, 2**64 - 1) or not is_int(c['time'], -2**63, 2**63 - 1)):
        raise Fail('bad checkpoint members')
    for k, n in (('public_key', 32), ('signature', 64)):
        if not isinstance(cp[k], str) or not HEX.fullmatch(cp[k]) or len(cp[k]) != 2 * n:
            raise Fail(f'bad {k}')
    if not isinstance(c['root_hash'], str) or not HEX.fullmatch(c['root_hash']) or len(c['root_hash']) != 64:
        raise Fail('bad root_hash')
    return cp


def check_signed_checkpoint(cp, key):
    if bytes.fromhex(cp['public_key']) != key:
        raise Fail('checkpoint key is not the trusted key of this log')
    if not ed25519_verify(key, checkpoint_bytes(cp['checkpoint']), bytes.fromhex(cp['signature'])):
        raise Fail('checkpoint signature does not verify')


def verify_log(log_dir, log_id, key, semantic):
    cps = []
    with open(os.path.join(log_dir, 'checkpoints.jsonl'), 'rb') as f:
        for n, (line, term) in enumerate(lines_of(f.read()), 1):
            try:
                if not term or len(line) > MAX_LINE:
                    raise Fail('truncated or too long')
                cp = parse_checkpoint_line(line)
                check_signed_checkpoint(cp, key)
                if cp['checkpoint']['log_id'] != log_id:
                    raise Fail(f"checkpoint names log {cp['checkpoint']['log_id']}")
            except Fail as e:
                raise Fail(f'checkpoints line {n}: {e}')
            cps.append(cp['checkpoint'])
    by_size, time_at = {}, {}
    for c in cps:
        by_size.setdefault(c['tree_size'], []).append(bytes.fromhex(c['root_hash']))
        time_at.setdefault(c['tree_size'], []).append(c['time'])
    # Tree heads are signed in order: a larger tree's not before a smaller's.
    ordered = sorted(cps, key=lambda c: c['tree_size'])
    for a, b in zip(ordered, ordered[1:]):
        if b['time'] < a['time']:
            raise Fail(f"checkpoint of tree size {b['tree_size']} signed before the one of size {a['tree_size']}")
    with open(os.path.join(log_dir, 'entries.jsonl'), 'rb') as f:
        data = f.read()
    if not data:
        raise Fail('the entries file is empty')
    prev, leaves, entries = bytes(32), [], []
    for r in by_size.get(0, []):
        if r != sha256(b''):
            raise Fail('checkpoint of size 0 without the empty root')
    for i, (line, term) in enumerate(lines_of(data)):
        try:
            if not term:
                raise Fail('truncated (no final newline)')
            if len(line) > MAX_LINE:
                raise Fail('line too long')
            e = strict_json(line)
            c = entry_bytes(e)
            if e['index'] != i:
                raise Fail(f"index {e['index']}")
            if bytes.fromhex(e['prev_hash']) != prev:
                raise Fail('prev_hash does not match the previous entry')
            if semantic is not None:
                semantic.check(e)
        except Fail as err:
            raise Fail(f'entry {i}: {err}')
        prev = sha256(c)
        leaves.append(leaf_hash(c))
        entries.append(e)
        for r in by_size.get(len(leaves), []):
            if r != mth(leaves):
                raise Fail(f'entries up to {i} do not match the checkpoint of size {len(leaves)}')
        for t in time_at.get(len(leaves), []):
            if t < e['time']:
                raise Fail(f'checkpoint of tree size {len(leaves)} signed before entry {i} was written')
    newest = max(cps, key=lambda c: c['tree_size']) if cps else None
    if newest and newest['tree_size'] > len(leaves):
        raise Fail(f"log truncated: entry {len(leaves)} is missing "
                   f"(a checkpoint covers {newest['tree_size']})")
    if semantic is not None:
        semantic.finish()
    if newest:
        n, root = newest['tree_size'], bytes.fromhex(newest['root_hash'])
        for i in range(n):
            if not verify_inclusion(leaves[i], i, n, path(i, leaves[:n]), root):
                raise Fail(f'entry {i}: inclusion proof in the newest checkpoint fails')
    return entries, leaves, newest


# --------------------------------------------------------------------------
# One log: semantic checks (docs section 9), without policy re-evaluation
# --------------------------------------------------------------------------

# Longest delay (s) between a request's time or a decision's evaluation
# time and the entry that records it (docs section 9.2, time rules).
MAX_RECORD_DELAY_SECS = 300


def recorded_in_time(what, at, entry_secs):
    if at > entry_secs:
        raise Fail(f"{what} {at} is after the entry's own time {entry_secs}")
    if entry_secs - at > MAX_RECORD_DELAY_SECS:
        raise Fail(f"{what} {at} is {entry_secs - at} s before the entry's own time "
                   f"{entry_secs} (at most {MAX_RECORD_DELAY_SECS} s)")


def parse_json(text, what):
    try:
        return json.loads(text)
    except ValueError as e:
        raise Fail(f'{what} does not parse as JSON: {e}')


def json_object(text, what):
    v = parse_json(text, what)
    if not isinstance(v, dict):
        raise Fail(f'{what} is not a JSON object')
    return v


# Risk engine names (docs/risk.md) and the auditor's reorder bounds (docs
# section 9.2).
RISK_ACTIONS = ('allow', 'step_up', 'review', 'freeze', 'deny')
FREEZE_SCOPES = ('customer', 'device', 'wallet', 'merchant')
# keyfold_risk::DEVICE_REFUSAL_CODES: the refusals the engine counts.
DEVICE_REFUSAL_CODES = ('unknown_device', 'device_revoked', 'wrong_device_key',
                        'stale_timestamp', 'replayed_device_signature', 'nonce_log_full',
                        'malformed_signature', 'malformed_request')
CUSTOMER_AUTH_ACTIONS = ('device_registered', 'device_revoked', 'totp_enrolled',
                         'kyc_tier_set', 'password_set')
# Members of each risk step that count toward the reorder byte bound.
STEP_MEMBERS = {'risk_decision': ('request_id', 'input', 'features', 'detail'),
                'risk_refusal': ('request_id', 'input')}
MAX_RISK_REORDER, MAX_RISK_REORDER_BYTES = 1024, 32 << 20


class RiskChecks:
    """The risk events' rules of docs section 9.2, without the recomputation
    of risk decisions (that needs the risk engine of docs/risk.md): decisions
    are taken in seq order, with no gap or repeat, under a tree recorded
    before them, and their score and action must be those of their detail."""

    def risk_tree(self, ev):
        doc = ev['document']
        if sha256(doc.encode('utf-8')) != bytes.fromhex(ev['document_hash']):
            raise Fail('document_hash is not the SHA-256 of the risk tree')
        try:
            version = tomllib.loads(doc).get('version')
        except tomllib.TOMLDecodeError as e:
            raise Fail(f'risk tree does not parse: {e}')
        if not is_int(version, 1, 2**64 - 1) or version != ev['version']:
            raise Fail(f"event says risk tree version {ev['version']}, the tree is {version!r}")
        if not self.trees:
            if ev['update'] is not None:
                raise Fail('the first risk tree of the log carries an update')
        else:
            if ev['update'] is None:
                raise Fail('risk tree replaced without a signed update')
            u = json_object(ev['update'], 'risk tree update')
            if sorted(u) != ['signatures', 'tree_toml'] or u['tree_toml'] != doc:
                raise Fail('the signed tree is not the recorded document')
            if self.policy is None or self.policy[2] is None:
                raise Fail('risk tree update not allowed: no policy with admins is in force')
            _, admins, quorum = self.policy
            sigs = u['signatures']
            if not isinstance(sigs, list) or len(sigs) > 64:
                raise Fail('risk tree update: not a list of at most 64 signatures')
            msg = b'keyfold-risk/tree/v1\x00' + sha256(doc.encode('utf-8'))
            valid = set()
            for sg in sigs:
                if not isinstance(sg, dict) or sorted(sg) != ['key', 'signature']:
                    raise Fail('risk tree update: a signature is not {key, signature}')
                k, sig = hex_n(sg['key'], 32, 'key'), hex_n(sg['signature'], 64, 'signature')
                if k in admins and ed25519_verify(k, msg, sig, strict=True):
                    valid.add(k)
            if len(valid) < quorum:
                raise Fail(f'risk tree update not allowed: {len(valid)} of {quorum} admin signatures')
            if version <= max(self.trees):
                raise Fail('risk tree update not allowed: version does not increase')
        self.trees.add(version)
        self.count('risk trees')

    def risk_decision(self, ev):
        seq = ev['seq']
        if seq == 0:
            raise Fail('risk decision seq 0: the engine numbers from 1')
        if seq <= self.risk_replayed or seq in self.risk_held:
            raise Fail(f'risk decision seq {seq} was recorded before')
        if ev['tree_version'] not in self.trees:
            raise Fail(f"risk tree version {ev['tree_version']} was never recorded before")
        self.risk_step(ev)

    def risk_refusal(self, ev):
        seq = ev['seq']
        if seq == 0:
            raise Fail('risk refusal seq 0: the engine numbers from 1')
        if seq <= self.risk_replayed or seq in self.risk_held:
            raise Fail(f'risk refusal seq {seq} was recorded before')
        i = json_object(ev['input'], 'refusal input')
        allowed = {'customer_id', 'device_id', 'code', 'at'}
        if not set(i) <= allowed or not {'code', 'at'} <= set(i):
            raise Fail('refusal input is not a refusal record')
        if i['code'] != ev['code']:
            raise Fail("refusal code is not the input's")
        if ev['code'] not in DEVICE_REFUSAL_CODES:
            raise Fail(f"refusal code {ev['code']!r} is not a device-signature refusal")
        if i.get('customer_id') is None and i.get('device_id') is None:
            raise Fail('refusal names neither a customer nor a device')
        if not is_int(i['at'], 0, 2**64 - 1):
            raise Fail('refusal time is not a u64')
        self.risk_step(ev)

    def risk_step(self, ev):
        """A decision or refusal whose seq is new: taken now if its turn has
        come (with the steps held behind it), else held back."""
        self.risk_held[ev['seq']] = (self.index, ev)
        while self.risk_replayed + 1 in self.risk_held:
            i, e = self.risk_held.pop(self.risk_replayed + 1)
            try:
                if e['type'] == 'risk_decision':
                    self.risk_in_turn(e)
                else:
                    self.count('risk refusals')
            except Fail as err:
                raise Fail(f"risk decision seq {e['seq']} (logged at entry {i}): {err}")
            self.risk_replayed += 1
        held = sum(len(e[k].encode('utf-8')) for _, e in self.risk_held.values()
                   for k in STEP_MEMBERS[e['type']])
        if len(self.risk_held) > MAX_RISK_REORDER or held > MAX_RISK_REORDER_BYTES:
            seq = min(self.risk_held)
            raise Fail(f'risk step seq {seq} (logged at entry {self.risk_held[seq][0]}): '
                       f'seq {self.risk_replayed + 1} is not in the log')

    def risk_in_turn(self, ev):
        i = json_object(ev['input'], 'input')
        if not {'payment', 'context', 'at'} <= set(i):
            raise Fail('input is not a risk request')
        json_object(ev['features'], 'features')
        d = json_object(ev['detail'], 'detail')
        if d.get('tree_version') != ev['tree_version']:
            raise Fail('detail names another tree version')
        if d.get('score') != ev['score'] or not is_int(ev['score'], 0, 100):
            raise Fail("score is not the detail's")
        if d.get('action') != ev['action'] or ev['action'] not in RISK_ACTIONS:
            raise Fail("action is not the detail's")
        self.count('risk decisions (not recomputed)')

    def freeze(self, ev):
        fid, action = ev['freeze_id'], ev['action']
        if ev['scope'] not in FREEZE_SCOPES:
            raise Fail(f"freeze {fid}: scope {ev['scope']!r}")
        if ev['lift'] is not None:
            json_object(ev['lift'], 'lift')
        if action == 'added':
            if ev['lift'] is not None:
                raise Fail(f'freeze {fid}: an added freeze carries a lift')
            self.frozen.add(fid)
        elif action == 'lifted':
            if ev['lift'] is None:
                raise Fail(f'freeze {fid}: lifted without a signed lift')
            if len(set(ev['by'])) < 2:
                raise Fail(f'freeze {fid}: lifted by fewer than 2 distinct officers')
            if fid not in self.frozen:
                raise Fail(f'freeze {fid}: lifted, but it is not in force')
            self.frozen.discard(fid)
        else:
            raise Fail(f'freeze {fid}: action {action!r}')
        self.count('freezes')

    def review(self, ev):
        if ev['verdict'] not in ('approve', 'reject', 'escalate'):
            raise Fail(f"review verdict {ev['verdict']!r}")
        json_object(ev['signed'], 'signed review')
        self.count('reviews')

    def customer_auth(self, ev):
        if ev['customer'] == '':
            raise Fail('customer auth change: the customer is empty')
        if ev['action'] not in CUSTOMER_AUTH_ACTIONS:
            raise Fail(f"customer auth action {ev['action']!r}")
        if ev['action'].startswith('device_') and not ev['device']:
            raise Fail(f"customer auth {ev['action']} names no device")
        self.count('customer auth changes')


WEEKDAYS = ('monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday', 'sunday')
MAX_TIME = 253_402_300_799  # 9999-12-31T23:59:59Z: no occurrence after it


def occurrence_at(timing, n):
    """Time of occurrence n of a schedule's timing (docs/programmable.md),
    computed with Python's calendar, or None past its end."""
    import calendar
    import datetime
    rule, start = timing['rule'], timing['start']
    if timing.get('count') is not None and n >= timing['count']:
        return None
    utc = datetime.timezone.utc
    day0 = datetime.datetime.fromtimestamp(start, utc)
    kind = rule['kind']
    if kind == 'interval':
        t = start + n * rule['every_secs']
    elif kind in ('daily', 'weekly'):
        first = day0.replace(hour=rule['hour'], minute=rule['minute'], second=0)
        step = 7 if kind == 'weekly' else rule['every_days']
        if kind == 'weekly':
            first += datetime.timedelta(days=(WEEKDAYS.index(rule['weekday']) - first.weekday()) % 7)
        if first.timestamp() < start:
            first += datetime.timedelta(days=step if kind == 'weekly' else 1)
        t = int(first.timestamp()) + n * step * 86400
    elif kind == 'monthly':
        def at(month_index):
            y, m = divmod(month_index, 12)
            d = min(rule['day'], calendar.monthrange(y, m + 1)[1])
            return calendar.timegm((y, m + 1, d, rule['hour'], rule['minute'], 0))
        first = day0.year * 12 + day0.month - 1
        if at(first) < start:
            first += 1
        if (first + n) // 12 > 9999:
            return None
        t = at(first + n)
    else:
        raise Fail(f'schedule rule kind {kind!r}')
    if t > MAX_TIME or (timing.get('until') is not None and t > timing['until']):
        return None
    return t


class ScheduleChecks:
    """Scheduled payouts: each occurrence is the schedule's next one, due
    when its timing says and handled no earlier, paid by <schedule>.<n>,
    skipped only when paused or missed by a timing that skips, never after
    a cancel or the end."""
    MOVES = {'paused': (('active',), 'paused'), 'resumed': (('paused',), 'active'),
             'cancelled': (('active', 'paused'), 'cancelled'), 'finished': (('active',), 'finished')}

    def schedule(self, ev):
        try:
            self.schedule_event(ev)
        except (KeyError, TypeError, ValueError, OverflowError) as e:
            raise Fail(f"schedule {ev['schedule_id']}: {ev['action']}: malformed detail ({e!r})")

    def schedule_event(self, ev):
        sid, action, n = ev['schedule_id'], ev['action'], ev['occurrence']
        detail = json_object(ev['detail'], f'schedule {sid} {action}')
        known = self.schedules.get(sid)
        if action == 'created':
            if known is not None:
                raise Fail(f'schedule {sid}: created twice')
            timing = detail['spec']['timing']
            if occurrence_at(timing, 0) is None:
                raise Fail(f'schedule {sid}: created with no occurrence')
            self.schedules[sid] = {'timing': timing, 'state': 'active', 'next': 0}
        elif known is None:
            raise Fail(f'schedule {sid}: {action} before the schedule was created')
        elif action in self.MOVES and n is None:
            sources, to = self.MOVES[action]
            if known['state'] not in sources or detail['from'] != known['state'] or detail['to'] != to:
                raise Fail(f"schedule {sid}: {action} while it is {known['state']}")
            if action == 'finished' and occurrence_at(known['timing'], known['next']) is not None:
                raise Fail(f"schedule {sid}: finished although occurrence {known['next']} is still to come")
            known['state'] = to
        elif action in ('paid', 'skipped', 'refused') and n is not None:
            timing, state = known['timing'], known['state']
            if state not in ('active', 'paused') or n != known['next']:
                raise Fail(f'schedule {sid}: occurrence {n} {action} out of turn ({state}, next {known["next"]})')
            due = occurrence_at(timing, n)
            if due is None or detail['due_at'] != due:
                raise Fail(f"schedule {sid}: occurrence {n} due at {detail['due_at']}, its timing says {due}")
            if self.entry_secs < due:
                raise Fail(f'schedule {sid}: occurrence {n} {action} before it was due ({due})')
            grace = timing.get('grace_secs', 3600)
            if (action == 'skipped' and state == 'active'
                    and (timing.get('missed', 'pay') != 'skip' or self.entry_secs <= due + grace)):
                raise Fail(f'schedule {sid}: occurrence {n} skipped though it was not missed')
            if action == 'paid' and detail.get('payout_id') != f'{sid}.{n}':
                raise Fail(f'schedule {sid}: occurrence {n} paid by {detail.get("payout_id")!r}')
            known['next'] = n + 1
        else:
            raise Fail(f'schedule {sid}: action {action!r}')
        self.count('schedule events')


class EscrowChecks:
    """Conditional payouts: an escrow ends once; a release by approvers is
    backed by that many logged approvals of named approvers, a deadline
    release comes no earlier than the deadline, an expiry no earlier than
    the expiry (or the order closed); the payout is <escrow>.pay, or
    <escrow>.refund for a refund."""

    def escrow(self, ev):
        eid, action = ev['escrow_id'], ev['action']
        try:
            detail = json_object(ev['detail'], f'escrow {eid} {action}')
            self.escrow_event(eid, action, detail)
        except (KeyError, TypeError, ValueError) as e:
            raise Fail(f'escrow {eid}: {action}: malformed detail ({e!r})')
        self.count('escrow events')

    def escrow_event(self, eid, action, detail):
        known = self.escrows.get(eid)
        if action == 'created':
            if known is not None:
                raise Fail(f'escrow {eid}: created twice')
            self.escrows[eid] = {'escrow': detail['spec']['escrow'], 'approved': set(), 'ended': False}
            return
        if known is None:
            raise Fail(f'escrow {eid}: {action} before it was created')
        if known['ended']:
            raise Fail(f'escrow {eid}: {action} after it ended')
        escrow = known['escrow']
        cond = escrow['condition']
        if action == 'approved':
            if cond['kind'] != 'approvers' or detail['by'] not in cond['approvers']:
                raise Fail(f"escrow {eid}: approved by {detail['by']!r}, not a named approver")
            known['approved'].add(detail['by'])
            return
        if action not in ('released', 'expired', 'cancelled'):
            raise Fail(f'escrow {eid}: action {action!r}')
        payout = detail.get('payout_id')
        if action == 'released':
            if cond['kind'] == 'after' and self.entry_secs < cond['at']:
                raise Fail(f"escrow {eid}: released before its deadline {cond['at']}")
            if cond['kind'] == 'approvers' and len(known['approved']) < cond['quorum']:
                raise Fail(f'escrow {eid}: released without its quorum of approvals')
            if payout != f'{eid}.pay':
                raise Fail(f'escrow {eid}: released as the payout {payout!r}')
        if action == 'expired':
            refund = escrow.get('on_expiry', {}).get('kind') == 'refund'
            if payout != (f'{eid}.refund' if refund else None):
                raise Fail(f'escrow {eid}: expired with the payout {payout!r}')
            closed = cond['kind'] == 'order_settled' and 'will never settle' in detail['reason']
            expires = escrow.get('expires_at')
            if not closed and (expires is None or self.entry_secs < expires):
                raise Fail(f'escrow {eid}: expired before its expiry {expires}')
        if action == 'cancelled' and payout is not None:
            raise Fail(f'escrow {eid}: cancelled, yet names a payout')
        known['ended'] = True


class Auditor(RiskChecks, ScheduleChecks, EscrowChecks):
    def __init__(self):
        self.policy = None        # (version, admins keys set, quorum) in force
        self.keys = {}
        self.requests = {}
        self.nonces = {}
        self.counts = {}
        self.last_entry = None    # time (ms) of the previous entry
        self.last_decision = 0    # evaluated_at of the previous decision
        self.entry_secs = 0
        self.index = 0            # index of the entry being checked
        self.trees = set()        # risk tree versions recorded
        self.risk_replayed = 0    # seq of the last risk decision taken in turn
        self.risk_held = {}       # seq -> (entry index, event): ahead of their turn
        self.frozen = set()       # freeze ids in force
        self.schedules = {}       # schedule id -> timing, state, next occurrence
        self.escrows = {}         # escrow id -> escrow, approvals, ended
        self.shadow = None        # (version, document SHA-256) installed in shadow

    def count(self, what):
        self.counts[what] = self.counts.get(what, 0) + 1

    def check(self, entry):
        # Time rule 1: entry times never go back.
        t = entry['time']
        if self.last_entry is not None and t < self.last_entry:
            raise Fail(f"entry time {t} is before the previous entry's {self.last_entry}")
        self.last_entry = t
        self.entry_secs = max(t // 1000, 0)
        self.index = entry['index']
        ev = entry['event']
        getattr(self, ev['type'])(ev)

    def finish(self):
        """At the end of the log: a risk decision still held back means a
        seq between 1 and it never came (docs section 9.2)."""
        if self.risk_held:
            seq = min(self.risk_held)
            i, ev = self.risk_held[seq]
            kind = ev['type'].replace('_', ' ')
            raise Fail(f"entry {i}: {kind} seq {seq} on request {ev['request_id']}: "
                       f"seq {self.risk_replayed + 1} is not in the log")

    def policy_version(self, ev):
        doc = ev['document']
        if sha256(doc.encode('utf-8')) != bytes.fromhex(ev['document_hash']):
            raise Fail('document_hash is not the SHA-256 of the document')
        try:
            parsed = tomllib.loads(doc)
        except tomllib.TOMLDecodeError as e:
            raise Fail(f'document does not parse: {e}')
        version = parsed.get('version')
        if self.policy is None:
            if ev['update'] is not None:
                raise Fail('the first policy version carries an update')
        else:
            if ev['update'] is None:
                raise Fail('policy replaced without a signed update')
            u = json.loads(ev['update'])
            if sorted(u) != ['document_toml', 'signatures'] or u['document_toml'] != doc:
                raise Fail('the signed update is not the recorded document')
            cur_version, admins, quorum = self.policy
            if quorum is None:
                raise Fail('policy update not allowed: the policy in force has no admins')
            msg = b'keyfold-policy/document/v1\x00' + sha256(doc.encode('utf-8'))
            valid = set()
            for s in u['signatures']:
                k, sig = bytes.fromhex(s['key']), bytes.fromhex(s['signature'])
                if k in admins and ed25519_verify(k, msg, sig, strict=False):
                    valid.add(k)
            if len(valid) < quorum:
                raise Fail(f'policy update not allowed: {len(valid)} of {quorum} admin signatures')
            if not is_int(version, 0, 2**64 - 1) or version <= cur_version:
                raise Fail('policy update not allowed: version does not increase')
        if version != ev['version']:
            raise Fail(f"event says version {ev['version']}, the document is version {version}")
        adm = parsed.get('admins')
        self.policy = (version, {bytes.fromhex(k) for k in adm['keys']} if adm else set(),
                       adm['quorum'] if adm else None)
        self.count('policies')

    def policy_shadow(self, ev):
        """A policy version installed in shadow (docs section 9.2): let in
        exactly as a policy update would be (the admin quorum of the policy
        in force, a version above it); removed, or ended once a version at
        least its own is in force, only while it is the one installed."""
        doc, version, action = ev['document'], ev['version'], ev['action']
        digest = sha256(doc.encode('utf-8'))
        if digest != bytes.fromhex(ev['document_hash']):
            raise Fail('document_hash is not the SHA-256 of the shadow document')
        if action == 'installed':
            if ev['update'] is None:
                raise Fail(f'shadow version {version} installed without its signed update')
            if self.policy is None:
                raise Fail('no policy version is in force yet')
            u = json_object(ev['update'], 'shadow update')
            if sorted(u) != ['document_toml', 'signatures'] or u['document_toml'] != doc:
                raise Fail('the signed shadow update is not the recorded document')
            try:
                parsed = tomllib.loads(doc)
            except tomllib.TOMLDecodeError as e:
                raise Fail(f'shadow document does not parse: {e}')
            cur_version, admins, quorum = self.policy
            if quorum is None:
                raise Fail('shadow version not allowed: the policy in force has no admins')
            sigs = u['signatures']
            if not isinstance(sigs, list):
                raise Fail('shadow update: signatures is not a list')
            msg = b'keyfold-policy/document/v1\x00' + digest
            valid = set()
            for s in sigs:
                if not isinstance(s, dict) or sorted(s) != ['key', 'signature']:
                    raise Fail('shadow update: a signature is not {key, signature}')
                k, sig = hex_n(s['key'], 32, 'key'), hex_n(s['signature'], 64, 'signature')
                if k in admins and ed25519_verify(k, msg, sig, strict=True):
                    valid.add(k)
            if len(valid) < quorum:
                raise Fail(f'shadow version not allowed: {len(valid)} of {quorum} admin signatures')
            doc_version = parsed.get('version')
            if not is_int(doc_version, 0, 2**64 - 1) or doc_version <= cur_version:
                raise Fail('shadow version not allowed: version does not increase')
            if doc_version != version:
                raise Fail(f'event says shadow version {version}, the document is version {doc_version}')
            # Installing replaces the shadow installed, if any.
            self.shadow = (version, digest)
        elif action in ('removed', 'ended'):
            if ev['update'] is not None:
                raise Fail(f'a shadow {action} event carries an update')
            if self.shadow is None:
                raise Fail(f'shadow version {version} {action}, but no shadow is installed')
            if self.shadow != (version, digest):
                raise Fail(f'shadow version {version} {action}, but the installed shadow is '
                           f'version {self.shadow[0]} with document hash {self.shadow[1].hex()}')
            if action == 'ended' and (self.policy is None or self.policy[0] < version):
                raise Fail(f'shadow version {version} ended before a version at least its own '
                           f'was in force')
            self.shadow = None
        else:
            raise Fail(f'policy shadow action {action!r} is not installed, removed or ended')
        self.count('policy shadows')

    def key_created(self, ev):
        if ev['key_id'] in self.keys:
            raise Fail(f"key {ev['key_id']} was created before")
        pk = bytes.fromhex(ev['public_key'])
        if ev['curve'] == 'secp256k1':
            if sec1_decode(pk) is None:
                raise Fail('public key is not a secp256k1 point')
        elif ev['curve'] == 'ed25519':
            if ed_decode(pk) is None:
                raise Fail('public key is not an Ed25519 point')
        else:
            raise Fail(f"unknown curve {ev['curve']}")
        if ev['tier'] not in ('hot', 'cold'):
            raise Fail(f"unknown tier {ev['tier']}")
        t, n, parts = ev['t'], ev['n'], ev['participants']
        if t == 0 or t > n or n != len(parts) or len(set(parts)) != n:
            raise Fail('threshold does not fit the participants')
        cc = ev['chain_code']
        if cc is not None and len(cc) != 64:
            raise Fail('chain code is not 32 bytes')
        self.keys[ev['key_id']] = dict(ev, public_key=pk,
                                       chain_code=bytes.fromhex(cc) if cc else None)
        self.count('keys')

    def sign_request(self, ev):
        rid = ev['request_id']
        if rid in self.requests:
            raise Fail(f'request id {rid} was recorded before')
        key = self.keys.get(ev['key_id'])
        if key is None:
            raise Fail(f"key {ev['key_id']} was never created")
        r = parse_request(ev['request'])
        # Time rule 2: no backdated (or future) request.
        recorded_in_time('request time', r['time'], self.entry_secs)
        if r['id'] != rid:
            raise Fail(f"the typed request has id {r['id']}")
        if request_hash(r) != bytes.fromhex(ev['request_hash']):
            raise Fail('request_hash is not the canonical hash of the request')
        if sha256(signing_message(r)) != bytes.fromhex(ev['message_hash']):
            raise Fail("message_hash is not the hash of the request's signing message")
        dp = ev['derivation_path']
        p = parse_path(dp) if dp is not None else None
        wallet = ev['key_id'] if dp is None else f"{ev['key_id']}/{dp}"
        if r['wallet'] != wallet:
            raise Fail(f"the request names wallet {r['wallet']}, the key and path give {wallet}")
        if r['tier'] != key['tier']:
            raise Fail('the request claims another tier than the key')
        alg = ev['hash_alg']
        if not ((key['curve'] == 'secp256k1' and alg in ('sha256', 'keccak256'))
                or (key['curve'] == 'ed25519' and alg is None)):
            raise Fail(f"hash {alg} does not fit a {key['curve']} key")
        if p is not None and key['chain_code'] is None:
            raise Fail('a derivation path for a key without chain code')
        self.requests[rid] = dict(key_id=ev['key_id'], req=r, hash=request_hash(r), alg=alg,
                                  path=p, allowed=False, signed=False, sessions={})
        self.count('requests')

    def req(self, rid):
        if rid not in self.requests:
            raise Fail(f'request {rid} was never recorded')
        return self.requests[rid]

    def approval(self, ev):
        a = parse_approval(ev['approval'])
        rq = self.req(ev['request_id'])
        if a['request_hash'] != rq['hash']:
            raise Fail('the approval signs another request')
        if ed_decode(a['approver']) is None:
            raise Fail('approver key is not an Ed25519 point')
        if not ed25519_verify(a['approver'], approval_bytes(a), a['signature']):
            raise Fail('approval signature does not verify')
        owner = self.nonces.get(a['nonce'])
        if owner is not None:
            raise Fail('approval nonce reused' if owner != ev['request_id']
                       else 'the same approval was recorded twice')
        self.nonces[a['nonce']] = ev['request_id']
        self.count('approvals')

    def decision(self, ev):
        # Time rule 3: evaluated when recorded, and never back in time.
        at = ev['evaluated_at']
        recorded_in_time('evaluation time', at, self.entry_secs)
        if at < self.last_decision:
            raise Fail(f"evaluation time {at} is before the previous decision's "
                       f"{self.last_decision}")
        if self.policy is None:
            raise Fail('no policy version is in force yet')
        if ev['policy_version'] != self.policy[0]:
            raise Fail('decided under another policy version than the one in force')
        rq = self.req(ev['request_id'])
        detail = json.loads(ev['detail'])
        names = {'allow': 'allow', 'need_approvals': 'need_approvals', 'time_lock': 'time_locked',
                 'deny': 'deny'}
        if detail.get('outcome') != names[ev['outcome']]:
            raise Fail('detail does not match the outcome')
        rq['allowed'] = ev['outcome'] == 'allow'
        self.last_decision = at
        self.count('decisions (not re-evaluated)')

    def check_signers(self, key, signers, mode):
        if mode == 'hsm':
            if key['tier'] != 'cold':
                raise Fail('an HSM signature for a hot key')
            return
        if key['tier'] == 'cold':
            raise Fail('a threshold session for a cold key')
        if len(set(signers)) != len(signers) or len(signers) < key['t']:
            raise Fail('signer set below the threshold or with duplicates')
        for s in signers:
            if s not in key['participants']:
                raise Fail(f'signer {s} holds no share of this key')

    def signing_session(self, ev):
        rq = self.req(ev['request_id'])
        if not rq['allowed']:
            raise Fail('signing session for a request no decision allowed')
        if rq['signed']:
            raise Fail('request already signed')
        self.check_signers(self.keys[rq['key_id']], ev['signers'], ev['mode'])
        rq['sessions'][ev['session_id']] = False   # open (not aborted)

    def signature(self, ev):
        rq = self.req(ev['request_id'])
        if rq['key_id'] != ev['key_id']:
            raise Fail('signature under another key than the request')
        if not rq['allowed'] or rq['signed']:
            raise Fail('signature without an allowing decision, or twice')
        if all(rq['sessions'].values()):
            raise Fail(f"signature for request {ev['request_id']} without a signing session "
                       f"that was not aborted")
        key = self.keys[ev['key_id']]
        expected = key['public_key']
        if rq['path'] is not None:
            expected = bip32_child(key['public_key'], key['chain_code'], rq['path'])
        if bytes.fromhex(ev['public_key']) != expected:
            raise Fail('public_key is not the wallet key of the request')
        msg, sig = signing_message(rq['req']), bytes.fromhex(ev['signature'])
        if key['curve'] == 'secp256k1':
            digest = sha256(msg) if rq['alg'] == 'sha256' else keccak256(msg)
            why = ecdsa_verify(expected, digest, sig)
            if why:
                raise Fail(why)
        elif not ed25519_verify(expected, msg, sig):
            raise Fail('Ed25519 signature does not verify under the wallet key')
        rq['signed'] = True
        self.count('signatures')

    def aborted(self, ev):
        rq = self.req(ev['request_id'])
        sid = ev['session_id']
        if rq['sessions'].get(sid, True):
            raise Fail(f"abort of session {sid}, which request {ev['request_id']} has not open")
        rq['sessions'][sid] = True
        self.count('aborted')

    def request_failed(self, ev):
        rq = self.req(ev['request_id'])
        if rq['signed']:
            raise Fail('request failed after it was signed')
        rq['allowed'] = False
        # Rule 4: its sessions are over; a later signature needs a new one.
        for sid in rq['sessions']:
            rq['sessions'][sid] = True

    def request_closed(self, ev):
        if ev['state'] not in ('rejected', 'expired', 'cancelled'):
            raise Fail(f"request closed in state {ev['state']!r}")
        # Closed before it was signed: the same rules as a failed request.
        self.request_failed(ev)
        self.count('closed')

    def chain_transaction(self, ev):
        # A signed payout's transaction: the hash of its first event's bytes
        # is its hash, and every later event names that hash (one
        # transaction per payout). Decoding the RLP is left to the Rust
        # auditor; the sender was checked with the request's signature.
        rq = self.req(ev['request_id'])
        if not rq['signed']:
            raise Fail('a chain transaction for a request that was never signed')
        # A replacement is the first event of its own request's transaction
        # (same nonce as the payout's earlier one: the Rust auditor decodes
        # both and checks it).
        if ev['action'] not in ('broadcast', 'replacement', 'rebroadcast', 'confirmed', 'failed'):
            raise Fail(f"chain transaction action {ev['action']!r}")
        if ev['raw_tx'] is not None:
            raw = bytes.fromhex(ev['raw_tx'])
            if '0x' + keccak256(raw).hex() != ev['tx_hash']:
                raise Fail('tx_hash is not the keccak-256 of raw_tx')
            if rq.get('tx_hash', ev['tx_hash']) != ev['tx_hash']:
                raise Fail('a second transaction for one payout')
            rq['tx_hash'] = ev['tx_hash']
        elif rq.get('tx_hash') != ev['tx_hash']:
            raise Fail('a chain transaction event names a hash its payout never sent')
        self.count('chain transactions')

    def client_token(self, ev):
        if ev['action'] not in ('issued', 'revoked'):
            raise Fail(f"client token action {ev['action']!r}")
        self.count('client tokens')

    def contribution(self, ev):
        if self.policy is None:
            raise Fail('no policy version is in force yet')
        if ev['policy_version'] != self.policy[0]:
            raise Fail('contributed under another policy version than the one in force')
        key = self.keys.get(ev['key_id'])
        if key is not None:
            self.check_signers(key, party_names(key['participants'], ev['signers']), ev['mode'])
        self.count('contributions')


def party_names(participants, indices):
    out = []
    for i in indices:
        # Rust's usize::from_str: optional '+', decimal digits.
        if not re.fullmatch(r'\+?[0-9]+', i) or int(i) >= len(participants):
            raise Fail(f'signer set {indices} names parties the key does not have')
        out.append(participants[int(i)])
    return out


# --------------------------------------------------------------------------
# Cross-check (docs section 9.4)
# --------------------------------------------------------------------------

def cross_check(logs, coordinator):
    requests, sessions, keys = {}, {}, {}
    for e in logs[coordinator]:
        ev = e['event']
        if ev['type'] == 'sign_request':
            requests[ev['request_id']] = ev['request_hash']
        elif ev['type'] == 'signing_session':
            sessions.setdefault(ev['request_id'], []).append(frozenset(ev['signers']))
        elif ev['type'] == 'key_created':
            keys[ev['key_id']] = ev['participants']
    findings = []
    for log, entries in sorted(logs.items()):
        if log == coordinator:
            continue
        for e in entries:
            ev = e['event']
            if ev['type'] != 'contribution':
                continue
            where = f"{log} entry {e['index']}: request {ev['request_id']}: "
            if requests.get(ev['request_id']) != ev['request_hash']:
                findings.append(where + 'no coordinator request with this id and request hash')
                continue
            if ev['key_id'] not in keys:
                findings.append(where + f"the coordinator's log has no key {ev['key_id']}")
                continue
            try:
                names = frozenset(party_names(keys[ev['key_id']], ev['signers']))
            except Fail as err:
                findings.append(where + str(err))
                continue
            if log not in names:
                findings.append(where + 'this signer is not in the signer set it recorded')
            elif names not in sessions.get(ev['request_id'], []):
                findings.append(where + f'no coordinator signing session with signers {sorted(names)}')
    return findings


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('export', help='directory written by `keyfold audit export`')
    ap.add_argument('--kept', help='file whose first line is a signed checkpoint kept earlier')
    ap.add_argument('--coordinator', default='coordinator', help='log id of the coordinator')
    ap.add_argument('--integrity-only', action='store_true', help='skip the semantic checks')
    args = ap.parse_args()
    with open(os.path.join(args.export, 'keys.json'), 'rb') as f:
        keys = {k: hex_n(v.strip(), 32, f'key of {k}') for k, v in json.load(f).items()}
    log_ids = sorted(d for d in os.listdir(args.export)
                     if os.path.isfile(os.path.join(args.export, d, 'entries.jsonl')))
    ok, all_entries, state = True, {}, {}
    for log_id in log_ids:
        try:
            if log_id not in keys:
                raise Fail('no trusted checkpoint key for it in keys.json')
            aud = None if args.integrity_only else Auditor()
            entries, leaves, newest = verify_log(os.path.join(args.export, log_id), log_id,
                                                 keys[log_id], aud)
            all_entries[log_id] = entries
            state[log_id] = (leaves, newest)
            root = mth(leaves).hex()
            print(f"{log_id}: OK: {len(leaves)} entries, root {root}, newest checkpoint "
                  f"{newest['tree_size'] if newest else 'none'}, all entries proven included"
                  + (f'; checked {aud.counts}' if aud else ''))
        except (Fail, OSError, ValueError, KeyError, TypeError) as e:
            ok = False
            print(f'{log_id}: FAILED: {e}')
    if args.kept:
        try:
            with open(args.kept, 'rb') as f:
                line = next((l.strip() for l in f.read().split(b'\n') if l.strip()), b'')
            cp = parse_checkpoint_line(line)
            c = cp['checkpoint']
            if c['log_id'] not in state:
                raise Fail(f"no verified log {c['log_id']} in the export")
            check_signed_checkpoint(cp, keys[c['log_id']])
            leaves, newest = state[c['log_id']]
            m, n = c['tree_size'], newest['tree_size']
            if m > n:
                raise Fail(f'it covers {m} entries, the newest checkpoint only {n}: truncated')
            p = proof(m, leaves[:n])
            if not verify_consistency(m, n, bytes.fromhex(c['root_hash']),
                                      bytes.fromhex(newest['root_hash']), p):
                raise Fail(f'no consistency from size {m} to {n}: entries were rewritten')
            print(f"kept checkpoint: {c['log_id']} size {m} is consistent with size {n} "
                  f"(proof of {len(p)} hashes)")
        except (Fail, OSError, ValueError, KeyError) as e:
            ok = False
            print(f'kept checkpoint: FAILED: {e}')
    if args.coordinator in all_entries and len(all_entries) > 1:
        findings = cross_check(all_entries, args.coordinator)
        for f in findings:
            print(f'cross-check: {f}')
        ok &= not findings
        if not findings:
            n = sum(1 for l, es in all_entries.items() if l != args.coordinator
                    for e in es if e['event']['type'] == 'contribution')
            print(f'cross-check: OK: {n} contributions match the coordinator log')
    print('ALL OK' if ok else 'FAILED')
    sys.exit(0 if ok else 1)


if __name__ == '__main__':
    main()
