#!/usr/bin/env python3
"""Verifies webhook deliveries with the standardwebhooks reference library.

Input (a file, or stdin with "-"): JSON {"secret": "whsec_...",
"deliveries": [{"headers": {"webhook-id", "webhook-timestamp",
"webhook-signature"}, "body": "<raw body>"}]}. Every delivery must verify;
prints how many did, exits 1 naming the first that does not.
"""
import json
import sys

from standardwebhooks.webhooks import Webhook


def main() -> int:
    src = sys.argv[1] if len(sys.argv) > 1 else "-"
    doc = json.load(sys.stdin if src == "-" else open(src, encoding="utf-8"))
    hook = Webhook(doc["secret"])
    for i, d in enumerate(doc["deliveries"]):
        try:
            hook.verify(d["body"], d["headers"])
        except Exception as e:  # the library raises its own WebhookVerificationError
            print(f"delivery {i} ({d['headers'].get('webhook-id')}) does not verify: {e}")
            return 1
    print(f"verified {len(doc['deliveries'])} deliveries with standardwebhooks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
