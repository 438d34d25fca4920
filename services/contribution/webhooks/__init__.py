"""Webhooks for agencies and employers (Standard Webhooks): endpoints, fan-out from the outbox, signed delivery."""
