"""Getting benchmark data: pinned sources (sources.lock.yaml), download and verification (fetch), layouts."""
