"""What fal may keep of our users' photos and results (CONTRACT: "What reaches fal").

`X-Fal-Store-IO: 0` asks fal to keep no request history (inputs and outputs) of the
call, and the object-lifecycle preference bounds how long fal keeps the result files
it hands back: long enough for our copy (with retries) to be made, no longer.
"""

from __future__ import annotations

import json

from django.conf import settings


def submission_headers() -> dict[str, str]:
    return {
        "X-Fal-Store-IO": "0",
        "X-Fal-Object-Lifecycle-Preference": json.dumps(
            {"expiration_duration_seconds": settings.FAL_RESULT_RETENTION_SECONDS}
        ),
    }
