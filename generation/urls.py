from django.urls import path

from . import views

urlpatterns = [
    path("", views.studio, name="studio"),
    path("feed/", views.feed, name="feed"),
    path("history/", views.history, name="history"),
    path("g/<uuid:generation_id>/", views.generation_detail, name="generation_detail"),
    path("g/<uuid:generation_id>/card/", views.generation_card, name="generation_card"),
    path("g/<uuid:generation_id>/cancel/", views.generation_cancel, name="generation_cancel"),
    path("g/<uuid:generation_id>/delete/", views.generation_delete, name="generation_delete"),
    path("i/<uuid:media_id>/", views.media_share, name="media_share"),
    path("i/<uuid:media_id>/visibility/", views.media_visibility, name="media_visibility"),
    path("i/<uuid:media_id>/delete/", views.media_delete, name="media_delete"),
]
