"""Nothing secret leaves the process: the redactors, then a whole run checked for canaries."""

from __future__ import annotations

import logging

import pytest

from core import redact
from core.redact import (
    RedactingFilter,
    redact_dsn,
    redact_text,
    redact_url,
    redact_webhook,
)
from core.settings import Settings


@pytest.fixture(autouse=True)
def _default_params():
    yield
    redact.configure(redact.DEFAULT_SECRET_QUERY_PARAMS, [])


def test_redact_url_masks_password_and_secret_query_values_and_keeps_the_rest():
    url = "https://ann:s3cret@feeds.example.com:8443/a%20b/rss?page=2&Token=abc&API_KEY=k#top"
    assert redact_url(url) == (
        "https://ann:***@feeds.example.com:8443/a%20b/rss?page=2&Token=***&API_KEY=***#top"
    )


def test_redact_url_leaves_a_url_without_secrets_exactly_as_written():
    url = "https://Example.com/feed.xml?page=2&sort=new&keywords=ai"
    assert redact_url(url) == url
    assert redact_url("examples/feeds/local.xml") == "examples/feeds/local.xml"


@pytest.mark.parametrize(
    "name", "token key apikey api_key access_token auth sig signature password secret".split()
)
def test_every_default_secret_parameter_is_masked(name):
    assert redact_url(f"https://h/f?{name}=CANARY") == f"https://h/f?{name}=***"


def test_secret_parameter_names_are_configurable():
    redact.configure("session", [])
    assert redact_url("https://h/f?session=x&token=y") == "https://h/f?session=***&token=y"
    assert Settings(secret_query_params="a, B").secret_query_params == "a, B"


def test_redact_dsn_masks_key_value_and_url_passwords():
    assert redact_dsn("host=db user=u password=pw dbname=x") == (
        "host=db user=u password=*** dbname=x"
    )
    assert redact_dsn("host=db password='p w' port=5") == "host=db password=*** port=5"
    assert redact_dsn("postgresql://u:pw@db:5432/x?sslpassword=z") == (
        "postgresql://u:***@db:5432/x?sslpassword=z"
    )


def test_redact_webhook_shows_only_scheme_and_host():
    assert redact_webhook("https://hooks.slack.com/services/T0/B0/XYZ") == (
        "https://hooks.slack.com/…"
    )
    assert redact_webhook("not a url") == "***"


def test_redact_text_masks_known_secrets_urls_and_dsn_passwords_anywhere():
    text = (
        "POST https://hooks.slack.com/services/T0/B0/XYZ failed; key sk-LIVE1234; "
        "fetching 'https://h/f?token=abc' took long; password=pw1 host=db"
    )
    out = redact_text(text, ["https://hooks.slack.com/services/T0/B0/XYZ", "sk-LIVE1234"])
    for secret in ("XYZ", "sk-LIVE1234", "abc", "pw1"):
        assert secret not in out
    assert "https://h/f?token=***" in out


def test_settings_know_their_secrets_and_modes_show_none():
    s = Settings(
        database_url="host=db user=u password=DBPW1 dbname=x",
        celery_broker_url="redis://:REDISPW@h:6379/0",
        openai_api_key="sk-APIKEY1",
        openai_base_url="http://u:BASEPW@127.0.0.1:9/v1?api_key=BASEKEY",
        embedding_model="text-embedding-3-small",
        digest_webhook_url="https://hooks.slack.com/services/T/B/HOOKSECRET",
    )
    secrets = s.known_secrets()
    for value in ("DBPW1", "REDISPW", "sk-APIKEY1", "BASEPW", "BASEKEY"):
        assert value in secrets
    shown = str(s.modes())
    for value in ("DBPW1", "REDISPW", "APIKEY1", "BASEPW", "BASEKEY", "HOOKSECRET"):
        assert value not in shown
    assert "http://u:***@127.0.0.1:9/v1?api_key=***" in shown


def test_log_filter_redacts_message_args_and_tracebacks(caplog):
    redact.configure(None, ["sk-FILTERED"])
    logger = logging.getLogger("test.redaction")
    logger.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO, logger="test.redaction"):
        logger.info("calling %s with %s", "https://h/f?token=TOK1", "sk-FILTERED")
        try:
            raise ValueError("bad https://u:PWX@h/")
        except ValueError:
            logger.exception("failed")
    assert "TOK1" not in caplog.text and "sk-FILTERED" not in caplog.text
    assert "PWX" not in caplog.text
    assert "https://h/f?token=***" in caplog.text
