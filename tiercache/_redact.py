"""The one rule for showing a URL: its password never reaches a repr, an error or a log."""

from __future__ import annotations

import re

__all__ = ["MASK", "redact", "redact_repr"]

MASK = "***"
"""What a password is replaced by."""

# A query parameter whose name ends in password/passwd/pwd (psycopg's sslpassword
# and ODBC's PWD included), up to the next separator or fragment.
_QUERY_SECRET = re.compile(r"(?i)((?:^|[?&;])[\w.\-]*(?:password|passwd|pwd)=)[^&;#]*")


def redact(url: str) -> str:
    """Return ``url`` with every password replaced by ``***``.

    Both spellings are covered: the userinfo's ``user:password@`` (also
    ``:password@``, and a password holding ``@`` or ``/``) and query
    parameters such as ``?password=`` or ``&sslpassword=``. The user name,
    host, path and the other parameters are kept, so the result still says
    which server is meant. Text that is not a URL comes back with only its
    ``password=`` parameters masked.
    """
    url = _QUERY_SECRET.sub(r"\1" + MASK, url)
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    # The host cannot hold "@", so the userinfo ends at the last "@" before the
    # query: a password may hold "@" or "/" when its writer did not encode them.
    end = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    at = rest.rfind("@", 0, end)
    if at < 0:
        return url
    user, colon, _password = rest[:at].partition(":")
    if not colon or "/" in user:  # no password; or the "@" is in a path (sqlite:///a@b.db)
        return url
    return f"{scheme}://{user}:{MASK}{rest[at:]}"


def redact_repr(value: object) -> str:
    """``repr(value)`` for an error message, with a ``str`` or ``bytes`` URL's password masked.

    For options that should have been a URL but may be anything (``6379``,
    ``b"redis://..."``): the message shows what was passed, minus its secret.
    """
    if isinstance(value, str):
        return repr(redact(value))
    if isinstance(value, (bytes, bytearray)):
        text = bytes(value).decode("utf-8", "backslashreplace")
        return "b" + repr(redact(text))
    return repr(value)
