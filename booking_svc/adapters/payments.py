"""Payments through Stripe's official SDK (PaymentIntents and refunds).

Locally the SDK talks to the fake Stripe API of the stack (``TICKETING_STRIPE_API_BASE``); in
production leave the base at Stripe's. Charges and refunds go through the SDK's asynchronous
HTTP client (aiohttp, one pooled keep-alive session per process) on the event loop itself, with
no worker thread to hand the answer back from, and through its raw request API: the SDK still
encodes the parameters, sends the idempotency key, retries network errors and raises its
errors (a declined card is a CardError), but the answer is read as the JSON it is instead of
being built into StripeObjects the booking flow never looks at (issue 14: 30% of a confirm's
CPU in booking was the SDK's client side).

Known gap of the local fake (localstripe 1.15): it ignores idempotency keys, so only real Stripe
deduplicates a charge whose answer was lost. The booking flow never sends a second charge for a
payment it has recorded, which covers retries of a confirm that got its answer.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import stripe

from booking_svc.domain import PaymentEvent, PaymentEventKind, PaymentOutcome, PaymentResult
from booking_svc.ports import WebhookSignatureInvalid
from ticketing_common.errors import Unavailable

log = logging.getLogger("booking.payments")


# The notifications booking acts on: a payment whose client went away is settled from them.
_EVENT_KINDS = {
    "payment_intent.succeeded": PaymentEventKind.SUCCEEDED,
    "payment_intent.payment_failed": PaymentEventKind.FAILED,
}


class StripePayments:
    def __init__(
        self,
        api_key: str,
        api_base: str,
        *,
        webhook_secret: str = "",
        timeout_seconds: float = 20.0,
    ) -> None:
        self._webhook_secret = webhook_secret
        # The session is made on first use, inside the serving process's event loop.
        self._http = stripe.AIOHTTPClient(timeout=aiohttp.ClientTimeout(total=timeout_seconds))
        self._client = stripe.StripeClient(
            api_key, base_addresses={"api": api_base}, max_network_retries=2, http_client=self._http
        )

    async def close(self) -> None:
        """The HTTP session's connections, at shutdown."""
        await self._http.close_async()  # type: ignore[no-untyped-call]

    async def _post(self, path: str, idempotency_key: str, **params: Any) -> dict[str, Any]:
        response = await self._client.raw_request_async(
            "post", path, idempotency_key=idempotency_key, **params
        )
        data: dict[str, Any] = response.data
        return data

    async def charge(
        self,
        *,
        amount_minor: int,
        currency: str,
        payment_method_id: str,
        idempotency_key: str,
        metadata: dict[str, str],
    ) -> PaymentResult:
        try:
            # One PaymentIntent created and confirmed in one call. payment_method_types is no
            # longer in the SDK's typed parameters, but Stripe still takes it and the local fake
            # needs it.
            intent = await self._post(
                "/v1/payment_intents",
                idempotency_key,
                amount=amount_minor,
                currency=currency.lower(),
                payment_method=payment_method_id,
                confirm=True,
                metadata=metadata,
                payment_method_types=["card"],
            )
        except stripe.CardError as exc:
            intent_id = None
            if exc.error is not None and exc.error.payment_intent is not None:
                intent_id = exc.error.payment_intent.id
            return PaymentResult(PaymentOutcome.DECLINED, intent_id, exc.user_message or str(exc))
        except stripe.InvalidRequestError as exc:
            return PaymentResult(PaymentOutcome.DECLINED, None, exc.user_message or str(exc))
        except stripe.StripeError as exc:
            log.warning("payment provider error: %s", exc)
            raise Unavailable("the payment provider is not reachable right now; retry") from exc
        if intent.get("status") == "succeeded":
            return PaymentResult(PaymentOutcome.SUCCEEDED, str(intent["id"]))
        error = intent.get("last_payment_error") or {}
        reason = error.get("message") or ""
        return PaymentResult(
            PaymentOutcome.DECLINED, str(intent["id"]), reason or str(intent.get("status"))
        )

    async def refund(self, provider_payment_id: str, idempotency_key: str) -> str:
        try:
            refund = await self._post(
                "/v1/refunds", idempotency_key, payment_intent=provider_payment_id
            )
        except stripe.StripeError as exc:
            log.error("refund of %s failed: %s", provider_payment_id, exc)
            raise Unavailable("the refund could not be issued yet; it will be retried") from exc
        return str(refund["id"])

    def verify_webhook(self, payload: bytes, signature: str) -> PaymentEvent | None:
        try:
            event = stripe.Webhook.construct_event(payload, signature, self._webhook_secret)
        except (stripe.SignatureVerificationError, ValueError) as exc:
            raise WebhookSignatureInvalid(str(exc)) from exc
        kind = _EVENT_KINDS.get(event.type)
        if kind is None:
            return None
        intent = event.data.object.to_dict()
        booking_id = (intent.get("metadata") or {}).get("booking_id")
        return PaymentEvent(kind, str(intent["id"]), str(booking_id) if booking_id else None)
