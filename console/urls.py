"""URL map: the dashboard at /, the API under /api/v1/, schema and docs under /api/,
Prometheus metrics at /metrics."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from console.metrics import views as metrics_views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
    path("api/v1/", include("console.api_urls")),
    path("metrics", metrics_views.metrics, name="metrics"),
    path("", include("dashboard.urls")),
]
