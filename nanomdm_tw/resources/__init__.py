"""twisted.web resource trees for the MDM endpoints and the API."""
