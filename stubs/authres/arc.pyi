# ARC results (RFC 8617): parsed by FeatureContext(authres.arc).
