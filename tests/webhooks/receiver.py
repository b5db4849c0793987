"""A webhook receiver for the tests (tests/tests/api/webhooks.rs), on loopback, port 0.

Prints `PORT <n>` once bound. Every POST outside /_control is a delivery: it is verified with
`standardwebhooks.Webhook(secret).verify(body, headers)` against each configured secret in
turn, recorded, and answered as the script says. What the test reads back, per delivery:
its webhook-id, the payload's type, whether each secret verified it, the status answered, and
whether another delivery of the same webhook-id was still in flight when it arrived, and
when it arrived (Unix seconds).

  POST /_control/config   {"secrets": [...], "script": [500, 500, "hang", ...], "delay_ms": 0}
                          the script answers deliveries in order, then 200 for the rest;
                          "hang" holds the delivery open until /_control/release
  GET  /_control/log      {"deliveries": [...]}
  POST /_control/release  ends every hang (answered 200)
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

lock = threading.Lock()
secrets = []
script = []
delay_ms = 0
log = []
in_flight = {}
release = threading.Event()


def verified_by(body, headers):
    results = []
    for secret in secrets:
        try:
            Webhook(secret).verify(body, headers)
            results.append(True)
        except WebhookVerificationError:
            results.append(False)
    return results


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body=b""):
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def body(self):
        return self.rfile.read(int(self.headers.get("content-length", "0")))

    def do_GET(self):
        if self.path != "/_control/log":
            return self.answer(404)
        with lock:
            text = json.dumps({"deliveries": log})
        self.answer(200, text.encode())

    def do_POST(self):
        global secrets, script, delay_ms
        body = self.body()
        if self.path == "/_control/config":
            config = json.loads(body)
            with lock:
                secrets = config.get("secrets", [])
                script = list(config.get("script", []))
                delay_ms = config.get("delay_ms", 0)
            return self.answer(204)
        if self.path == "/_control/release":
            release.set()
            return self.answer(204)
        headers = {k.lower(): v for k, v in self.headers.items()}
        event_id = headers.get("webhook-id", "")
        with lock:
            overlap = in_flight.get(event_id, 0) > 0
            in_flight[event_id] = in_flight.get(event_id, 0) + 1
            planned = script.pop(0) if script else 200
            wait = delay_ms
        try:
            parsed = json.loads(body) if body else {}
            record = {
                "id": event_id,
                "type": parsed.get("type"),
                "data": parsed.get("data"),
                "verified": verified_by(body, headers),
                "signatures": len(headers.get("webhook-signature", "").split()),
                "overlap": overlap,
                "arrived": time.time(),
                "status": None,
            }
            with lock:
                log.append(record)
            if planned == "hang":
                release.wait(60)
                planned = 200
            if wait:
                time.sleep(wait / 1000)
            with lock:
                record["status"] = planned
            self.answer(planned)
        finally:
            with lock:
                in_flight[event_id] -= 1


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print("PORT", server.server_address[1], flush=True)
sys.stdout.close()
server.serve_forever()
