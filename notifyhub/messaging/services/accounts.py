"""Sending through provider accounts: choice, rate limits, circuit breakers and failover.

For each delivery the account is chosen among the enabled accounts of its kind (and app):
the best priority first; among equal priorities at random in proportion to ``weight``; an
account whose circuit breaker is open is passed over, and a half-open one gets one probe.
Each account's rate (``ChannelConfig.rate_limit`` or the backend's provider default) is a
slot reservation in Redis shared by every worker: a delivery waits for its slot when it is
near and otherwise goes back to ``pending`` until its slot, without counting
an attempt (see :mod:`.pacing`). An account-level error (bad credentials, exhausted quota) opens the breaker and
sends the delivery to the next account at once — it was refused, so it cannot go out twice.
Transient errors count towards the breaker but are retried later, not failed over: a timeout
may have delivered, and a second account must not repeat it.
"""
import logging
import random
from collections import defaultdict
from datetime import timedelta
from itertools import groupby

from django.utils import timezone

from channels_app.base import ChannelBackend
from channels_app.breaker import BreakerDecision, breaker_allow, breaker_failure, breaker_success
from channels_app.errors import (
    AccountError,
    ChannelConfigurationError,
    ChannelError,
    InvalidAddressError,
    TransientChannelError,
)
from channels_app.message import SendResult
from channels_app.models import ChannelConfig
from channels_app.ratelimit import Rate, rate_parse
from channels_app.services import channel_backend_build
from notifyhub.messaging.models import Delivery
from notifyhub.messaging.services.batch import Flusher
from notifyhub.messaging.services.followups import outcomes_settle
from notifyhub.messaging.services.pacing import paced_outcomes
from notifyhub.messaging.services.retries import Deferral

logger = logging.getLogger(__name__)
UNLIMITED = {"", "0", "none"}


def account_rate(config: ChannelConfig, backend: type[ChannelBackend]) -> Rate | None:
    text = (config.rate_limit or backend.default_rate or "").strip().lower()
    return None if text in UNLIMITED else rate_parse(text)


