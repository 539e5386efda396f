"""The RAG worker service that the ragbuild image ships."""
