"""Buying credits: checkout, the one grant function, Stripe's events, reconciliation.

- `stripe_api`: the Stripe SDK client (the only module that talks to Stripe);
- `purchases`: services that write `Purchase` rows: start a checkout, grant a paid
  purchase (the ONE grant function, whatever told us it was paid), expire, reconcile
  pending purchases with Stripe, the offline test checkout;
- `resume`: "Continue to payment" on a pending purchase (back to its open checkout, or
  settle one that ended through the writers above);
- `refunds`: take credits back after a refund or dispute; staff's refund through Stripe;
- `webhook`: verifies and dispatches `POST /api/stripe/webhook`, each event once.
"""
