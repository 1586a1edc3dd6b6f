"""Searches a running sightline daemon's stream with VideoDB's own SDK
(`RTStream.search`, unpatched). Run by tests/suite/sdk.rs with SIGHTLINE_URL,
SIGHTLINE_KEY_FILE, STREAM_ID and QUERY set; prints the shots, with the
clip URLs `generate_stream` returns for them, as one JSON line.
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
shots = []
for s in result.shots:
    shot = {"start": s.start, "end": s.end, "score": s.search_score, "text": s.text,
            "metadata": s.metadata, "rtstream_id": s.rtstream_id}
    # The clip of the shot (it asks with the shot's own times), and of the
    # same span asked through RTStream.generate_stream in Unix seconds.
    shot["shot_stream_url"] = s.generate_stream()
    shot["shot_player_url"] = s.player_url
    # RTStream.generate_stream returns the player page and keeps the playlist.
    shot["stream_player_url"] = stream.generate_stream(int(s.start) - 1, int(s.end) + 2)
    shot["stream_url"] = stream.stream_url
    shots.append(shot)
print(json.dumps(shots))
