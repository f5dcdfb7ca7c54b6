# DMARC results (RFC 7489): parsed by FeatureContext(authres.dmarc).
