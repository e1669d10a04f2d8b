"""Code every transformers-based backend shares (checkpoint folders, precision, adapters, batch size, decoding
settings), used by inference, fine-tuning and export alike; never a backend itself."""