class AccountSender:
    """Sends one batch of deliveries of one kind over its accounts, round by round: a round
    assigns every delivery still to send to an account, sends, and returns the deliveries that
    must fail over to another account with the accounts they must avoid."""

    def __init__(self, configs: list[ChannelConfig]):
        self.configs = configs
        self.tiers = [list(tier) for _, tier in groupby(configs, key=lambda c: c.priority)]
        self.backends: dict[int, ChannelBackend] = {}
        self.last_error: dict = {}

    def close(self) -> None:
        for backend in self.backends.values():
            try:
                backend.close()
            except Exception:  # closing must not hide the batch's outcome
                logger.exception("Closing backend %s failed", backend.name)

    # --- choice ------------------------------------------------------------------------------
    def round(self, queue: list[tuple[Delivery, frozenset]]) -> list[tuple[Delivery, frozenset]]:
        decisions: dict[int, object] = {}
        assigned: dict[int, list[Delivery]] = defaultdict(list)
        unplaced: dict = {}
        for delivery, excluded in queue:
            config = self._choose(delivery, excluded, decisions)
            if config is None:
                unplaced[delivery.id] = (delivery, excluded)
            else:
                assigned[config.pk].append(delivery)
                delivery._excluded = excluded
        self._unplaced(unplaced)
        failover = []
        by_pk = {c.pk: c for c in self.configs}
        for config_pk, group in assigned.items():
            failover += self._send(by_pk[config_pk], group)
        return failover

    def _choose(self, delivery: Delivery, excluded: frozenset, decisions: dict) -> ChannelConfig | None:
        for tier in self.tiers:
            candidates = [c for c in tier if c.pk not in excluded]
            # Weighted order without replacement: key u^(1/w), largest first.
            candidates.sort(key=lambda c: random.random() ** (1 / max(c.weight, 1)), reverse=True)
            for config in candidates:
                decision = decisions.get(config.pk)
                if decision is None:
                    try:
                        decision = breaker_allow(config.pk, open_seconds=config.open_seconds,
                                                 failure_threshold=config.failure_threshold)
                    except Exception:  # Redis trouble: send rather than stall (the breaker fails open)
                        logger.exception("Reading %s's breaker failed", config.name)
                        decision = BreakerDecision(True, "unknown", False)
                    decisions[config.pk] = decision
                    if decision.allowed and decision.probe:
                        decisions[config.pk] = "probe-taken"  # one delivery probes; the rest pass over
                        delivery.explain.append(f"account {config.name}: circuit half-open, this delivery probes it")
                        return config
                if decision == "probe-taken" or not decision.allowed:
                    delivery.explain.append(f"account {config.name}: circuit {getattr(decision, 'state', 'half_open')}"
                                            ", passed over")
                    continue
                note = f"account {config.name} (priority {config.priority}"
                note += f", weight {config.weight} of {sum(c.weight for c in tier)})" if len(tier) > 1 else ")"
                delivery.explain.append(note)
                return config
        return None

    def _unplaced(self, unplaced: dict) -> None:
        """No account may take these: all circuits open (wait) or all accounts refused (fail)."""
        if not unplaced:
            return
        wait = min(c.open_seconds for c in self.configs)
        outcomes, rows = {}, []
        for delivery, excluded in unplaced.values():
            rows.append(delivery)
            error = self.last_error.get(delivery.id)
            if error is not None and len(excluded) >= len(self.configs):
                delivery.explain.append("failover: every account refused")
                if error.code == "configuration_error":  # an operator can fix it: keep retrying
                    error = TransientChannelError(str(error), code="configuration_error")
                outcomes[delivery.id] = error
            else:
                delivery.explain.append(f"every account's circuit is open: waiting {wait}s")
                outcomes[delivery.id] = Deferral(until=timezone.now() + timedelta(seconds=wait), reason="circuit_open",
                                                 detail="every account's circuit breaker is open")
        outcomes_settle(deliveries=rows, outcomes=outcomes, config_id=None)

    # --- sending -----------------------------------------------------------------------------
    def _backend(self, config: ChannelConfig) -> ChannelBackend:
        if config.pk not in self.backends:
            backend = channel_backend_build(kind=config.kind, config=config)
            backend.open()
            self.backends[config.pk] = backend
        return self.backends[config.pk]

    def _send(self, config: ChannelConfig, group: list[Delivery]) -> list[tuple[Delivery, frozenset]]:
        try:
            backend = self._backend(config)
            rate = account_rate(config, type(backend))
        except (ChannelConfigurationError, ValueError) as exc:
            logger.error("Account %s is misconfigured: %s", config.name, exc)
            error = AccountError(f"{config.name} is misconfigured: {exc}", code="configuration_error")
            return [self._refused(config, d, error) for d in group]
        except AccountError as exc:  # open() refused: bad credentials (SMTP 535...)
            self._breaker(config, account_level=True)
            return [self._refused(config, d, exc) for d in group]
        except ChannelError as exc:  # open() failed: server down; nothing was sent
            self._breaker(config, account_level=False)
            outcomes_settle(deliveries=group, outcomes={d.id: exc for d in group}, config_id=config.pk)
            return []
        by_id = {str(d.id): d for d in group}
        flusher = Flusher(by_id, config_id=config.pk, reports_delivery=getattr(backend, "reports_delivery", False))
        failover, successes = [], 0
        outcomes = paced_outcomes(backend=backend, rate=rate, key=f"account:{config.pk}", label=config.name,
                                  deliveries=group)
        try:
            while True:
                try:
                    delivery_id, outcome = next(outcomes)
                except StopIteration:
                    break
                except Exception as exc:  # a backend bug: what it had not answered for retries
                    logger.exception("Backend %s failed unexpectedly", config.backend)
                    flusher.fail_rest(TransientChannelError(f"{exc.__class__.__name__}: {exc}", code="backend_error"))
                    break
                delivery = by_id[delivery_id]
                if isinstance(outcome, AccountError):
                    self._breaker(config, account_level=True)
                    failover.append(self._refused(config, delivery, outcome))
                    by_id.pop(delivery_id)
                    continue
                if isinstance(outcome, SendResult):
                    successes += 1
                elif isinstance(outcome, TransientChannelError):
                    change = self._breaker(config, account_level=False)
                    if change is not None and change.opened:
                        delivery.explain.append(f"account {config.name}: circuit opened after {change.failures} "
                                                "consecutive failures")
                elif isinstance(outcome, InvalidAddressError):
                    delivery.explain.append(f"address refused by {config.name}: no failover for address errors")
                flusher.add(delivery_id, outcome)
        finally:
            flusher.flush()
        if successes:
            try:
                breaker_success(config.pk)
            except Exception:  # bookkeeping never changes an outcome
                logger.exception("Recording success on %s's breaker failed", config.name)
        return failover

    @staticmethod
    def _breaker(config: ChannelConfig, *, account_level: bool):
        """Count a failure on the account's breaker; Redis trouble is logged, not raised."""
        try:
            return breaker_failure(config.pk, failure_threshold=config.failure_threshold,
                                   open_seconds=config.open_seconds, account_level=account_level)
        except Exception:
            logger.exception("Recording a failure on %s's breaker failed", config.name)
            return None

    def _refused(self, config, delivery: Delivery, error: ChannelError):
        delivery.explain.append(f"account {config.name} refused ({error.code or 'account error'}): failover")
        self.last_error[delivery.id] = error
        return delivery, delivery._excluded | {config.pk}
