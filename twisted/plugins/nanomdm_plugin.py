from twisted.application.service import ServiceMaker

nanomdm = ServiceMaker(
    "nanomdm-tw", "nanomdm_tw.tap", "An Apple MDM server, drop-in compatible with NanoMDM", "nanomdm"
)
