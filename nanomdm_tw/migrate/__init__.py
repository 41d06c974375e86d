"""
Moving a NanoMDM deployment's data into nanomdm-tw (``nanomdm-tw-migrate``).

A source (``filekv``: NanoMDM's key-value folder; ``filestore``: its
deprecated file folder; ``sqlsource``: a NanoMDM MySQL/PostgreSQL database,
or ours) yields the records of ``records``; the
writer (``writer``) copies them into one of our SQL backends, or
``nano2nano`` sends the enrollments' check-ins to another server's
``/migration`` endpoint, as NanoMDM's nano2nano does.
"""
