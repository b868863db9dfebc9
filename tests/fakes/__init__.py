"""Fakes of the HTTP services Stefna talks to (fal's queue, Cloudinary's upload API).

They sit at the HTTP edge, so the code under test is the code that ships. See
fal.py and cloudinary.py for their knobs and pytest_plugin.py for the fixtures.
"""
