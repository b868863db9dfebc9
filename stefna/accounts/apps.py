from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "stefna.accounts"
    label = "accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        # Registers Stefna's production-configuration system checks (stefna/checks.py).
        from stefna import checks  # noqa: F401
