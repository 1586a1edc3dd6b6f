"""Validates MQTT discovery messages with Home Assistant's own code.

Usage: validate.py PREFIX MESSAGES.json, where the file holds a list of
{"topic": ..., "payload": ...} as a subscriber received them (retained
discovery configs). Each goes through the steps Home Assistant 2024.1's
MQTT discovery takes (homeassistant/components/mqtt/discovery.py: the topic
pattern, the supported components, abbreviations, the origin schema), then
through the DISCOVERY_SCHEMA of its platform module. Those schemas drop
unknown keys silently (vol.REMOVE_EXTRA), so a key the schema dropped is
reported as an error too: a misspelt option would otherwise pass unseen.

Prints {"validated": {component: count}, "errors": [...]} and exits 1 if
any message failed.
"""

import importlib
import json
import sys

# Imported first, as Home Assistant's own start-up does: importing the MQTT
# integration straight away trips a circular import in websocket_api.
import homeassistant.components.persistent_notification  # noqa: F401
from homeassistant.components.mqtt import discovery
from homeassistant.components.mqtt.abbreviations import (
    ABBREVIATIONS,
    DEVICE_ABBREVIATIONS,
    ORIGIN_ABBREVIATIONS,
)


def expand(payload):
    out = {ABBREVIATIONS.get(k, k): v for k, v in payload.items()}
    if isinstance(out.get("device"), dict):
        out["device"] = {DEVICE_ABBREVIATIONS.get(k, k): v for k, v in out["device"].items()}
    if isinstance(out.get("origin"), dict):
        out["origin"] = {ORIGIN_ABBREVIATIONS.get(k, k): v for k, v in out["origin"].items()}
    return out


def check(prefix, topic, text):
    trimmed = topic.replace(f"{prefix}/", "", 1)
    match = discovery.TOPIC_MATCHER.match(trimmed)
    if not match:
        return None, f"{topic}: not a legal discovery topic"
    component = match.group("component")
    if component not in discovery.SUPPORTED_COMPONENTS:
        return None, f"{topic}: component {component} is not supported"
    try:
        payload = expand(json.loads(text))
    except ValueError as e:
        return None, f"{topic}: not JSON: {e}"
    if "origin" in payload:
        try:
            discovery.MQTT_ORIGIN_INFO_SCHEMA(payload["origin"])
        except Exception as e:  # noqa: BLE001 - Home Assistant rejects it the same way
            return None, f"{topic}: origin: {e}"
    payload["platform"] = "mqtt"
    module = importlib.import_module(f"homeassistant.components.mqtt.{component}")
    try:
        validated = module.DISCOVERY_SCHEMA(dict(payload))
    except Exception as e:  # noqa: BLE001 - voluptuous raises several kinds
        return None, f"{topic}: {e}"
    dropped = sorted(set(payload) - set(validated) - {"platform"})
    if dropped:
        return None, f"{topic}: keys the schema does not know (dropped): {dropped}"
    device = payload.get("device") or {}
    dropped = sorted(set(device) - set(validated.get("device") or {}))
    if dropped:
        return None, f"{topic}: device keys dropped: {dropped}"
    return component, None


def main():
    prefix, path = sys.argv[1], sys.argv[2]
    with open(path, encoding="utf-8") as f:
        messages = json.load(f)
    counts, errors = {}, []
    for m in messages:
        component, error = check(prefix, m["topic"], m["payload"])
        if error:
            errors.append(error)
        else:
            counts[component] = counts.get(component, 0) + 1
    print(json.dumps({"validated": counts, "errors": errors}))
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
