"""Verification of received mail: DKIM (and, to come, SPF, DMARC, ARC) for inbound messages."""
