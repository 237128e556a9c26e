"""Delivery-event webhooks (``[webhooks.NAME]``): each recipient outcome, and each delay warning, POSTed
as signed JSON to the webhooks configured.

``settings`` is imported by the configuration; ``events`` (what an event says, sans-io) by the delivery
stages; the senders (``sender``, over the small HTTP client in ``http``) run only in a daemon with
webhooks (``service``). Events go through the store's outbox (spoolerd/outbox.py).
"""
