"""nanomdm-tw: an Apple MDM server on Twisted, drop-in compatible with NanoMDM."""

__version__ = "0.1.0"
