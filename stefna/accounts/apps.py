from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AccountsConfig(AppConfig):
    name = "stefna.accounts"
    label = "accounts"
    verbose_name = _("Accounts")

    def ready(self) -> None:
        # Registers Stefna's production-configuration system checks (stefna/checks.py).
        from stefna import checks  # noqa: F401
