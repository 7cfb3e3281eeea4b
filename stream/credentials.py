"""Access tokens and the app secret: validated at start, kept in memory, re-read when rotated.

``access_tokens_file`` (a JSON object of pixel id to token) and ``app_secret_file`` (the secret
as text) are read once when the settings are built; a missing file, malformed JSON, a value that
is not an object or an empty token is a :class:`ConfigError` naming the setting (exit 2), and
never quotes the file's content. Afterwards each file is looked at (``stat``) at most once per
``check_interval_s``; when its mtime, size or inode changed it is read again:

- a good read replaces the tokens (or the secret) at once, for the next request;
- a failed read (the file is gone, or half written by a non-atomic rotation) keeps the last good
  value and logs ONE warning naming the setting, however long the file stays broken; the file
  is tried again on the next check even if it did not change, so a partial read that happened
  within the writer's mtime tick still heals.

Worked example, a rotation written in place with ``open("w")`` then ``write``:
``t=0`` tokens A; ``t=5`` the writer truncates: the next check reads ``""``, warns once and
keeps A; ``t=5.01`` the writer finishes: the next check (``t>=6``) reads B and uses it.

Thread-safe: the deliverer calls :meth:`Credentials.token_for` from its request path.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import SecretStr

from stream.core.errors import ConfigError
from stream.logs import get_logger


def _log() -> Any:
    # a fresh proxy per (rare) use: never a logger cached before the test or CLI configured logs
    return get_logger("capi_stream.credentials")


T = TypeVar("T")

#: How often a credentials file is looked at for a change (seconds).
CHECK_INTERVAL_S = 1.0

Clock = Callable[[], float]


class _Invalid(ValueError):
    """A credentials file's content is unusable; the text says why, never what it holds."""


def parse_tokens(text: str) -> dict[str, SecretStr]:
    """The tokens of an ``access_tokens_file``: ``{"<pixel id>": "<token>", ...}``.

    >>> sorted(parse_tokens('{"111": " tok "}'))
    ['111']
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        # msg/line/column only: exc.doc is the file's content
        raise _Invalid(
            f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    if not isinstance(data, dict):
        raise _Invalid("must be a JSON object of pixel id to access token")
    tokens: dict[str, SecretStr] = {}
    for key, value in data.items():
        # name the pixel only when it looks like one: a swapped file would have tokens as keys
        which = f"pixel {key}" if key.isdigit() else "an entry"
        if not isinstance(value, str):
            raise _Invalid(f"the token of {which} is not a string")
        if not value.strip():
            raise _Invalid(f"the token of {which} is empty")
        if not key.strip():
            raise _Invalid("a pixel id is empty")
        tokens[key.strip()] = SecretStr(value.strip())
    return tokens


def parse_secret(text: str) -> SecretStr:
    """The app secret of an ``app_secret_file``: its text without surrounding whitespace."""
    secret = text.strip()
    if not secret:
        raise _Invalid("the file is empty")
    return SecretStr(secret)


@dataclass(frozen=True, slots=True)
class _Stamp:
    """What identifies one version of a file without reading it."""

    mtime_ns: int
    size: int
    inode: int


def _stamp(path: Path) -> _Stamp:
    st = os.stat(path)
    return _Stamp(st.st_mtime_ns, st.st_size, st.st_ino)


def _read(path: Path, parse: Callable[[str], T]) -> tuple[_Stamp, T]:
    """Stamp, read and parse one file; :class:`_Invalid` for any failure."""
    try:
        stamp = _stamp(path)
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise _Invalid("not UTF-8 text") from None
    except OSError as exc:
        raise _Invalid(f"cannot read {path}: {exc.strerror or type(exc).__name__}") from None
    return stamp, parse(text)


class WatchedFile(Generic[T]):
    """One credentials file: its last good value, re-read when the file changes."""

    def __init__(
        self,
        setting: str,
        path: Path,
        parse: Callable[[str], T],
        *,
        clock: Clock = time.monotonic,
        check_interval_s: float = CHECK_INTERVAL_S,
    ) -> None:
        """Read the file now; :class:`ConfigError` naming ``setting`` when it is unusable."""
        self.setting = setting
        self.path = path
        self._parse = parse
        self._clock = clock
        self._interval = check_interval_s
        self._lock = threading.Lock()
        try:
            self._stamp, self._value = _read(path, parse)
        except _Invalid as exc:
            raise ConfigError(f"{setting}: {exc}") from None
        self._checked_at = clock()
        self._failing = False
        self.reloads = 0

    @property
    def failing(self) -> bool:
        """True while the file's last read failed (the last good value is being used)."""
        return self._failing

    def get(self) -> T:
        """The current value: re-read first when due and the file changed (or last read failed)."""
        with self._lock:
            now = self._clock()
            if now - self._checked_at >= self._interval:
                self._checked_at = now
                self._refresh()
            return self._value

    def _refresh(self) -> None:
        try:
            if not self._failing and _stamp(self.path) == self._stamp:
                return
            stamp, value = _read(self.path, self._parse)
        except (_Invalid, OSError) as exc:
            if not self._failing:
                self._failing = True
                problem = exc if isinstance(exc, _Invalid) else (exc.strerror or "unreadable")
                _log().warning(
                    "credentials file unusable, keeping the last good value",
                    setting=self.setting, problem=str(problem),
                )  # fmt: skip
            return
        self._stamp, self._value = stamp, value
        self.reloads += 1
        if self._failing:
            self._failing = False
        _log().info("credentials file reloaded", setting=self.setting)


