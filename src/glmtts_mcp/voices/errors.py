"""Errors of the voice library; every message names the problem and the fix."""

from __future__ import annotations


class VoiceLibraryError(Exception):
    """Base class: something the caller can act on, described in the message."""


class VoiceNotFound(VoiceLibraryError):
    """No voice has this id or name (or it was deleted meanwhile)."""


class InvalidVoiceName(VoiceLibraryError):
    """A name, id, tag or cursor that cannot be used (unsafe or malformed)."""


class VoiceExists(VoiceLibraryError):
    """The requested name already belongs to another voice."""


class BrokenVoice(VoiceLibraryError):
    """A voice whose files are missing, corrupt or do not match the feature schema."""


class StaleVoice(VoiceLibraryError):
    """A voice stored under another feature-schema version and no way to re-extract it here."""


class ArchiveError(VoiceLibraryError):
    """A voice archive that is hostile, corrupt or incompatible; nothing was imported."""
