"""The one redaction every layer uses before anything leaves the process.

Owns how secrets are masked in what we print, log, store for display and publish: passwords in
URLs (`user:password@`), the values of secret query parameters (`?token=`, names from
`SECRET_QUERY_PARAMS`), `password=` in key=value DSNs, webhook URLs as a whole (a Slack webhook's
path is its secret), and any known secret value (API key, database and Redis passwords, the
webhook URL) found anywhere in a string. `RedactingFilter` applies it to every log record.
It must not change a URL used to connect or an identity stored in the database: callers redact
copies meant for people. It imports nothing of the project but is imported by settings, so it
reads its parameter names through a setter (`configure`) rather than from the settings.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from urllib.parse import unquote_plus, urlsplit, urlunsplit

MASK = "***"
DEFAULT_SECRET_QUERY_PARAMS = (
    "token,key,apikey,api_key,access_token,auth,sig,signature,password,secret,client_secret"
)

_secret_params: frozenset[str] = frozenset(DEFAULT_SECRET_QUERY_PARAMS.split(","))
_known_secrets: tuple[str, ...] = ()

# A URL with a scheme, up to whitespace or a character that ends a URL in prose or markup.
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]+")
# key=value DSN passwords: password=secret, password='se cret', PASSWORD = secret
DSN_PASSWORD = re.compile(r"(?i)\b(\w*password|passwd|pwd)(\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s'&;]+)")


def parse_param_names(value: str | Iterable[str] | None) -> frozenset[str]:
    """The lower-cased, non-empty names of a comma-separated list (or an iterable of names)."""
    if value is None:
        return frozenset()
    items = value.split(",") if isinstance(value, str) else list(value)
    return frozenset(str(i).strip().lower() for i in items if str(i).strip())


def configure(
    secret_params: str | Iterable[str] | None = None, secrets: Iterable[str | None] = ()
) -> None:
    """Set the secret query parameter names and the known secret values for this process.

    Secrets shorter than 4 characters are ignored (masking "a" everywhere would mangle text).
    """
    global _secret_params, _known_secrets
    if secret_params is not None:
        _secret_params = parse_param_names(secret_params)
    found = {s for s in secrets if s and len(s) >= 4}
    # Longest first: a webhook URL is masked whole before a shorter secret inside it.
    _known_secrets = tuple(sorted(found, key=len, reverse=True))


def secret_param_names() -> frozenset[str]:
    """The query parameter names whose values are masked (lower case)."""
    return _secret_params


def redact_url(url: str | None, secret_params: Iterable[str] | None = None) -> str:
    """`url` as written, with its password and the values of secret query parameters masked.

    `user:password@host` becomes `user:***@host`; `?token=abc&page=2` becomes
    `?token=***&page=2` (names compared case-insensitively). Everything else is kept
    character for character; a local path keeps everything but its secret query values.
    """
    if not url:
        return ""
    names = _secret_params if secret_params is None else parse_param_names(secret_params)
    try:
        parts = urlsplit(url)
    except ValueError:
        return _mask_query_text(url, names)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, sep, _password = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{hostport}" if sep else netloc
    query = _mask_query(parts.query, names)
    fragment = _mask_query(parts.fragment, names) if "=" in parts.fragment else parts.fragment
    if netloc == parts.netloc and query == parts.query and fragment == parts.fragment:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


def _mask_query(query: str, names: frozenset[str]) -> str:
    if not query:
        return query
    out = []
    for pair in re.split(r"([&;])", query):
        name, eq, value = pair.partition("=")
        if eq and value and _unquote_name(name) in names:
            pair = f"{name}={MASK}"
        out.append(pair)
    return "".join(out)


def _unquote_name(name: str) -> str:
    return unquote_plus(name).strip().lower()


def _mask_query_text(text: str, names: frozenset[str]) -> str:
    query = text.partition("?")[2]
    return text.replace(query, _mask_query(query, names)) if query else text


def redact_dsn(text: str | None) -> str:
    """A database or broker DSN with its password masked: URL form or key=value form."""
    if not text:
        return ""
    if "://" in text:
        return redact_url(text, _secret_params | {"password", "sslpassword"})
    return DSN_PASSWORD.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)


def redact_webhook(url: str | None) -> str:
    """Only the scheme and host of a webhook URL ("https://hooks.slack.com/…"): its path,
    query and any credentials are the secret."""
    if not url:
        return ""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return f"{MASK}"
    return f"{parts.scheme}://{host}/…" if parts.scheme and host else MASK


def redact_text(text: str, secrets: Iterable[str | None] | None = None) -> str:
    """`text` with every known secret value masked and every URL in it passed through
    `redact_url`, and key=value `password=` masked.

    `secrets`: the values to mask (None: those given to `configure`, which the settings set
    from the API key, the database, broker and Redis passwords, and the webhook URL).
    """
    if not text:
        return text
    known = (
        _known_secrets
        if secrets is None
        else sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)
    )
    for secret in known:
        if secret in text:
            text = text.replace(secret, MASK)
    if "://" in text:
        text = _URL.sub(lambda m: redact_url(m.group(0)), text)
    if "=" in text:
        text = DSN_PASSWORD.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
    return text


def url_secrets(url: str | None) -> list[str]:
    """The secret parts of a URL to add to the known secrets: its password and the values of
    its secret query parameters."""
    if not url:
        return []
    try:
        parts = urlsplit(url)
        found = [parts.password] if parts.password else []
    except ValueError:
        return []
    for pair in re.split(r"[&;]", parts.query):
        name, eq, value = pair.partition("=")
        if eq and value and _unquote_name(name) in _secret_params:
            found.append(value)
    return [s for s in found if s]


class RedactingFilter(logging.Filter):
    """A logging filter that redacts every record's message and arguments (never drops one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is logging's to report
            return True
        clean = redact_text(message)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        return True


def install_log_redaction(*, quiet_http: bool = True) -> None:
    """Redact every log record this process emits, on every handler of the root logger and on
    the loggers that print URLs; keep httpx/httpcore at WARNING (their INFO line is the full
    request URL, a webhook's secret)."""
    flt = _FILTER
    root = logging.getLogger()
    for handler in root.handlers:
        if flt not in handler.filters:
            handler.addFilter(flt)
    for name in ("", "httpx", "httpcore", "celery", "celery.app.trace", "aml"):
        logger = logging.getLogger(name)
        if flt not in logger.filters:
            logger.addFilter(flt)
    if quiet_http:
        for name in ("httpx", "httpcore"):
            logger = logging.getLogger(name)
            if logger.level == logging.NOTSET or logger.level < logging.WARNING:
                logger.setLevel(logging.WARNING)


_FILTER = RedactingFilter("aml.redact")
