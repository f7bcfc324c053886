"""Request and response examples for the OpenAPI document."""
_MSG_ID = "6f1c2a4e-3b7d-4c1e-9a55-0d2f6b8e9c10"
_DELIVERY_ID = "0b8e7c64-1a2f-4d3e-8f90-5c6b7a8d9e01"

SEND_REQUEST = {
    "template": "welcome",
    "to": [{"external_id": "user-42", "email": "ada@example.com", "name": "Ada", "locale": "en",
            "timezone": "Europe/London"}, "user-7"],
    "context": {"name": "Ada"},
    "channels": ["email", "inapp"],
}
DELIVERY = {
    "id": _DELIVERY_ID, "recipient": "user-42", "channel": "email", "address": "ada@example.com",
    "status": "queued", "reason": "", "detail": "", "attempts": 0, "next_attempt_at": None,
    "channel_account": None, "provider_message_id": "", "sent_at": None, "lane": "bulk", "fallback_from": None,
    "explain": ["category account default for email: allowed", "address: ada@example.com",
                "queued for email to ada@example.com"],
}
MESSAGE = {
    "id": _MSG_ID, "template": "welcome", "status": "processing", "priority": "normal", "context": {"name": "Ada"},
    "channels": ["email", "inapp"], "send_at": None, "recipient_count": 2, "idempotency_key": "order-1001",
    "created_at": "2026-11-28T08:00:00Z", "completed_at": None,
}
_DELIVERIES_URL = f"https://notify.example.com/api/v1/messages/{_MSG_ID}/deliveries"
SEND_ACCEPTED = {**MESSAGE, "deliveries": [DELIVERY], "deliveries_more": False, "deliveries_url": _DELIVERIES_URL}
SEND_ERRORS = {
    "template": ["Object with key=welcom does not exist."],
    "to": {"1": ["Unknown recipient 'user-9'; send an object with contact details to create it."]},
    "context": {"name": ["Required by template welcome."]},
}
MESSAGE_LIST = {"count": 1, "next": None, "previous": None, "results": [MESSAGE]}
MESSAGE_DETAIL = {
    **MESSAGE, "status": "sent", "completed_at": "2026-11-28T08:00:02Z",
    "deliveries": [{
        **DELIVERY, "status": "sent", "attempts": 1, "channel_account": "smtp-main",
        "sent_at": "2026-11-28T08:00:01Z", "content": {"subject": "Welcome, Ada", "text": "Hello Ada"},
        "events": [
            {"at": "2026-11-28T08:00:00Z", "status": "queued", "detail": "queued for email to ada@example.com"},
            {"at": "2026-11-28T08:00:01Z", "status": "sending", "detail": "attempt 1"},
            {"at": "2026-11-28T08:00:01Z", "status": "sent", "detail": "attempt 1: sent"},
        ],
    }],
    "deliveries_more": False, "deliveries_url": _DELIVERIES_URL,
}
DELIVERY_PAGE = {
    "next": f"{_DELIVERIES_URL}?cursor=cD0yMDI2LTExLTI4KzA4JTNBMDAlM0EwMC4wMDAwMDAlMkIwMCUzQTAw",
    "previous": None, "results": MESSAGE_DETAIL["deliveries"],
}
CANCEL_RESULT = {"cancelled": 3, "message": {**MESSAGE, "status": "cancelled"}}
RECIPIENT = {
    "external_id": "user-42", "name": "Ada", "locale": "en", "timezone": "Europe/London",
    "quiet_hours": {"start": "22:00", "end": "08:00"}, "data": {"plan": "pro"},
    "contacts": [{"id": 1, "kind": "email", "address": "ada@example.com", "app": "", "label": "", "active": True,
                  "deactivated_reason": "", "created_at": "2026-11-28T08:00:00Z"}],
    "created_at": "2026-11-28T08:00:00Z", "updated_at": "2026-11-28T08:00:00Z",
}
RECIPIENT_LIST = {"count": 1, "next": None, "previous": None, "results": [RECIPIENT]}
RECIPIENT_UPSERT = {"name": "Ada", "email": "ada@example.com", "phone": "+447911123456", "locale": "en",
                    "timezone": "Europe/London", "quiet_hours": {"start": "22:00", "end": "08:00"},
                    "data": {"plan": "pro"}}
PREFERENCES = {"preferences": [
    {"category": "marketing", "channel": None, "enabled": False},
    {"category": None, "channel": "sms", "enabled": False},
]}
TEMPLATE = {
    "key": "welcome", "name": "Welcome", "category": "account", "variables": ["name"],
    "content": {
        "email": {"subject": "Welcome, {{ name }}", "text": "Hello {{ name }}!", "html": "<p>Hello {{ name }}!</p>"},
        "inapp": {"title": "Welcome", "body": "Hello {{ name }}!", "url": "/start"},
        "webhook": {"payload": {"event": "welcome", "name": "{{ name }}"}},
    },
    "translations": {"zh-CN": {"inapp": {"title": "欢迎", "body": "{{ name }}，你好！", "url": "/start"}}},
    "sample_context": {"name": "Ada"}, "active": True,
}
CATEGORY = {"key": "marketing", "name": "Marketing", "description": "News and offers", "critical": False,
            "channel_defaults": {"sms": False}}
CHANNEL = {"name": "smtp-main", "kind": "email", "backend": "smtp",
           "options": {"host": "smtp.example.com", "port": 587, "security": "starttls",
                       "username": "notifyhub", "from_email": "noreply@example.com"},
           "secrets": {"password": "s3cret"}, "enabled": True, "priority": 10}

CONTACT_POINT_FCM = {"kind": "push", "app": "fcm", "address": "dGVzdC1mY20tdG9rZW4:APA91bH...", "label": "Pixel 8"}
CONTACT_POINT_WEBPUSH = {
    "kind": "push", "app": "webpush", "label": "Firefox",
    "address": '{"endpoint": "https://updates.push.services.mozilla.com/wpush/v2/gAAA...", '
               '"keys": {"p256dh": "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1Xbjha'
               'zAkj7I99e8QcYP7DkM", '
               '"auth": "tBHItJI5svbpez7KI4CCXg"}}',
}
