"""``/api/openapi.json`` is kept true: schemathesis runs against a live server.

The document must list every route under ``/api/`` (checked against ``flask routes``),
and ``st run`` (coverage, fuzzing and stateful phases, every check) must find nothing
with a real user token: no 5xx, every status and body as documented.

The edge cases it found (integer overflow in paging parameters, a 405 without
``Allow``, an unchecked ``page_size`` or ``page`` with ``after_id``) are fixed and kept fixed by the
plain tests at the end.

This module is also the schemathesis hooks module of the run (``SCHEMATHESIS_HOOKS``).
"""

import os
import subprocess

import pytest
import requests
import schemathesis

from tests.support import BIN, ROOT, Server, retire, run

# A schema-valid cursor that names no message of the conversation: a documented 422.
UNKNOWN_CURSOR = b"after_id is not a message of this conversation"


@schemathesis.hook
def filter_failure(context, failure, case, response) -> bool:
    return not (getattr(failure, "code", "") == "ST202" and UNKNOWN_CURSOR in response.content)


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("openapi")
    srv = Server(workdir).start()
    srv.token = srv.host_jwt("openapi-user", "OpenAPI User")
    yield srv
    retire(srv)


def test_document_lists_every_api_route(api):
    doc = requests.get(api.url("/api/openapi.json"), timeout=10).json()
    assert doc["openapi"].startswith("3.")
    out = run([str(BIN / "flask"), "--app", "app", "routes"], api.env, check=True).stdout
    routes = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[-1].startswith("/api/"):
            for method in parts[1].split(","):
                if method not in {"HEAD", "OPTIONS"}:
                    routes.add((method.lower(), parts[-1]))
    documented = {(m, path) for path, ops in doc["paths"].items() for m in ops}
    assert routes, out
    assert routes <= documented, f"undocumented: {routes - documented}"
    assert documented <= routes, f"documented but not served: {documented - routes}"


def _config(api, path) -> str:
    path.write_text(
        f'[auth.openapi.bearerAuth]\nbearer = "{api.token}"\n\n'
        "[cache]\nenabled = false\n\n"  # no .schemathesis/ left in the work tree
        "[checks]\nenabled = true\n"  # every check (--checks all would beat the below)
        # A query string too long for gunicorn's request line is refused by gunicorn
        # (414, documented) before kefu can check it: a rejection like the others.
        "negative_data_rejection.expected-statuses = "
        '["400", "401", "403", "404", "405", "406", "409", "414", "415", "422", "428", '
        '"429", "5xx"]\n\n'
        # Whether an upload is accepted depends on its bytes (magic numbers agreeing
        # with the declared type), which a schema cannot say: a 422 for schema-valid
        # input is a documented outcome there.
        "[[operations]]\n"
        'include-operation-id = "upload"\n'
        "checks.positive_data_acceptance.expected-statuses = "
        '["2xx", "401", "403", "404", "409", "413", "422"]\n'
        # Multipart fields are untyped text on the wire: a "number" csrf_token or a
        # "boolean" visitor_id is the same bytes as a string, so it cannot be refused.
        "checks.negative_data_rejection.enabled = false\n"
    )
    return str(path)


def test_schemathesis_finds_nothing(api, tmp_path):
    command = [
        str(BIN / "st"),
        "--config-file",
        _config(api, tmp_path / "schemathesis.toml"),
        "run",
        api.url("/api/openapi.json"),
        "--max-examples",
        os.environ.get("KEFU_ST_EXAMPLES", "100"),
        "--request-timeout",
        "10",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path / "report"),
    ]
    if os.environ.get("KEFU_ST_SEED"):
        command += ["--seed", os.environ["KEFU_ST_SEED"]]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.test_openapi", "NO_COLOR": "1"}
    run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-5000:]
    assert requests.get(api.url("/healthz"), timeout=5).json()["ok"]


# -- edge cases schemathesis found, fixed ---------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        {"conversation_id": str(2**63)},
        {"after_id": str(2**63)},
        {"page": str(10**18), "page_size": "100"},
    ],
)
def test_out_of_range_integers_are_422(api, query):
    conv = api.get("/api/kefu/message/getConversation", api.token).json()["data"]
    params = {"conversation_id": conv["id"], **query}
    response = api.get("/api/kefu/message/list", api.token, params=params)
    assert response.status_code == 422, response.text
    limit = 1_000_000 if "page" in query else 2**63 - 1
    assert response.json()["message"].endswith(f"is too large (max {limit})")


def test_what_may_be_empty_is_documented_so_and_read_as_its_default(api):
    """``?page_size=`` reads as the default page size (kefu.params.number); schemathesis
    once reported that 200 as a schema breach, when the document did not say so. The
    other parameters refuse an empty value."""
    conv = api.get("/api/kefu/message/getConversation", api.token).json()["data"]
    document = requests.get(api.url("/api/openapi.json"), timeout=10).json()
    parameters = document["paths"]["/api/kefu/message/list"]["get"]["parameters"]
    may_be_empty = {p["name"] for p in parameters if p.get("allowEmptyValue")}
    assert may_be_empty == {"page", "page_size"}
    for name in ("page", "page_size", "after_id", "conversation_id"):
        params = {"conversation_id": conv["id"], name: ""}
        response = api.get("/api/kefu/message/list", api.token, params=params)
        assert response.status_code == (200 if name in may_be_empty else 422), (name, response.text)


def test_405_names_the_allowed_methods(api):
    response = requests.delete(api.url("/api/kefu/message/list"), timeout=10)
    assert response.status_code == 405
    assert response.json()["code"] == 405
    assert "GET" in response.headers.get("Allow", "")


@pytest.mark.parametrize(("page_size", "status"), [("0", 422), ("-1", 422), ("1000", 200)])
def test_after_id_checks_page_size(api, page_size, status):
    conv = api.get("/api/kefu/message/getConversation", api.token).json()["data"]
    params = {"conversation_id": conv["id"], "after_id": 0, "page_size": page_size}
    response = api.get("/api/kefu/message/list", api.token, params=params)
    assert response.status_code == status, response.text
    if status == 422:
        assert response.json()["message"] == "page_size must be 1 or more"


@pytest.mark.parametrize(
    ("page", "message"),
    [
        ("0", "page must be 1 or more"),
        ("-1", "page must be 1 or more"),
        ("13814171790", "page is too large (max 1000000)"),
    ],
)
def test_after_id_checks_page(api, page, message):
    conv = api.get("/api/kefu/message/getConversation", api.token).json()["data"]
    params = {"conversation_id": conv["id"], "after_id": 0, "page": page}
    response = api.get("/api/kefu/message/list", api.token, params=params)
    assert response.status_code == 422, response.text
    assert response.json()["message"] == message


def test_a_request_line_too_long_gets_the_documented_414(api):
    """gunicorn refuses a request line over 4094 bytes itself; the document says so."""
    params = [("conversation_id", str(n)) for n in range(800)]
    response = api.get("/api/kefu/message/list", api.token, params=params)
    assert response.status_code == 414
    document = requests.get(api.url("/api/openapi.json"), timeout=10).json()
    listed = document["paths"]["/api/kefu/message/list"]["get"]["responses"]
    assert "414" in listed
