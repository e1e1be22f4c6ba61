#!/usr/bin/env python3
"""A userspace stand-in for `tc qdisc add dev IF root netem delay D`.

Some kernels are built without the netem qdisc (CONFIG_NET_SCH_NETEM unset:
`tc` answers "Specified qdisc kind is unknown"). On those, testnets/netns/run.sh
sends every packet a namespace sends out of its link to an NFQUEUE
(`iptables -A OUTPUT -o IF -j NFQUEUE --queue-num N`), and this program, run
inside the same namespace, lets each packet go after DELAY milliseconds: the
same fixed one-way delay netem adds on egress. Packets keep their order (one
queue, one fixed delay), nothing is copied to userspace but the metadata, and
nothing is dropped or changed.

It speaks nfnetlink_queue directly (no third-party package): bind the queue,
ask for metadata only, then answer each packet with a batch verdict (accept
every queued packet up to this id) once its delay has passed.

Prints "ready" on stdout once the queue is bound, then runs until SIGTERM or
SIGINT. Exits non-zero on any netlink error, so a broken delay never passes
silently (the queue has no bypass: without this program the link is dead).
"""

import argparse
import collections
import errno
import os
import select
import signal
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
SOL_NETLINK = 270
NETLINK_NO_ENOBUFS = 5
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLMSG_ERROR = 0x2
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_CONFIG = 2
NFQNL_MSG_VERDICT_BATCH = 3
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_CFG_QUEUE_MAXLEN = 3
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NF_ACCEPT = 1
NLA_TYPE_MASK = ~(0x8000 | 0x4000) & 0xFFFF
NLMSG_HDR = struct.Struct("=IHHII")


def align4(n):
    return (n + 3) & ~3


def nfq_message(msg_type, queue, attrs, flags=NLM_F_REQUEST, seq=0):
    """One nfnetlink_queue message: nlmsghdr, nfgenmsg, attributes."""
    body = struct.pack("!BBH", socket.AF_UNSPEC, 0, queue)
    for attr_type, payload in attrs:
        length = 4 + len(payload)
        body += struct.pack("=HH", length, attr_type) + payload
        body += b"\0" * (align4(length) - length)
    kind = (NFNL_SUBSYS_QUEUE << 8) | msg_type
    return NLMSG_HDR.pack(NLMSG_HDR.size + len(body), kind, flags, seq, 0) + body


def configure(sock, queue, seq, attrs):
    """Sends one config message and waits for the kernel's acknowledgement."""
    sock.send(nfq_message(NFQNL_MSG_CONFIG, queue, attrs, NLM_F_REQUEST | NLM_F_ACK, seq))
    while True:
        data = sock.recv(65536)
        offset = 0
        while offset + NLMSG_HDR.size <= len(data):
            length, kind, _, msg_seq, _ = NLMSG_HDR.unpack_from(data, offset)
            if kind == NLMSG_ERROR and msg_seq == seq:
                (code,) = struct.unpack_from("=i", data, offset + NLMSG_HDR.size)
                if code != 0:
                    raise OSError(-code, f"nfqueue config: {os.strerror(-code)}")
                return
            offset += align4(length)


def packet_ids(data):
    """The packet ids of the NFQNL_MSG_PACKET messages in one netlink read."""
    ids = []
    offset = 0
    packet_kind = (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET
    while offset + NLMSG_HDR.size <= len(data):
        length, kind, _, _, _ = NLMSG_HDR.unpack_from(data, offset)
        if length < NLMSG_HDR.size:
            break
        if kind == packet_kind:
            attr = offset + NLMSG_HDR.size + 4  # after nfgenmsg
            end = offset + length
            while attr + 4 <= end:
                attr_len, attr_type = struct.unpack_from("=HH", data, attr)
                if attr_len < 4:
                    break
                if attr_type & NLA_TYPE_MASK == NFQA_PACKET_HDR:
                    (packet_id,) = struct.unpack_from("!I", data, attr + 4)
                    ids.append(packet_id)
                    break
                attr += align4(attr_len)
        offset += align4(length)
    return ids


def run(queue, delay):
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    # Room for bursts (aux info sends about a megabyte per party at once);
    # a lost notification would mean a lost packet.
    sock.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)  # SO_RCVBUFFORCE
    sock.setsockopt(SOL_NETLINK, NETLINK_NO_ENOBUFS, 1)
    sock.bind((0, 0))
    configure(sock, queue, 1, [(NFQA_CFG_CMD, struct.pack("!BxH", NFQNL_CFG_CMD_BIND, socket.AF_INET))])
    configure(sock, queue, 2, [(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META))])
    configure(sock, queue, 3, [(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", 65536))])
    print("ready", flush=True)

    pending = collections.deque()  # (release time, packet id), in id order
    while True:
        timeout = None
        if pending:
            timeout = max(0.0, pending[0][0] - time.monotonic())
        readable, _, _ = select.select([sock], [], [], timeout)
        if readable:
            try:
                data = sock.recv(1 << 20)
            except OSError as e:
                if e.errno == errno.EINTR:
                    continue
                raise
            now = time.monotonic()
            for packet_id in packet_ids(data):
                pending.append((now + delay, packet_id))
        now = time.monotonic()
        last = None
        while pending and pending[0][0] <= now:
            last = pending.popleft()[1]
        if last is not None:
            verdict = struct.pack("!II", NF_ACCEPT, last)
            sock.send(nfq_message(NFQNL_MSG_VERDICT_BATCH, queue, [(NFQA_VERDICT_HDR, verdict)]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queue", type=int, default=0, help="NFQUEUE number")
    parser.add_argument("--delay-ms", type=float, required=True, help="one-way delay")
    args = parser.parse_args()
    if not 0 <= args.queue <= 65535 or not 0 <= args.delay_ms <= 10000:
        parser.error("queue must be 0..65535 and delay 0..10000 ms")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        run(args.queue, args.delay_ms / 1000.0)
    except KeyboardInterrupt:
        pass
    except OSError as e:
        print(f"delay.py: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
