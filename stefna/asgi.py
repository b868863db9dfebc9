import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stefna.settings")

import django  # noqa: E402

django.setup(set_prefix=False)

# Bodies are bounded before Django's handler reads them (stefna/body_limits.py); sync
# views are served in one trip to a thread (stefna/asgi_handler.py).
from stefna.asgi_handler import SyncFirstASGIHandler  # noqa: E402
from stefna.body_limits import BoundedBodyASGI  # noqa: E402

application = BoundedBodyASGI(SyncFirstASGIHandler())
