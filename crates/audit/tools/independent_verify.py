#!/usr/bin/env python3
"""Independent re-implementation of the audit-log hashing, written from
docs/audit-log.md alone (standard library only). It recomputes the hash chain
and the Merkle root at every checkpoint of an exported log directory; it does
not check Ed25519 signatures (no Ed25519 in the Python standard library).

    KEYFOLD_AUDIT_DUMP=/tmp/x cargo test --test vectors   # writes a sample log
    python3 tools/independent_verify.py /tmp/x
"""
import hashlib, struct, json, sys
d=sys.argv[1]
def B(b): return struct.pack('>I',len(b))+b
def S(x): return B(x.encode())
def OS(x): return b'\x00' if x is None else b'\x01'+S(x)
def L(xs): return struct.pack('>I',len(xs))+b''.join(S(x) for x in xs)
H=bytes.fromhex
OUT={'allow':1,'need_approvals':2,'time_lock':3,'deny':4}; MODE={'full':1,'presignature':2}
def ev(e):
    t=e['type']
    if t=='key_created': return 1, S(e['key_id'])+S(e['curve'])+struct.pack('>HH',e['t'],e['n'])+L(e['participants'])+B(H(e['public_key']))
    if t=='policy_version': return 2, struct.pack('>Q',e['version'])+H(e['document_hash'])
    if t=='sign_request': return 3, S(e['request_id'])+S(e['key_id'])+S(e['client'])+B(H(e['message_hash']))+S(e['hash_alg'])+OS(e['derivation_path'])
    if t=='approval': return 4, S(e['request_id'])+S(e['approver'])+B(H(e['signature']))
    if t=='decision': return 5, S(e['request_id'])+S(e['rule'])+bytes([OUT[e['outcome']]])
    if t=='signing_session': return 6, S(e['request_id'])+S(e['session_id'])+L(e['signers'])+bytes([MODE[e['mode']]])
    if t=='signature': return 7, S(e['request_id'])+S(e['key_id'])+B(H(e['public_key']))+B(H(e['signature']))
    if t=='aborted': return 8, S(e['request_id'])+S(e['session_id'])+OS(e['blamed'])+S(e['reason'])
    raise ValueError(t)
def sha(b): return hashlib.sha256(b).digest()
def mth(ls):
    if not ls: return sha(b'')
    if len(ls)==1: return ls[0]
    k=1
    while k*2<len(ls): k*=2
    return sha(b'\x01'+mth(ls[:k])+mth(ls[k:]))
prev=bytes(32); leaves=[]
for i,line in enumerate(open(d+'/entries.jsonl','rb').read().split(b'\n')[:-1]):
    e=json.loads(line); assert e['index']==i; assert H(e['prev_hash'])==prev, i
    code,body=ev(e['event'])
    c=B(b'keyfold/audit/entry')+struct.pack('>HQq',1,e['index'],e['time'])+H(e['prev_hash'])+struct.pack('>H',code)+body
    prev=sha(c); leaves.append(sha(b'\x00'+c))
print('entries', len(leaves), 'root', mth(leaves).hex())
for line in open(d+'/checkpoints.jsonl','rb').read().split(b'\n')[:-1]:
    cp=json.loads(line)['checkpoint']
    ok = mth(leaves[:cp['tree_size']]).hex()==cp['root_hash']
    print('checkpoint', cp['tree_size'], 'root ok' if ok else 'ROOT MISMATCH')
