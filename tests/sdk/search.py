"""Searches a running sightline daemon's stream with VideoDB's own SDK
(`RTStream.search`, unpatched). Run by tests/sdk.rs with SIGHTLINE_URL,
SIGHTLINE_KEY_FILE, STREAM_ID and QUERY set; prints the shots as one JSON line.
"""
import json
import os

import videodb

conn = videodb.connect(
    api_key=open(os.environ["SIGHTLINE_KEY_FILE"]).read().strip(),
    base_url=os.environ["SIGHTLINE_URL"],
)
stream = conn.get_collection().get_rtstream(os.environ["STREAM_ID"])
result = stream.search(os.environ["QUERY"], result_threshold=5, score_threshold=0.5)
print(json.dumps([
    {"start": s.start, "end": s.end, "score": s.search_score, "text": s.text,
     "metadata": s.metadata, "rtstream_id": s.rtstream_id}
    for s in result.shots
]))
