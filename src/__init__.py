"""Source tree shipped in the rag-worker image (copied to /app/src)."""
