"""schemathesis hooks of the gateway's fuzz test: ``model`` names a route of the caller's project, which a static
document cannot list. The test's project has one route, so the document is narrowed to it here: schema-valid
requests reach the backend, and a request naming any other route is one the gateway must refuse."""

import schemathesis

#: The route the test creates (test_fuzz.py).
ROUTE = "fuzz"


@schemathesis.hook
def before_load_schema(context, raw_schema):
    for path in ("/v1/chat/completions", "/v1/completions"):
        body = raw_schema["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        body["properties"]["model"] = {"type": "string", "enum": [ROUTE]}