class Credentials:
    """Tokens per pixel and the app secret, from the settings' values and their files.

    Precedence is as documented in the README: a pixel's token from ``access_tokens``, else from
    ``access_tokens_file``, else ``access_token``; the secret from ``app_secret``, else its file.
    """

    def __init__(
        self,
        *,
        access_token: SecretStr | None = None,
        access_tokens: Mapping[str, SecretStr] | None = None,
        access_tokens_file: Path | None = None,
        app_secret: SecretStr | None = None,
        app_secret_file: Path | None = None,
        clock: Clock = time.monotonic,
        check_interval_s: float = CHECK_INTERVAL_S,
    ) -> None:
        """Validate and read the files now (:class:`ConfigError` naming the setting)."""
        self._default = access_token
        self._tokens = dict(access_tokens or {})
        self._secret = app_secret
        self.tokens_file: WatchedFile[dict[str, SecretStr]] | None = None
        self.secret_file: WatchedFile[SecretStr] | None = None
        if access_tokens_file is not None:
            self.tokens_file = WatchedFile(
                "CAPI_STREAM_ACCESS_TOKENS_FILE", access_tokens_file, parse_tokens,
                clock=clock, check_interval_s=check_interval_s,
            )  # fmt: skip
        if app_secret_file is not None and app_secret is None:
            self.secret_file = WatchedFile(
                "CAPI_STREAM_APP_SECRET_FILE", app_secret_file, parse_secret,
                clock=clock, check_interval_s=check_interval_s,
            )  # fmt: skip

    def __deepcopy__(self, memo: dict[int, object]) -> Credentials:
        # a provider of values, shared by copies of the settings (its lock cannot be copied)
        return self

    def token_for(self, pixel_id: str) -> SecretStr | None:
        """The access token for a pixel: its own, else the default one (None: no token)."""
        if pixel_id in self._tokens:
            return self._tokens[pixel_id]
        if self.tokens_file is not None:
            token = self.tokens_file.get().get(pixel_id)
            if token is not None:
                return token
        return self._default

    def secret(self) -> SecretStr | None:
        """The app secret, from the setting or its file (None: none configured)."""
        if self._secret is not None:
            return self._secret
        if self.secret_file is not None:
            return self.secret_file.get()
        return None
