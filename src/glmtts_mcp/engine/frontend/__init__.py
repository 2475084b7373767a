"""Text and audio in: normalisation, tokenizers, reference clips, audio features."""
