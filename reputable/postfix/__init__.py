"""Postfix as reputable needs it: its milter settings read through postconf, and what to change."""
