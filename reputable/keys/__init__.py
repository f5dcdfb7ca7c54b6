"""The DKIM key store: files on disk, the keyring loaded from them, DNS records for them."""
