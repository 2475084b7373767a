"""GLM-TTS inference, clean-room: text frontend, speech tokenizer, speaker embedding, LLM, flow, vocoder."""
