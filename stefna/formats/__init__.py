"""Our date and time formats, read before Django's own (settings.FORMAT_MODULE_PATH).

Only what differs from Django's is set here; the rest falls through to Django's modules.
"""
