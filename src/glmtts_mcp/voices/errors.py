"""Errors of the voice library; every message names the problem and the fix."""

from __future__ import annotations

from glmtts_mcp.errors import Kind, Term, UserError


class VoiceLibraryError(UserError):
    """Base class: something the caller can act on, described in the message."""


class VoiceNotFound(VoiceLibraryError):
    """No voice has this id or name (or it was deleted meanwhile)."""

    kind = Kind.NOT_FOUND
    concerns = Term.VOICE


class InvalidVoiceName(VoiceLibraryError):
    """A name, id, tag or cursor that cannot be used (unsafe or malformed)."""


class VoiceExists(VoiceLibraryError):
    """The requested name already belongs to another voice."""

    kind = Kind.CONFLICT
    concerns = Term.NAME


class BrokenVoice(VoiceLibraryError):
    """A voice whose files are missing, corrupt or do not match the feature schema."""

    kind = Kind.CONFLICT


class StaleVoice(VoiceLibraryError):
    """A voice stored under another feature-schema version and no way to re-extract it here."""

    kind = Kind.CONFLICT


class ArchiveError(VoiceLibraryError):
    """A voice archive that is hostile, corrupt or incompatible; nothing was imported."""

    concerns = Term.ARCHIVE
