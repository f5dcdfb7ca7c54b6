"""reputable: DKIM-signs outbound mail and keeps a self-hosted mail server reputable."""

__version__ = "0.1.0"
