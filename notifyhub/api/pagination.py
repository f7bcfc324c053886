from rest_framework.pagination import CursorPagination, PageNumberPagination


class Pagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class DeliveryCursorPagination(CursorPagination):
    """Stable pages over a message's deliveries however many there are (no OFFSET, no COUNT)."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500
    ordering = ("created_at", "id")
