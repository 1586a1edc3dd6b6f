"""VideoDB's Python SDK, unpatched, pointed at one box of a site, wires an
alert on a camera another box runs; the alert must reach our webhook.

Run by tests/suite/fleet.rs with SIGHTLINE_URL (box 2), SIGHTLINE_KEY_FILE
(the site's key) and STREAM_ID (a camera box 3 runs). The camera plays the
demo clip, whose middle third shows a person, and restarts when it ends.
Prints one JSON summary line and exits 0 when the webhook came.
"""

import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import videodb

BASE = os.environ["SIGHTLINE_URL"]
KEY = open(os.environ["SIGHTLINE_KEY_FILE"]).read().strip()
STREAM = os.environ["STREAM_ID"]

hooks = []
lock = threading.Lock()


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)


class Hook(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        with lock:
            hooks.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


receiver = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
threading.Thread(target=receiver.serve_forever, daemon=True).start()
hook_url = f"http://127.0.0.1:{receiver.server_address[1]}/hook"

conn = videodb.connect(api_key=KEY, base_url=BASE)
stream = conn.get_collection().get_rtstream(STREAM)
check(stream.id == STREAM, f"get_rtstream on another box's camera: {stream}")
index = stream.index_visuals(batch_config={"type": "time", "value": 2, "frame_count": 1}, name="site visuals")
event_id = conn.create_event(event_prompt="Detect person", label="person_on_site")
alert_id = index.create_alert(event_id, callback_url=hook_url)
check(bool(alert_id), "create_alert returns an id")

deadline = time.time() + 90
while time.time() < deadline:
    with lock:
        got = [h for h in hooks if h.get("alert_id") == alert_id or h.get("label") == "person_on_site"]
    if got:
        break
    time.sleep(0.5)
check(got, "no webhook for the alert within 90 s")
print(json.dumps({"alert_id": alert_id, "webhooks": len(got), "first": got[0]}))
