from django.urls import path

from . import views

app_name = "accounts"
urlpatterns = [
    path("sign-in/", views.sign_in, name="sign_in"),
    path("code/", views.enter_code, name="enter_code"),
    path("sign-out/", views.sign_out, name="sign_out"),
    path("", views.account, name="account"),
    path("tokens/", views.token_create, name="token_create"),
    path("tokens/<uuid:token_id>/revoke/", views.token_revoke, name="token_revoke"),
    path("export/", views.account_export, name="export"),
    path("delete/", views.account_delete, name="delete"),
]
