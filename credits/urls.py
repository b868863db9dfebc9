from django.urls import path

from . import views

app_name = "credits"
urlpatterns = [
    path("", views.buy, name="buy"),
    path("checkout/", views.checkout, name="checkout"),
    path("purchases/<uuid:purchase_id>/", views.purchase_done, name="purchase_done"),
    path("purchases/<uuid:purchase_id>/status/", views.purchase_status, name="purchase_status"),
    path("purchases/<uuid:purchase_id>/continue/", views.purchase_continue, name="purchase_continue"),
    path("test-checkout/<uuid:purchase_id>/", views.test_checkout, name="test_checkout"),
]
