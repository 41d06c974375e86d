"""Device identity: certificates, CMS signatures, trust and the development CA."""
