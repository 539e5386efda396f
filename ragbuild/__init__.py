"""ragbuild: build, tag, push and verify the RAG worker's Docker image."""

__version__ = "0.1.0"
