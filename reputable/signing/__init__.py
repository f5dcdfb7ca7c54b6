"""DKIM signing (RFC 6376, RFC 8463): canonicalization, header selection, signatures. Pure.

Nothing here reads files, the network or the clock: keys arrive loaded, time
arrives as a parameter, and messages arrive as bytes.
"""
