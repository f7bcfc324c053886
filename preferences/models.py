"""Recipients, contact points, categories and preferences."""
from django.db import models
from django.db.models import Q

from channels_app.kinds import ChannelKind


class Recipient(models.Model):
    external_id = models.CharField(max_length=255, unique=True, help_text="The calling system's user id.")
    name = models.CharField(max_length=255, blank=True)
    locale = models.CharField(max_length=35, blank=True, help_text="BCP 47 tag, e.g. zh-CN.")
    timezone = models.CharField(max_length=64, blank=True, help_text="IANA name, e.g. Asia/Shanghai.")
    quiet_start = models.TimeField(null=True, blank=True, help_text="Quiet hours start, local time (e.g. 22:00).")
    quiet_end = models.TimeField(null=True, blank=True, help_text="Quiet hours end, local time (e.g. 08:00).")
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("external_id",)

    def __str__(self):
        return self.name and f"{self.name} ({self.external_id})" or self.external_id


class ContactPoint(models.Model):
    """Where a recipient can be reached on one channel kind: an e-mail address, an E.164 phone
    number, a device token, a WeChat openid, a webhook URL."""

    recipient = models.ForeignKey(Recipient, on_delete=models.CASCADE, related_name="contact_points")
    kind = models.CharField(max_length=20, choices=ChannelKind.choices)
    address = models.CharField(max_length=2000)
    app = models.CharField(
        max_length=100, blank=True,
        help_text="Which app the address belongs to: fcm, apns or webpush for push tokens, the WeChat "
                  "appid for openids, the account name for chat. Blank: any account of the kind.",
    )
    label = models.CharField(max_length=100, blank=True, help_text="Device name or other note.")
    active = models.BooleanField(default=True)
    deactivated_reason = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("recipient", "kind", "-active", "id")
        constraints = [
            models.UniqueConstraint(fields=("recipient", "kind", "address"), name="contact_point_unique"),
        ]
        indexes = [models.Index(fields=("kind", "address"))]

    def __str__(self):
        return f"{self.kind}: {self.address}"


class QuietHoursPolicy(models.TextChoices):
    DEFER = "defer", "Defer until quiet hours end"
    DROP = "drop", "Drop (skipped/quiet_hours)"
    IGNORE = "ignore", "Ignore quiet hours"


class OverCapPolicy(models.TextChoices):
    SKIP = "skip", "Skip (skipped/frequency_capped)"
    DEFER = "defer", "Defer until the cap allows"


class Category(models.Model):
    """What a message is about; recipients opt in or out per category."""

    key = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    critical = models.BooleanField(
        default=False, help_text="Security and legal messages: no opt-out can block them."
    )
    channel_defaults = models.JSONField(
        default=dict, blank=True,
        help_text='Default per channel kind when the recipient said nothing, e.g. {"sms": false}. '
                  "Kinds not listed default to on.",
    )
    quiet_hours = models.CharField(
        max_length=10, choices=QuietHoursPolicy.choices, default=QuietHoursPolicy.DEFER,
        help_text="What happens to a delivery inside the recipient's quiet hours (critical: always sent).",
    )
    frequency_caps = models.JSONField(
        default=list, blank=True,
        help_text='At most "limit" deliveries per recipient per "period" seconds, per channel kind '
                  '("*" = each kind), e.g. [{"channel": "sms", "limit": 3, "period": 86400}].',
    )
    over_cap = models.CharField(
        max_length=10, choices=OverCapPolicy.choices, default=OverCapPolicy.SKIP,
        help_text="What happens to a delivery over a frequency cap.",
    )

    class Meta:
        ordering = ("key",)
        verbose_name_plural = "categories"

    def __str__(self):
        return self.name

    def default_for(self, channel: str) -> bool:
        return bool(self.channel_defaults.get(channel, True))


class Preference(models.Model):
    """Recipient × (category or all) × (channel or all) → enabled."""

    recipient = models.ForeignKey(Recipient, on_delete=models.CASCADE, related_name="preferences")
    category = models.ForeignKey(
        Category, on_delete=models.CASCADE, null=True, blank=True, help_text="Empty means every category."
    )
    channel = models.CharField(
        max_length=20, choices=ChannelKind.choices, blank=True, help_text="Empty means every channel."
    )
    enabled = models.BooleanField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("recipient", "category", "channel")
        constraints = [
            models.UniqueConstraint(
                fields=("recipient", "category", "channel"), condition=Q(category__isnull=False),
                name="preference_unique_per_category",
            ),
            models.UniqueConstraint(
                fields=("recipient", "channel"), condition=Q(category__isnull=True),
                name="preference_unique_all_categories",
            ),
        ]

    def __str__(self):
        scope = f"{self.category or 'all categories'} / {self.channel or 'all channels'}"
        return f"{scope}: {'on' if self.enabled else 'off'}"
