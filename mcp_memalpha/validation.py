"""Pydantic's validation errors as our messages: every caller that turns one into an error
(tool arguments, settings, the auth file, an import) reads it through `validation_problems`."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError


@dataclass(frozen=True)
class Problem:
    loc: tuple[int | str, ...]  # where in the input: ('tokens', 1, 'name')
    kind: str  # pydantic's error type: 'missing', 'extra_forbidden', 'literal_error', ...
    message: str  # pydantic's message, without the 'Value error, ' a validator's ValueError gets

    @property
    def field(self) -> str:
        """The location as a dotted path ('' for the input as a whole)."""
        return ".".join(str(part) for part in self.loc)


def validation_problems(exc: ValidationError) -> list[Problem]:
    """Every problem pydantic found, in its order."""
    return [
        Problem(tuple(error["loc"]), error["type"], str(error["msg"]).removeprefix("Value error, "))
        for error in exc.errors(include_url=False)
    ]
