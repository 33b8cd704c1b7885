"""The admin API's one error: a status and a message, answered as `{"error": message}` (`admin.api`)."""

from __future__ import annotations


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
