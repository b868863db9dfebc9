import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stefna.settings")
# Bodies are bounded before Django's handler reads them (stefna/body_limits.py).
from stefna.body_limits import BoundedBodyASGI  # noqa: E402

application = BoundedBodyASGI(get_asgi_application())
