"""VideoDB's Python SDK, unpatched, pointed at one box of a site, wires an
alert on a camera another box runs.

Run by tests/suite/fleet.rs with SIGHTLINE_URL (box 2), SIGHTLINE_KEY_FILE
(the site's key), STREAM_ID (a camera box 3 runs) and HOOK_URL (the test's
webhook receiver, which checks that the alert arrives). Prints one JSON line
with the alert id.
"""

import json
import os
import sys

import videodb

BASE = os.environ["SIGHTLINE_URL"]
KEY = open(os.environ["SIGHTLINE_KEY_FILE"]).read().strip()
STREAM = os.environ["STREAM_ID"]
HOOK = os.environ["HOOK_URL"]


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)


conn = videodb.connect(api_key=KEY, base_url=BASE)
stream = conn.get_collection().get_rtstream(STREAM)
check(stream.id == STREAM, f"get_rtstream on another box's camera: {stream}")
index = stream.index_visuals(batch_config={"type": "time", "value": 2, "frame_count": 1}, name="site visuals")
event_id = conn.create_event(event_prompt="Detect person", label="person_on_site")
alert_id = index.create_alert(event_id, callback_url=HOOK)
check(bool(alert_id), "create_alert returns an id")
alerts = index.list_alerts()
check(any(a.get("alert_id") == alert_id for a in alerts), f"list_alerts shows the new alert: {alerts}")
print(json.dumps({"alert_id": alert_id, "index_id": index.rtstream_index_id, "event_id": event_id}))
