from django.urls import path, register_converter

from . import share_views, views


class ShareIdConverter:
    regex = "[A-Za-z0-9_-]{22}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(ShareIdConverter, "share_id")

urlpatterns = [
    path("", views.studio, name="studio"),
    path("feed/", views.feed, name="feed"),
    path("history/", views.history, name="history"),
    path("g/<uuid:generation_id>/", views.generation_detail, name="generation_detail"),
    path("g/<uuid:generation_id>/card/", views.generation_card, name="generation_card"),
    path("g/<uuid:generation_id>/events/", views.generation_events, name="generation_events"),
    path("g/<uuid:generation_id>/cancel/", views.generation_cancel, name="generation_cancel"),
    path("g/<uuid:generation_id>/delete/", views.generation_delete, name="generation_delete"),
    path("g/<uuid:generation_id>/history-item/", views.history_item, name="history_item"),
    # The share page (CONTRACT): /i/<share id>, 22 URL-safe characters.
    path("i/<share_id:share_id>", share_views.share_page, name="share_page"),
    path("i/<uuid:media_id>/", share_views.legacy_share_page, name="media_share"),
    path("i/<uuid:media_id>/visibility/", views.media_visibility, name="media_visibility"),
    path("i/<uuid:media_id>/delete/", views.media_delete, name="media_delete"),
]
