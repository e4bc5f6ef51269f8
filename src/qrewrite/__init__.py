"""qrewrite: train an LLM to rewrite e-commerce search queries for relevance and conversion."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("qrewrite")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"
