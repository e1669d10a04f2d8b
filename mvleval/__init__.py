"""mvleval: reproducible evaluation of multilingual vision-LLMs (mBLIP and other BLIP-2 models)."""

__version__ = "0.1.0"
