"""A system's login session: one token shared by every call, fetched by one login however many
calls wait for it, and forgotten when the system refuses it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


class Session:
    def __init__(self, login: Callable[[], Awaitable[str]]) -> None:
        self._login = login
        self._token: str | None = None
        # Made on first use: the lock belongs to the event loop of the calls.
        self._lock: asyncio.Lock | None = None
        self.logins = 0  # for operators' metrics and tests

    async def token(self) -> str:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            # Concurrent calls wait for one login instead of each logging in.
            if self._token is None:
                self._token = await self._login()
                self.logins += 1
            return self._token

    def forget(self, token: str) -> None:
        # Only the token that was refused: another task may already hold a fresh one.
        if self._token == token:
            self._token = None
