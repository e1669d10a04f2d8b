"""Small helpers every room uses: user errors (one paragraph, exit 2), optional extras, file permissions, numerics,
YAML reading, where caches and the default data root live."""
