from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "stefna.accounts"
    label = "accounts"
    verbose_name = "Accounts"
