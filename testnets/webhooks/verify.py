#!/usr/bin/env python3
"""Verifies webhook deliveries with the standardwebhooks reference library.

Usage: verify.py FILE [--as-sent]. FILE (or "-" for stdin) holds JSON
{"secret": "whsec_...", "deliveries": [{"headers": {"webhook-id",
"webhook-timestamp", "webhook-signature"}, "body": "<raw body>"}]}, or is
the output of `keyfold devnet --once --out FILE`.

By default each delivery goes through Webhook.verify (signature and the
5-minute timestamp tolerance, as a receiver checks it on arrival). With
--as-sent, the timestamp is not compared with the clock: the library signs
each delivery's id, timestamp and body itself and one of the header's
signatures must equal that (for deliveries recorded earlier, such as the
devnet's --out file). Prints how many verified; exits 1 naming the first
that does not.
"""
import json
import sys
from datetime import datetime, timezone

from standardwebhooks.webhooks import Webhook


def main() -> int:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    as_sent = "--as-sent" in sys.argv[1:]
    src = args[0] if args else "-"
    doc = json.load(sys.stdin if src == "-" else open(src, encoding="utf-8"))
    if "merchant" in doc:  # the devnet's --out file
        doc = {"secret": doc["merchant"]["webhook_secret"], "deliveries": doc["webhooks"]}
    hook = Webhook(doc["secret"])
    for i, d in enumerate(doc["deliveries"]):
        h = d["headers"]
        try:
            if as_sent:
                at = datetime.fromtimestamp(int(h["webhook-timestamp"]), tz=timezone.utc)
                expected = hook.sign(h["webhook-id"], at, d["body"])
                if expected not in h["webhook-signature"].split(" "):
                    raise ValueError("no signature in the header matches")
            else:
                hook.verify(d["body"], h)
        except Exception as e:  # the library raises its own WebhookVerificationError
            print(f"delivery {i} ({h.get('webhook-id')}) does not verify: {e}")
            return 1
    print(f"verified {len(doc['deliveries'])} deliveries with standardwebhooks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
