"""Inbound verification: DKIM, SPF, DMARC and ARC of mail that is not ours, and the
Authentication-Results header that reports them."""
