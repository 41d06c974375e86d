# An example deployment of nanomdm-tw as a .tac file:  twistd -ny nanomdm.tac
#
# Use a .tac when a deployment wants Python rather than flags: several
# listeners, a custom service chain, extra services beside the server.
# This one reads the same NANOMDM_* environment variables as `twistd nanomdm`
# (NANOMDM_LISTEN, NANOMDM_API, NANOMDM_CA, NANOMDM_STORAGE, NANOMDM_STORAGE_DSN,
# NANOMDM_DEV, ...) so it can be configured from a systemd EnvironmentFile.

from twisted.application.service import Application

from nanomdm_tw.tap import Options, makeService

options = Options()
options.parseOptions([])  # no flags: everything comes from NANOMDM_* variables

application = Application("nanomdm-tw")
makeService(options).setServiceParent(application)
