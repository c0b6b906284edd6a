"""schemathesis hooks of tests/api/test_fuzz.py: the uploads' binary media types are sent as the bytes generated
for them (their routes check the content: tar archives, Parquet files, CSV and JSON lines)."""

import schemathesis

for media_type in (
    "application/x-tar",
    "application/tar",
    "application/vnd.apache.parquet",
    "application/x-parquet",
    "application/jsonl",
    "application/x-ndjson",
    "application/x-jsonlines",
    "application/json-lines",
    "text/csv",
):
    schemathesis.serializer.alias(media_type, "application/octet-stream")
