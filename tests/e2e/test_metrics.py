"""`/metrics` of the native stack, read the way Prometheus reads it
(`prometheus_client`'s parser): joins through nginx move the counters of their outcome
and of their route template, no session id becomes a label value, the page is served on
the admin port without the admin key and not through the public proxy, and answers carry
a request id."""

import uuid

import requests
from prometheus_client.parser import text_string_to_metric_families


def scrape(stack):
    """The families of the admin port's /metrics, fetched as a scraper does (no key)."""
    response = requests.get(stack["admin_url"] + "/metrics", timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return list(text_string_to_metric_families(response.text))


def value(families, name, **labels):
    """Sum of the samples called `name` whose labels include `labels` (0 when none)."""
    return sum(sample.value
               for family in families
               for sample in family.samples
               if sample.name == name
               and all(sample.labels.get(key) == wanted for key, wanted in labels.items()))


def test_joins_through_the_proxy_move_their_outcome_and_route_counters(stack):
    before = scrape(stack)
    session = stack.create_session()
    stack.join(session, "meter-1")
    wrong_pin = ("1" if session["pin"].startswith("0") else "0") * len(session["pin"])
    refused = stack.public("POST", f"/api/v1/sessions/{session['id']}/join",
                           json={"pin": wrong_pin, "client": "meter-2"})
    assert refused.status_code == 401, refused.text
    malformed = stack.public("POST", f"/api/v1/sessions/{session['id']}/join",
                             data="{not json", headers={"content-type": "application/json"})
    assert malformed.status_code == 400, malformed.text
    after = scrape(stack)

    for outcome in ("ok", "wrong_pin", "bad_request"):
        moved = (value(after, "ism_joins_total", outcome=outcome)
                 - value(before, "ism_joins_total", outcome=outcome))
        assert moved == 1, f"ism_joins_total{{outcome={outcome}}} moved by {moved}"
    route = {"port": "public", "route": "/api/v1/sessions/{id}/join"}
    for status in ("200", "401", "400"):
        moved = (value(after, "ism_http_requests_total", status=status, **route)
                 - value(before, "ism_http_requests_total", status=status, **route))
        assert moved == 1, f"join answers {status} moved by {moved}"
    assert (value(after, "ism_join_duration_seconds_count")
            - value(before, "ism_join_duration_seconds_count")) == 2
    assert value(after, "ism_sessions_live") >= 1
    assert value(after, "ism_signer_duration_seconds_count", signer="local") >= 1
    assert value(after, "ism_journal_fsync_duration_seconds_count") >= 1

    label_values = [label for family in after for sample in family.samples
                    for label in sample.labels.values()]
    assert not [label for label in label_values if session["id"] in label], label_values
    documented = {family.name: family.documentation for family in after}
    assert documented.get("ism_joins"), "ism_joins_total has no HELP line"
    assert documented.get("ism_http_request_duration_seconds")


def test_metrics_are_not_served_through_the_public_proxy(stack):
    response = stack.public("GET", "/metrics")
    assert response.status_code == 404, response.text
    assert "ism_" not in response.text


def test_answers_through_the_proxy_carry_a_request_id(stack):
    response = stack.public("GET", "/healthz")
    assert response.status_code == 200
    request_id = response.headers.get("x-request-id")
    assert request_id, dict(response.headers)
    other = stack.public("GET", "/healthz").headers.get("x-request-id")
    assert other and other != request_id
    # Made by the service when nobody upstream set one.
    admin = stack.admin("GET", "/api/v1/sessions")
    uuid.UUID(admin.headers["x-request-id"])
