"""The Apple MDM protocol model: enrollments, check-in messages, commands and reports."""
