"""mvleval: reproducible evaluation of multilingual vision-LLMs (mBLIP, any Hugging Face vision-LLM, served models)."""

__version__ = "0.2.0"
#: The first version whose data fingerprint hashes each image's content (0.1.x hashed image names only).
IMAGE_CONTENT_FINGERPRINT_SINCE = (0, 2)
