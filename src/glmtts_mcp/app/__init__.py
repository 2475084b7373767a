"""The application core every face stands on: process state, the engine's life, voices and narrations."""
