"""Failures a user can act on, as data: what kind of failure, which input it concerns, and the fix.

The library, the engine and the application core raise them without naming any face. Each face renders
them in its own words (`mcp_face/errors.py`, `web/errors.py`, `cli.py`): the input `Term.VOICE` becomes
the argument `voice`, the field `voice` or the flag `--voice`; the action `Term.LIST_VOICES` becomes
"call list_voices", "GET /api/voices" or "`glmtts-mcp voices list`". Nothing rewrites sentences after
the fact: a message names a term through a `{term}` placeholder, and only known terms are substituted.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from enum import StrEnum
from typing import ClassVar

log = logging.getLogger(__name__)


class Kind(StrEnum):
    """What sort of failure: each face maps it to its own signal (an HTTP status, an exit code)."""

    INVALID = "invalid"  # an input that cannot be used as given
    NOT_FOUND = "not_found"  # what the input names does not exist
    CONFLICT = "conflict"  # the request clashes with what is stored
    UNSUPPORTED_MEDIA = "unsupported_media"  # bytes that are not audio
    TOO_LARGE = "too_large"  # an input over a size limit
    UNAVAILABLE = "unavailable"  # the model cannot serve now (failed load, unloaded mid-call)
    ENVIRONMENT = "environment"  # the machine refuses (a full disk, a folder that cannot be written)


class Term(StrEnum):
    """The inputs and actions a message may name; every face has a word for each."""

    # inputs
    TEXT = "text"
    VOICE = "voice"
    REFERENCE = "reference"  # the reference recording a voice is cloned from
    TRANSCRIPT = "transcript"
    LANGUAGE = "language"
    NAME = "name"
    SEED = "seed"
    TEMPERATURE = "temperature"  # the sampler's temperature (None: upstream's)
    TOP_P = "top_p"  # the sampler's nucleus size (None: upstream's)
    FORMAT = "format"
    ARCHIVE = "archive"
    DESTINATION = "destination"  # where an export is written
    MAX_TEXT_CHARS = "max_text_chars"  # the server's text limit (a setting)
    PRONUNCIATIONS = "pronunciations"  # pronunciation dictionary entries (text -> reading)
    SCRIPT = "script"  # a multi-voice script (text lines or structured items)
    MAX_SCRIPT_CHARS = "max_script_chars"  # the server's script limit (a setting)
    # actions
    LIST_VOICES = "list_voices"
    CLONE_VOICE = "clone_voice"
    EXPORT_VOICE = "export_voice"
    IMPORT_VOICE = "import_voice"
    RENAME_VOICE = "rename_voice"


Words = Callable[[Term], str]
"""A face's vocabulary: the words for a term (an argument name in backticks, a REST path, a flag)."""

_PLACEHOLDER = re.compile(r"\{(" + "|".join(t.value for t in Term) + r"|argument)\}")


_ACTIONS = frozenset({Term.LIST_VOICES, Term.CLONE_VOICE, Term.EXPORT_VOICE, Term.IMPORT_VOICE, Term.RENAME_VOICE})


def is_action(term: Term) -> bool:
    """Actions are things to do (a tool, a path, a command); the other terms are inputs."""
    return term in _ACTIONS


def neutral_words(term: Term) -> str:
    """The words of no particular face (logs, `str(error)`): inputs in backticks, actions by name."""
    return term.value if is_action(term) else f"`{term.value}`"


def render_text(text: str, words: Words, argument: Term | None = None) -> str:
    """`text` with its `{term}` placeholders in one face's words (warnings use it as errors do)."""

    def word(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "argument":
            return words(argument) if argument is not None else "the input"
        return words(Term(name))

    return _PLACEHOLDER.sub(word, text)


class UserError(Exception):
    """A failure the user can fix. `problem` says what is wrong, `fix` what to do; both may name terms as
    `{list_voices}` or `{voice}`, and `{argument}` stands for the input the error concerns."""

    kind: ClassVar[Kind] = Kind.INVALID
    concerns: ClassVar[Term | None] = None  # the input errors of this class are about, unless told otherwise

    def __init__(
        self, problem: str, fix: str | None = None, *, argument: Term | None = None, kind: Kind | None = None
    ) -> None:
        super().__init__(problem)
        self.problem = problem
        self.fix = fix
        self.argument = argument if argument is not None else self.concerns
        if kind is not None:
            self.kind = kind  # type: ignore[misc]  # an instance may be more specific than its class

    def render(self, words: Words) -> str:
        """The sentence in one face's words."""

        sentence = render_text(self.problem, words, self.argument)
        return f"{sentence}: {render_text(self.fix, words, self.argument)}" if self.fix else sentence

    def __str__(self) -> str:
        return self.render(neutral_words)


def internal_error(exc: BaseException) -> str:
    """Log `exc` with its traceback (stderr) and return the one line the user sees instead."""
    log.error("internal error: %s: %s", type(exc).__name__, exc, exc_info=exc)
    return (
        f"internal error ({type(exc).__name__}: {exc}); this is not something you did wrong: "
        "the server log has the details, please report it"
    )
